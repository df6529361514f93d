"""Engine, sessions and schema migrations for the one SQL database that holds every job's state.

SQLite (the default) and PostgreSQL run the same code paths. On SQLite we take control of
``BEGIN`` so that writing transactions can start as ``BEGIN IMMEDIATE``: they then wait for the
write lock up front (busy_timeout) instead of failing with "database is locked" when a read
snapshot has to be upgraded to a write after another writer committed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

if TYPE_CHECKING:
    from alembic.config import Config

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Execution option naming how a SQLite transaction begins; see `write_transaction_options`.
SQLITE_BEGIN_OPTION = "vidfarm_sqlite_begin"
_SQLITE_BEGIN_SQL = {"DEFERRED": "BEGIN", "IMMEDIATE": "BEGIN IMMEDIATE"}
# Key of the PostgreSQL advisory lock that serialises concurrent `migrate()` calls ("vidf").
_PG_MIGRATION_LOCK_KEY = 0x76696466
# Alembic keeps its running context in module globals: one upgrade at a time per process.
_MIGRATE_LOCK = threading.Lock()


def normalize_url(url: str | URL) -> URL:
    """Map plain PostgreSQL URLs to the psycopg 3 driver, the one we ship."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def is_sqlite(bind: Engine | Connection | Session) -> bool:
    return _dialect_name(bind) == "sqlite"


def is_postgresql(bind: Engine | Connection | Session) -> bool:
    return _dialect_name(bind) == "postgresql"


def _dialect_name(bind: Engine | Connection | Session) -> str:
    if isinstance(bind, Session):
        return bind.get_bind().dialect.name
    return bind.dialect.name


def write_transaction_options(bind: Engine | Connection | Session) -> dict[str, Any]:
    """Execution options for a transaction that will write (BEGIN IMMEDIATE on SQLite)."""
    return {SQLITE_BEGIN_OPTION: "IMMEDIATE"} if is_sqlite(bind) else {}


def make_engine(url: str | URL, *, echo: bool = False) -> Engine:
    """Create an engine tuned for the farm: WAL + busy timeout on SQLite, psycopg 3 on PG."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, echo=echo, pool_pre_ping=True)

    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or "mode=memory" in database
    kwargs: dict[str, Any] = {
        "connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
    }
    if in_memory:
        # One shared connection, or every thread would see its own empty database.
        kwargs["poolclass"] = StaticPool
    elif not database.startswith("file:"):
        Path(database).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, echo=echo, **kwargs)
    _install_sqlite_hooks(engine)
    return engine


def _install_sqlite_hooks(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy (our "begin" hook) emit BEGIN instead of the sqlite3 module.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS:d}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(_SQLITE_BEGIN_SQL[mode])


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (job functions commit themselves)."""
    return sessionmaker(bind=engine, expire_on_commit=False)


def alembic_config() -> Config:
    """An Alembic config pointing at the packaged migrations; no alembic.ini needed."""
    from alembic.config import Config  # imported late: workers that never migrate skip it

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def migrate(engine_or_url: Engine | str | URL) -> None:
    """Bring the schema to the newest revision; cheap when already there.

    Safe to run at every start from several processes at once: the whole upgrade runs in one
    transaction that first takes a database-wide lock (``BEGIN IMMEDIATE`` on SQLite, an
    advisory lock on PostgreSQL), so a second caller waits, then finds the schema at head.
    Threads of one process also take turns (Alembic's context is process-global).
    """
    own_engine = not isinstance(engine_or_url, Engine)
    engine = make_engine(engine_or_url) if not isinstance(engine_or_url, Engine) else engine_or_url
    try:
        with _MIGRATE_LOCK, engine.connect() as connection:
            if is_sqlite(connection):
                _migrate_sqlite(connection)
            else:
                with connection.begin():
                    if is_postgresql(connection):
                        connection.execute(
                            text("SELECT pg_advisory_xact_lock(:key)"),
                            {"key": _PG_MIGRATION_LOCK_KEY},
                        )
                    _upgrade(connection)
    finally:
        if own_engine:
            engine.dispose()


def _migrate_sqlite(connection: Connection) -> None:
    # Batch migrations rebuild tables (create copy, drop, rename); with foreign keys on, the
    # DROP would cascade-delete child rows. The pragma only works outside a transaction.
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    _sqlite_pragma(dbapi_connection, "PRAGMA foreign_keys=OFF")
    try:
        with connection.execution_options(**{SQLITE_BEGIN_OPTION: "IMMEDIATE"}).begin():
            _upgrade(connection)
            broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
            if broken:
                raise RuntimeError(f"migration left rows violating foreign keys: {broken[:5]}")
    finally:
        _sqlite_pragma(dbapi_connection, "PRAGMA foreign_keys=ON")


def _sqlite_pragma(dbapi_connection: Any, statement: str) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(statement)
    finally:
        cursor.close()


def _upgrade(connection: Connection) -> None:
    from alembic import command

    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


@contextmanager
def write_transaction(session: Session) -> Iterator[None]:
    """One committed writing transaction that holds the write lock from its first statement
    (BEGIN IMMEDIATE on SQLite, so a read never has to turn into a write and fail)."""
    if session.in_transaction():
        session.commit()
    session.connection(execution_options=write_transaction_options(session))
    try:
        yield
        session.commit()
    except BaseException:
        session.rollback()
        raise

"""Alembic environment: runs on the connection `vidfarm.db.migrate` hands over.

Used without alembic.ini. When Alembic's own CLI drives it instead, the URL comes from the
config's ``sqlalchemy.url`` or, failing that, from VIDFARM_* settings.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from vidfarm.models import Base

target_metadata = Base.metadata


def _url() -> str:
    url = context.config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from vidfarm.config import load_settings

    return load_settings().resolved_database_url


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    from vidfarm.db import normalize_url

    context.configure(
        url=normalize_url(_url()),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    from vidfarm.db import make_engine

    engine = make_engine(_url())
    try:
        with engine.connect() as fresh:
            _run(fresh)
            fresh.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

"""Migrations build exactly the schema models.py describes, and are safe to run at every start."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, inspect

from vidfarm.db import alembic_config, make_engine, migrate, normalize_url
from vidfarm.models import Base


def schema_diff(engine: Engine) -> list[object]:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def test_migrated_schema_matches_the_models(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        assert schema_diff(engine) != []  # sanity: an empty database differs
        migrate(engine)
        assert schema_diff(engine) == []
        assert current_revision(engine) == head()
        indexes = {ix["name"] for ix in inspect(engine).get_indexes("jobs")}
        assert {"ix_jobs_waiting", "ix_jobs_lease", "ix_jobs_video_id"} <= indexes
    finally:
        engine.dispose()


def test_downgrade_to_base_and_up_again(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        migrate(engine)
        with engine.begin() as connection:
            config = alembic_config()
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        migrate(engine)
        assert schema_diff(engine) == []
    finally:
        engine.dispose()


def test_concurrent_migrations_from_several_processes_are_harmless(empty_db_url: str) -> None:
    script = "import sys; from vidfarm.db import migrate; migrate(sys.argv[1])"
    processes = [
        subprocess.Popen([sys.executable, "-c", script, empty_db_url], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    errors: list[BaseException] = []

    def in_thread() -> None:
        try:
            migrate(empty_db_url)
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=in_thread) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for process in processes:
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr.decode()
    assert not errors
    engine = make_engine(empty_db_url)
    try:
        assert schema_diff(engine) == []
        assert current_revision(engine) == head()
        migrate(engine)  # and once more, at head: a no-op
    finally:
        engine.dispose()


def test_sqlite_engine_settings(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'deep' / 'er' / 'vidfarm.db'}")
    try:
        with engine.connect() as connection:

            def pragma(name: str) -> object:
                return connection.exec_driver_sql(f"PRAGMA {name}").scalar()

            assert pragma("journal_mode") == "wal"
            assert pragma("foreign_keys") == 1
            assert pragma("busy_timeout") == 30_000
        assert (tmp_path / "deep" / "er" / "vidfarm.db").exists()
    finally:
        engine.dispose()


def test_postgresql_urls_use_psycopg_3() -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgresql+psycopg://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"

"""Databases for tests, parametrised over SQLite (a temporary file) and PostgreSQL.

PostgreSQL is the server on 127.0.0.1:5432 (user postgres, trust auth). Each test session
creates its own database there and drops it at the end; tests without it skip visibly, and
fail when CI is set (tests/services.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from services import require_service
from vidfarm.db import is_postgresql, make_engine, make_session_factory, migrate

PG_HOST = os.environ.get("VIDFARM_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("VIDFARM_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("VIDFARM_TEST_PG_USER", "postgres")

DB_PARAMS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def _pg_url(database: str) -> str:
    return f"postgresql://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


@contextmanager
def fresh_postgres_database(prefix: str = "vidfarm_test") -> Iterator[str]:
    """An empty database of its own, dropped (connections and all) when the block ends."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_pg_url("postgres"), autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name)
    finally:
        with psycopg.connect(_pg_url("postgres"), autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def postgres_available() -> None:
    require_service("PostgreSQL", PG_HOST, PG_PORT)


@pytest.fixture(scope="session")
def postgres_url(postgres_available: None) -> Iterator[str]:
    """The test session's PostgreSQL database, migrated once; tests empty it before use."""
    with fresh_postgres_database() as url:
        migrate(url)
        yield url


@pytest.fixture(params=DB_PARAMS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'vidfarm.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(params=DB_PARAMS)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no tables at all, for migration tests."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty' / 'vidfarm.db'}"
        return
    request.getfixturevalue("postgres_available")
    with fresh_postgres_database("vidfarm_mig") as url:
        yield url


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    engine = make_engine(db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions on a migrated, empty database."""
    migrate(engine)
    if is_postgresql(engine):
        with engine.begin() as connection:
            connection.execute(
                text(
                    "TRUNCATE outputs, jobs, videos, tokens, xapi_statements, runner_tasks CASCADE"
                )
            )
    return make_session_factory(engine)

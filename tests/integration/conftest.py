"""The integration suite runs on PostgreSQL, the database a scaled-out farm uses.

Each test gets a database of its own on the machine's server (dropped afterwards); without
PostgreSQL the tests skip with the reason, and fail when CI is set. SQLite, the embedded
default, is covered by the unit suite and by the tests parametrised over both (db_url).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fixtures_db import PG_HOST, PG_PORT, fresh_postgres_database
from services import require_service


@pytest.fixture
def pg_database() -> Iterator[str]:
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    with fresh_postgres_database("vidfarm_it") as url:
        yield url


@pytest.fixture(scope="module")
def pg_module_database() -> Iterator[str]:
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    with fresh_postgres_database("vidfarm_it") as url:
        yield url

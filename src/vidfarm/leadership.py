"""Leadership: which replica runs the reconciler and the xAPI delivery loop right now.

Every `vidfarm serve` replica serves the API and may run an embedded pool, but the loops that
only read and repair SQL (the reconcile tick, outbox delivery) run on one replica at a time so
N replicas do not multiply their SQL load. Running them twice would be harmless (every repair
is a conditional update); the lock is about load, not correctness.

On PostgreSQL the leader holds a session-level advisory lock on a dedicated connection (outside
the engine's pool). When the leader dies, even by kill -9, the server drops its connection and
the lock with it; the next replica to ask (every poll, a second or so) takes over. TCP
keep-alives bound the case of a leader whose machine vanishes.

On SQLite every replica shares one machine (the database is a file), so the lock is an flock on
`<data_dir>/leader.lock`: released by the kernel when its process dies.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

log = logging.getLogger(__name__)

#: Key of the leader's advisory lock ("vidl"); the migration lock is "vidf" (db.py).
LEADER_LOCK_KEY = 0x7669646C
LOCK_FILE = "leader.lock"
# libpq keep-alives: a leader whose machine vanished loses the lock in about 10 s.
_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
}


class Leadership:
    """`held()` answers whether this process leads now, taking the lock when it is free."""

    def __init__(self, engine: Engine, data_dir: Path, *, key: int = LEADER_LOCK_KEY) -> None:
        self._postgres = engine.dialect.name == "postgresql"
        self._url = engine.url
        self._lock_path = data_dir / LOCK_FILE
        self._key = key
        self._guard = threading.Lock()
        self._engine: Engine | None = None
        self._connection: Any = None  # the PostgreSQL connection holding the lock
        self._descriptor: int | None = None  # the SQLite case: the flock'ed file
        self._leading = False

    def held(self) -> bool:
        """True when this process holds the lock (taking it if free); never raises."""
        with self._guard:
            try:
                leading = self._check_postgres() if self._postgres else self._check_file()
            except Exception as error:  # the database went away: not leading until it is back
                log.warning("leadership check failed: %s", str(error).splitlines()[0])
                self._drop()
                leading = False
            if leading != self._leading:  # losing the lead is the news worth a warning
                log.log(
                    logging.INFO if leading else logging.WARNING,
                    "this replica %s",
                    "leads now (reconciler, xAPI delivery)" if leading else "no longer leads",
                )
                self._leading = leading
            return leading

    def release(self) -> None:
        """Give the lock up (a clean stop): another replica takes over at its next poll."""
        with self._guard:
            self._drop()
            self._leading = False

    def _check_postgres(self) -> bool:
        if self._connection is not None:
            self._connection.execute(text("SELECT 1"))  # still alive: the lock is still ours
            return True
        if self._engine is None:
            self._engine = create_engine(
                self._url, poolclass=NullPool, connect_args=_KEEPALIVES
            ).execution_options(isolation_level="AUTOCOMMIT")
        connection = self._engine.connect()
        try:
            taken = connection.execute(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": self._key}
            ).scalar()
        except Exception:
            connection.close()
            raise
        if not taken:
            connection.close()
            return False
        self._connection = connection
        return True

    def _check_file(self) -> bool:
        if self._descriptor is not None:
            return True
        self._lock_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            return False
        self._descriptor = descriptor
        return True

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()  # closing the session releases its advisory lock
            except Exception:
                log.debug("closing the leader connection failed", exc_info=True)
            self._connection = None
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self._descriptor is not None:
            os.close(self._descriptor)  # closing the file releases the flock
            self._descriptor = None

"""Forgetting old runner assignments, so the table does not grow forever.

Finished assignments older than `runners_tasks_deleted_after_days` are deleted (<= 0: never);
a completed one only once its import is settled. Checked at most every PURGE_EVERY_SECONDS,
from the reconciler's pass.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete
from sqlalchemy.orm import Session

from vidfarm.config import Settings
from vidfarm.db import write_transaction
from vidfarm.dispatch.runners.assignments import (
    COMPLETED,
    FINISHED_STATES,
    IMPORT_FAILED,
    IMPORT_SKIPPED,
    IMPORTED,
)
from vidfarm.models import RunnerAssignment

log = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 600.0


class Purger:
    """Deletes old finished assignments, at most once every PURGE_EVERY_SECONDS."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._last_purge: float | None = None

    def purge(self, session: Session, now: datetime) -> None:
        """Drop finished assignments older than runners_tasks_deleted_after_days (<= 0: never)."""
        days = self._settings.runners_tasks_deleted_after_days
        clock = time.monotonic()
        if days <= 0 or (
            self._last_purge is not None and clock - self._last_purge < PURGE_EVERY_SECONDS
        ):
            return
        self._last_purge = clock
        with write_transaction(session):
            result = cast(
                CursorResult[Any],
                session.execute(
                    delete(RunnerAssignment).where(
                        RunnerAssignment.state.in_(FINISHED_STATES),
                        RunnerAssignment.state != COMPLETED,
                        RunnerAssignment.finished_at < now - timedelta(days=days),
                    )
                ),
            )
            imported = cast(
                CursorResult[Any],
                session.execute(
                    delete(RunnerAssignment).where(
                        RunnerAssignment.state == COMPLETED,
                        RunnerAssignment.import_state.in_(
                            [IMPORTED, IMPORT_FAILED, IMPORT_SKIPPED]
                        ),
                        RunnerAssignment.finished_at < now - timedelta(days=days),
                    )
                ),
            )
        if result.rowcount or imported.rowcount:
            log.info("purged %d old runner tasks", result.rowcount + imported.rowcount)

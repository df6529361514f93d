"""The record of one job handed to one runner manager (models.RunnerAssignment), shared vocabulary.

Submission, news, import and purge all read and move the same rows; the states, the statuses
managers report, the conditional UPDATE that moves a row exactly once, and the look-ups the
webhook needs live here so that no part has to import another to speak about an assignment.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, and_, or_, select, update
from sqlalchemy.orm import Session

from vidfarm.config import Settings
from vidfarm.db import write_transaction
from vidfarm.errors import PermanentError, TransientError
from vidfarm.models import RunnerAssignment, RunnerManager

# Assignment states and import states (see models.RunnerAssignment).
SUBMITTING, RUNNING, COMPLETED, FAILED, TIMEOUT, ABANDONED, REFUSED = (
    "submitting",
    "running",
    "completed",
    "failed",
    "timeout",
    "abandoned",
    "refused",  # no manager took it and at least one refused it (a 4xx): counted per job
)
IMPORT_NONE, IMPORTING, IMPORTED, IMPORT_FAILED, IMPORT_SKIPPED = (
    "none",
    "importing",
    "imported",
    "failed",
    "skipped",
)
FINISHED_STATES = (COMPLETED, FAILED, TIMEOUT, ABANDONED, REFUSED)
#: What managers report, in Pod's words.
SUCCESS_STATUSES = frozenset({"completed", "warning"})
FAILURE_STATUSES = frozenset({"failed", "timeout", "error"})
ALIVE_STATUSES = frozenset({"running", "pending"})
KNOWN_STATUSES = SUCCESS_STATUSES | FAILURE_STATUSES | ALIVE_STATUSES

ERROR_CHARS = 1000


class RunnerTaskFailed(PermanentError):
    """The runner manager reported that it could not process the job (bad input, mostly)."""


class NotYetRegistered(TransientError):
    """A webhook for a task whose submission is still being recorded: the manager retries."""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


_DUMMY_SHA256 = hash_secret("vidfarm: no such assignment")


def secret_matches(secret: str, expected_sha256: str | None) -> bool:
    """Constant-time check of a source URL's secret against its stored hash."""
    return hmac.compare_digest(hash_secret(secret), expected_sha256 or _DUMMY_SHA256) and (
        expected_sha256 is not None
    )


@dataclass(frozen=True)
class Notification:
    """What a manager told us about one task (by webhook or status answer)."""

    status: str
    error_message: str | None = None
    script_output: str | None = None
    progress: float | None = None


def text(value: object, limit: int = 16_000) -> str | None:
    """A manager's free text, made safe to store (no NUL, which PostgreSQL refuses; bounded)."""
    if value is None:
        return None
    cleaned = str(value).replace("\x00", "")
    return cleaned if len(cleaned) <= limit else cleaned[-limit:]


def lease_seconds(settings: Settings) -> float:
    """Owned this long without news; renewed by each sign of life from the manager.

    Three status periods: one unanswered question is a blip, three are a dead manager (about
    a minute by default, where Pod waits hours), and the job goes elsewhere."""
    return 3 * settings.runners_check_after_seconds


def advance(
    session: Session,
    assignment_id: str,
    state: str,
    values: dict[str, Any],
    *,
    from_state: str = RUNNING,
) -> bool:
    """Move an assignment from `from_state` to `state` (a conditional UPDATE): True if it did."""
    with write_transaction(session):
        result = cast(
            CursorResult[Any],
            session.execute(
                update(RunnerAssignment)
                .where(RunnerAssignment.id == assignment_id, RunnerAssignment.state == from_state)
                .values(state=state, **values)
                .execution_options(synchronize_session=False)
            ),
        )
    return result.rowcount == 1


def in_state(session: Session, state: str) -> list[RunnerAssignment]:
    """Assignments in one state, oldest submission first."""
    found = list(
        session.scalars(
            select(RunnerAssignment)
            .where(RunnerAssignment.state == state)
            .order_by(RunnerAssignment.submitted_at)
            .execution_options(populate_existing=True)
        )
    )
    session.rollback()
    return found


def stops_owed(session: Session, now: datetime) -> list[RunnerAssignment]:
    """Abandoned tasks whose manager has not taken the stop yet, due to be asked again."""
    found = list(
        session.scalars(
            select(RunnerAssignment)
            .where(
                RunnerAssignment.state == ABANDONED,
                RunnerAssignment.next_check_at.is_not(None),
                RunnerAssignment.next_check_at <= now,
            )
            .order_by(RunnerAssignment.next_check_at)
            .limit(100)
            .execution_options(populate_existing=True)
        )
    )
    session.rollback()
    return found


def find_assignments(
    session: Session, task_id: str
) -> list[tuple[RunnerAssignment, RunnerManager]]:
    """Assignments a webhook's task id may name (task ids are the managers' own)."""
    rows = session.execute(
        select(RunnerAssignment, RunnerManager)
        .join(RunnerManager, RunnerManager.id == RunnerAssignment.manager_id)
        .where(RunnerAssignment.task_id == task_id)
        .order_by(RunnerAssignment.submitted_at.desc())
        .execution_options(populate_existing=True)
    ).all()
    return [(row[0], row[1]) for row in rows]


def submitting_managers(session: Session) -> list[RunnerManager]:
    """Managers with a submission in flight (their webhook may come before its task id)."""
    in_flight = select(RunnerAssignment.manager_id).where(
        or_(
            RunnerAssignment.state == SUBMITTING,
            and_(RunnerAssignment.state == RUNNING, RunnerAssignment.fencing_token.is_(None)),
        )
    )
    # IN, not DISTINCT over the rows: PostgreSQL cannot compare JSON columns (task_types).
    return list(session.scalars(select(RunnerManager).where(RunnerManager.id.in_(in_flight))))

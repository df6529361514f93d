"""What the job core's modules share: row locking, the lease check, one-line errors."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from vidfarm.errors import JobNotFound, StaleAttempt
from vidfarm.models import FINAL_STATUSES, WAITING_STATUSES, Job, JobStatus

ERROR_MAX_CHARS = 1000
LOG_TAIL_MAX_CHARS = 16_000
IN_CHUNK = 500  # ids per IN (...) clause, well under SQLite's parameter limit

PENDING = JobStatus.PENDING.value
QUEUED = JobStatus.QUEUED.value
RUNNING = JobStatus.RUNNING.value
WAITING = sorted(status.value for status in WAITING_STATUSES)
FINAL = sorted(status.value for status in FINAL_STATUSES)


def lock_row(session: Session, job_id: str) -> Job:
    """Load a job fresh from SQL, locking its row on PostgreSQL (SQLite holds the db lock)."""
    stmt = (
        select(Job)
        .where(Job.id == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    job = session.scalars(stmt).one_or_none()
    if job is None:
        raise JobNotFound(f"no job {job_id}")
    return job


def one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= ERROR_MAX_CHARS else line[: ERROR_MAX_CHARS - 1] + "…"


def join_tail(lines: Sequence[str]) -> str:
    text = "\n".join(line.rstrip("\n") for line in lines)
    return text if len(text) <= LOG_TAIL_MAX_CHARS else text[-LOG_TAIL_MAX_CHARS:]


def clear_lease(job: Job) -> None:
    job.lease_owner = None
    job.lease_expires_at = None


def check_current(job: Job, fencing_token: int) -> None:
    """Refuse a report unless it comes from the current attempt of a running job."""
    if job.fencing_token != fencing_token or job.status != RUNNING:
        raise StaleAttempt(
            f"job {job.id}: attempt {fencing_token} is stale "
            f"(current attempt {job.fencing_token}, status {job.status})"
        )

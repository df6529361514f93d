"""Failures: permanent ones end the job; transient ones retry after backoff, up to a limit."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from vidfarm.db import write_transaction
from vidfarm.errors import (
    JobCancelled,
    JobTimedOut,
    OutOfSpace,
    VidfarmError,
)
from vidfarm.jobs.clock import utcnow
from vidfarm.jobs.family import child_failed
from vidfarm.jobs.rows import (
    PENDING,
    check_current,
    clear_lease,
    join_tail,
    lock_row,
    one_line,
)
from vidfarm.models import Job, JobStatus


def fail(
    session: Session,
    job_id: str,
    fencing_token: int,
    error: VidfarmError,
    log_tail: Sequence[str],
    *,
    retry_base: float,
    retry_max: float,
    rng: random.Random | None = None,
) -> Job:
    """Record a failed attempt; the error's class decides between a retry and a final state.

    A cancelled job's own attempt may still report (typically JobCancelled after it noticed):
    that is accepted and only keeps the log tail.
    """
    with write_transaction(session):
        job = lock_row(session, job_id)
        if job.fencing_token == fencing_token and job.status == JobStatus.CANCELLED.value:
            if log_tail:
                job.log_tail = join_tail(log_tail)
            return job
        check_current(job, fencing_token)
        record_failure(job, error, log_tail, utcnow(), retry_base, retry_max, rng)
        child_failed(session, job)
    return job


def record_failure(
    job: Job,
    error: VidfarmError,
    log_tail: Sequence[str],
    now: datetime,
    retry_base: float,
    retry_max: float,
    rng: random.Random | None,
) -> None:
    job.error = one_line(str(error) or error.error_class)
    job.error_class = error.error_class
    job.log_tail = join_tail(log_tail) if log_tail else None
    job.updated_at = now
    clear_lease(job)
    if isinstance(error, OutOfSpace):
        # A full disk is the machine's trouble, not the job's: wait for space, uncounted.
        job.attempts = max(0, job.attempts - 1)
        _retry_later(job, now, space_wait(retry_base, retry_max))
        return
    if isinstance(error, JobCancelled):
        status = JobStatus.CANCELLED
    elif isinstance(error, JobTimedOut):
        status = JobStatus.TIMEOUT
    elif error.permanent or job.attempts >= job.max_attempts:
        status = JobStatus.FAILED
    else:
        _retry_later(job, now, backoff_delay(job.attempts, retry_base, retry_max, rng))
        return
    job.status = status.value
    job.finished_at = now


def _retry_later(job: Job, now: datetime, delay: float) -> None:
    job.status = PENDING
    job.not_before = now + timedelta(seconds=delay)
    job.queued_at = None
    job.progress = 0.0
    job.step = None


def space_wait(base: float, cap: float) -> float:
    """How long a job waits for disk space before trying again: longer than a first retry."""
    return min(cap, 6 * base)


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1-based): capped doubling, "equal jitter".

    The exponential step d = min(cap, base * 2**(attempt-1)) is scaled by a random factor in
    [0.5, 1.0]: retries of jobs that failed together (a storage outage) spread out, yet each
    still waits at least half the step, so the backoff really grows (full jitter could retry
    at once).
    """
    step = min(cap, base * 2.0 ** max(0, attempt - 1))
    return step * (rng or random).uniform(0.5, 1.0)

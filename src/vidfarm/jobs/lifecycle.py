"""The job lifecycle, kept in SQL: create, queue, claim, heartbeat, finish, retry.

    pending ──mark_queued──► queued ──claim──► running ──complete──► completed
       ▲                        ▲                 │ ──fail────────► failed | timeout | cancelled
       └── transient failure ───┼─────────────────┤ (or lease expired, with backoff)
                                └──── release ────┘ (graceful hand-back, attempt not counted)

Every claim bumps the job's fencing token; every report from a worker carries it, and is
refused (StaleAttempt) unless it names the current attempt of a running job. That is what makes
at-least-once delivery have an exactly-once effect.

Each writing function runs and commits its own transaction (BEGIN IMMEDIATE on SQLite, row locks
on PostgreSQL); a transaction the caller left open is committed first. Reading functions leave
the session's transaction to the caller.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from vidfarm.claims import Claim, OutputRecord
from vidfarm.db import is_postgresql, write_transaction
from vidfarm.errors import (
    InvalidParameters,
    InvalidTransition,
    JobCancelled,
    JobNotFound,
    JobTimedOut,
    LeaseExpired,
    StaleAttempt,
    VidfarmError,
)
from vidfarm.jobs.clock import as_utc, utcnow
from vidfarm.jobs.queries import CLAIM_ORDER
from vidfarm.models import (
    FINAL_STATUSES,
    WAITING_STATUSES,
    Job,
    JobStatus,
    Output,
    Video,
)

ERROR_MAX_CHARS = 1000
LOG_TAIL_MAX_CHARS = 16_000
_CLAIM_RETRIES = 20  # a claim lost to a concurrent worker is retried on the next candidate
_IN_CHUNK = 500  # ids per IN (...) clause, well under SQLite's parameter limit

_PENDING = JobStatus.PENDING.value
_QUEUED = JobStatus.QUEUED.value
_RUNNING = JobStatus.RUNNING.value
_WAITING = sorted(status.value for status in WAITING_STATUSES)
_FINAL = sorted(status.value for status in FINAL_STATUSES)


def _lock(session: Session, job_id: str) -> Job:
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


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= ERROR_MAX_CHARS else line[: ERROR_MAX_CHARS - 1] + "…"


def _join_tail(lines: Sequence[str]) -> str:
    text = "\n".join(line.rstrip("\n") for line in lines)
    return text if len(text) <= LOG_TAIL_MAX_CHARS else text[-LOG_TAIL_MAX_CHARS:]


def _clear_lease(job: Job) -> None:
    job.lease_owner = None
    job.lease_expires_at = None


# --- creating and queueing ----------------------------------------------------------------------


@dataclass(frozen=True)
class FollowUp:
    """A job to create once another completes."""

    job_type: str
    params: dict[str, Any] = field(default_factory=dict)


def create_job(
    session: Session,
    *,
    job_type: str,
    video_id: str | None,
    params: dict[str, Any] | None = None,
    priority: int = 0,
    max_attempts: int,
    follow_ups: Sequence[FollowUp] = (),
) -> Job:
    """Insert a pending job; the scheduler (or the caller) dispatches it.

    `follow_ups` are created, once, in the transaction that accepts this job's completion.
    """
    if max_attempts < 1:
        raise InvalidParameters(f"max_attempts must be at least 1, got {max_attempts}")
    with write_transaction(session):
        job = Job(
            type=job_type,
            video_id=video_id,
            params=dict(params or {}),
            status=_PENDING,
            priority=priority,
            attempts=0,
            max_attempts=max_attempts,
            fencing_token=0,
            progress=0.0,
            follow_ups=[{"type": f.job_type, "params": dict(f.params)} for f in follow_ups] or None,
            created_at=utcnow(),
        )
        session.add(job)
    return job


def mark_queued(session: Session, job_ids: Sequence[str]) -> list[str]:
    """Move pending jobs to queued (handed to a transport); returns the ids actually moved."""
    moved: list[str] = []
    now = utcnow()
    with write_transaction(session):
        for start in range(0, len(job_ids), _IN_CHUNK):
            chunk = list(job_ids[start : start + _IN_CHUNK])
            ids = list(
                session.scalars(
                    select(Job.id)
                    .where(Job.id.in_(chunk), Job.status == _PENDING)
                    .with_for_update()
                )
            )
            if ids:
                session.execute(
                    update(Job)
                    .where(Job.id.in_(ids), Job.status == _PENDING)
                    .values(status=_QUEUED, queued_at=now, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
            moved.extend(ids)
    return moved


def unqueue(session: Session, job_id: str) -> bool:
    """queued → pending: the transport could not take the job (no runner manager accepted).

    It keeps its place (priority, then age) and is offered again at the next tick.
    """
    with write_transaction(session):
        result = cast(
            CursorResult[Any],
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == _QUEUED)
                .values(status=_PENDING, queued_at=None, updated_at=utcnow())
                .execution_options(synchronize_session=False)
            ),
        )
    return result.rowcount == 1


def mark_republished(session: Session, job_ids: Sequence[str]) -> None:
    """A queued job's message was published again: restart its republish clock."""
    now = utcnow()
    with write_transaction(session):
        for start in range(0, len(job_ids), _IN_CHUNK):
            chunk = list(job_ids[start : start + _IN_CHUNK])
            session.execute(
                update(Job)
                .where(Job.id.in_(chunk), Job.status == _QUEUED)
                .values(queued_at=now)
                .execution_options(synchronize_session=False)
            )


# --- claiming -----------------------------------------------------------------------------------


def claim_next(
    session: Session,
    *,
    worker_id: str,
    lease_seconds: float,
    job_types: Sequence[str] | None = None,
) -> Claim | None:
    """Claim the best queued job for this worker, or None when nothing is queued."""
    for _ in range(_CLAIM_RETRIES):
        with write_transaction(session):
            stmt = select(Job.id).where(Job.status == _QUEUED).order_by(*CLAIM_ORDER).limit(1)
            if job_types is not None:
                stmt = stmt.where(Job.type.in_(list(job_types)))
            if is_postgresql(session):
                # Concurrent claimers skip each other's candidate instead of queueing on it.
                stmt = stmt.with_for_update(skip_locked=True)
            job_id = session.scalar(stmt)
            if job_id is None:
                return None
            claim = _take(session, job_id, worker_id=worker_id, lease_seconds=lease_seconds)
        if claim is not None:
            return claim
    return None


def claim_job(
    session: Session, job_id: str, *, worker_id: str, lease_seconds: float
) -> Claim | None:
    """Claim one named job (a transport delivered its id); None if it is no longer queued."""
    with write_transaction(session):
        if session.scalar(select(Job.id).where(Job.id == job_id)) is None:
            raise JobNotFound(f"no job {job_id}")
        return _take(session, job_id, worker_id=worker_id, lease_seconds=lease_seconds)


def _take(session: Session, job_id: str, *, worker_id: str, lease_seconds: float) -> Claim | None:
    """queued → running, guarded by the status so two claimers cannot both win."""
    now = utcnow()
    result = cast(
        CursorResult[Any],
        session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == _QUEUED)
            .values(
                status=_RUNNING,
                attempts=Job.attempts + 1,
                fencing_token=Job.fencing_token + 1,
                lease_owner=worker_id,
                lease_expires_at=now + timedelta(seconds=lease_seconds),
                not_before=None,
                started_at=now,
                progress=0.0,
                step=None,
                updated_at=now,
            )
            .execution_options(synchronize_session=False)
        ),
    )
    if result.rowcount != 1:
        return None
    row = session.execute(
        select(
            Job.type, Job.video_id, Job.params, Job.attempts, Job.fencing_token, Video.source_key
        )
        .outerjoin(Video, Video.id == Job.video_id)
        .where(Job.id == job_id)
    ).one()
    return Claim(
        job_id=job_id,
        job_type=row.type,
        video_id=row.video_id,
        source_key=row.source_key,
        params=dict(row.params or {}),
        attempt=row.attempts,
        fencing_token=row.fencing_token,
    )


# --- reports from the attempt that holds the lease ----------------------------------------------


def _current(job: Job, fencing_token: int) -> None:
    """Refuse a report unless it comes from the current attempt of a running job."""
    if job.fencing_token != fencing_token or job.status != _RUNNING:
        raise StaleAttempt(
            f"job {job.id}: attempt {fencing_token} is stale "
            f"(current attempt {job.fencing_token}, status {job.status})"
        )


def heartbeat(
    session: Session,
    job_id: str,
    fencing_token: int,
    *,
    progress: float,
    step: str | None,
    lease_seconds: float,
) -> bool:
    """Record progress and renew the lease; False means the job was cancelled: stop now."""
    with write_transaction(session):
        job = _lock(session, job_id)
        if job.fencing_token == fencing_token and job.status == JobStatus.CANCELLED.value:
            return False
        _current(job, fencing_token)
        now = utcnow()
        job.progress = min(100.0, max(0.0, float(progress)))
        job.step = step
        job.lease_expires_at = now + timedelta(seconds=lease_seconds)
        job.updated_at = now
    return True


def complete(
    session: Session,
    job_id: str,
    fencing_token: int,
    result: dict[str, Any],
    outputs: Sequence[OutputRecord],
) -> Job:
    """Accept the current attempt's outputs, once; they replace any earlier run's rows."""
    with write_transaction(session):
        job = _lock(session, job_id)
        _current(job, fencing_token)
        video_id = job.video_id
        if outputs and video_id is None:
            raise InvalidParameters(f"job {job_id} has no video to attach outputs to")
        now = utcnow()
        session.execute(delete(Output).where(Output.job_id == job_id))
        for record in outputs:
            session.add(
                Output(
                    video_id=video_id,
                    job_id=job_id,
                    kind=record.kind,
                    key=record.key,
                    size=record.size,
                    sha256=record.sha256,
                    width=record.width,
                    height=record.height,
                    bandwidth=record.bandwidth,
                    codecs=record.codecs,
                )
            )
        job.status = JobStatus.COMPLETED.value
        job.result = dict(result)
        job.progress = 100.0
        job.error = None
        job.error_class = None
        job.finished_at = now
        job.updated_at = now
        _clear_lease(job)
        _queue_follow_ups(session, job)
    return job


def _queue_follow_ups(session: Session, job: Job) -> None:
    """Create the jobs this one declared as its follow-ups (an encode's transcription, say).

    In the completion's own transaction, so it happens exactly once per accepted attempt,
    whatever carried the report; one of the same type for the video, already waiting, running
    or done, is reused rather than doubled (a restarted encode does not transcribe twice).
    """
    if not job.follow_ups or job.video_id is None:
        return
    for spec in job.follow_ups:
        existing = session.scalar(
            select(Job.id)
            .where(Job.video_id == job.video_id, Job.type == spec["type"])
            .where(Job.status.in_([*_WAITING, _RUNNING, JobStatus.COMPLETED.value]))
            .limit(1)
        )
        if existing is None:
            session.add(
                Job(
                    type=spec["type"],
                    video_id=job.video_id,
                    params=dict(spec.get("params") or {}),
                    status=_PENDING,
                    priority=job.priority,
                    max_attempts=job.max_attempts,
                )
            )


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
        job = _lock(session, job_id)
        if job.fencing_token == fencing_token and job.status == JobStatus.CANCELLED.value:
            if log_tail:
                job.log_tail = _join_tail(log_tail)
            return job
        _current(job, fencing_token)
        _record_failure(job, error, log_tail, utcnow(), retry_base, retry_max, rng)
    return job


def _record_failure(
    job: Job,
    error: VidfarmError,
    log_tail: Sequence[str],
    now: datetime,
    retry_base: float,
    retry_max: float,
    rng: random.Random | None,
) -> None:
    job.error = _one_line(str(error) or error.error_class)
    job.error_class = error.error_class
    job.log_tail = _join_tail(log_tail) if log_tail else None
    job.updated_at = now
    _clear_lease(job)
    if isinstance(error, JobCancelled):
        status = JobStatus.CANCELLED
    elif isinstance(error, JobTimedOut):
        status = JobStatus.TIMEOUT
    elif error.permanent or job.attempts >= job.max_attempts:
        status = JobStatus.FAILED
    else:
        delay = backoff_delay(job.attempts, retry_base, retry_max, rng)
        job.status = _PENDING
        job.not_before = now + timedelta(seconds=delay)
        job.queued_at = None
        job.progress = 0.0
        job.step = None
        return
    job.status = status.value
    job.finished_at = now


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1-based): capped doubling, "equal jitter".

    The exponential step d = min(cap, base * 2**(attempt-1)) is scaled by a random factor in
    [0.5, 1.0]: retries of jobs that failed together (a storage outage) spread out, yet each
    still waits at least half the step, so the backoff really grows (full jitter could retry
    at once).
    """
    step = min(cap, base * 2.0 ** max(0, attempt - 1))
    return step * (rng or random).uniform(0.5, 1.0)


def release(session: Session, job_id: str, fencing_token: int) -> Job:
    """Hand a running job back (its worker is stopping): queued again, attempt not counted."""
    with write_transaction(session):
        job = _lock(session, job_id)
        if job.fencing_token == fencing_token and job.status == JobStatus.CANCELLED.value:
            return job
        _current(job, fencing_token)
        now = utcnow()
        job.status = _QUEUED
        job.attempts = max(0, job.attempts - 1)
        job.queued_at = now
        job.progress = 0.0
        job.step = None
        job.updated_at = now
        _clear_lease(job)
    return job


# --- operator actions ---------------------------------------------------------------------------


def cancel(session: Session, job_id: str) -> Job:
    """Cancel a waiting or running job; a running worker learns it at its next heartbeat."""
    with write_transaction(session):
        job = _lock(session, job_id)
        if job.status in _FINAL:
            raise InvalidTransition(f"job {job_id} is already {job.status}")
        now = utcnow()
        job.status = JobStatus.CANCELLED.value
        job.error = "cancelled"
        job.error_class = JobCancelled.__name__
        job.finished_at = now
        job.updated_at = now
        _clear_lease(job)
    return job


def restart(session: Session, job_id: str) -> Job:
    """Run a finished job again from scratch, with a fresh attempt budget."""
    with write_transaction(session):
        job = _lock(session, job_id)
        if job.status not in _FINAL:
            raise InvalidTransition(f"job {job_id} is {job.status}; only a finished job restarts")
        now = utcnow()
        job.status = _PENDING
        job.attempts = 0
        job.progress = 0.0
        job.step = None
        job.error = None
        job.error_class = None
        job.log_tail = None
        job.result = None
        job.not_before = None
        job.queued_at = None
        job.started_at = None
        job.finished_at = None
        job.updated_at = now
        _clear_lease(job)
    return job


# --- reconciling ------------------------------------------------------------------------------


def reclaim_expired(
    session: Session,
    now: datetime | None = None,
    *,
    retry_base: float,
    retry_max: float,
    rng: random.Random | None = None,
) -> list[str]:
    """Treat running jobs whose lease ran out as a transient failure (their worker is lost)."""
    now = utcnow() if now is None else as_utc(now)
    with write_transaction(session):
        stmt = (
            select(Job)
            .where(Job.status == _RUNNING, Job.lease_expires_at < now)
            .order_by(Job.lease_expires_at)
            .execution_options(populate_existing=True)
        )
        if is_postgresql(session):
            stmt = stmt.with_for_update(skip_locked=True)
        expired = list(session.scalars(stmt))
        for job in expired:
            owner = job.lease_owner or "unknown worker"
            error = LeaseExpired(f"lease expired (worker lost): {owner}, attempt {job.attempts}")
            _record_failure(job, error, [], now, retry_base, retry_max, rng)
    return [job.id for job in expired]

"""The job lifecycle, kept in SQL: create, queue, claim, heartbeat, finish, retry.

This module creates, queues, completes, releases, cancels and restarts; claiming and leases
are in `leases`, failures and retries in `failures`.

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

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from vidfarm.claims import OutputRecord
from vidfarm.db import write_transaction
from vidfarm.errors import (
    InvalidParameters,
    InvalidTransition,
    JobCancelled,
)
from vidfarm.jobs.clock import utcnow
from vidfarm.jobs.family import Split, apply_split, cancel_children, child_completed
from vidfarm.jobs.followups import queue_follow_ups
from vidfarm.jobs.rows import (
    FINAL,
    IN_CHUNK,
    PENDING,
    QUEUED,
    WAITING,
    check_current,
    clear_lease,
    lock_row,
    one_line,
)
from vidfarm.models import Job, JobStatus, Output


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
    split: Split | None = None,
    owner_token_id: str | None = None,
) -> Job:
    """Insert a pending job; the scheduler (or the caller) dispatches it.

    `follow_ups` are created, once, in the transaction that accepts this job's completion.
    With `split`, it is inserted already split into its children (one transaction).
    """
    if max_attempts < 1:
        raise InvalidParameters(f"max_attempts must be at least 1, got {max_attempts}")
    with write_transaction(session):
        job = Job(
            type=job_type,
            video_id=video_id,
            params=dict(params or {}),
            status=PENDING,
            priority=priority,
            attempts=0,
            max_attempts=max_attempts,
            fencing_token=0,
            progress=0.0,
            follow_ups=[{"type": f.job_type, "params": dict(f.params)} for f in follow_ups] or None,
            created_at=utcnow(),
            owner_token_id=owner_token_id,  # its children's too
        )
        session.add(job)
        if split is not None:
            session.flush()  # the children name it
            apply_split(session, job, split)
    return job


def mark_queued(session: Session, job_ids: Sequence[str]) -> list[str]:
    """Move pending jobs to queued (handed to a transport); returns the ids actually moved."""
    moved: list[str] = []
    now = utcnow()
    with write_transaction(session):
        for start in range(0, len(job_ids), IN_CHUNK):
            chunk = list(job_ids[start : start + IN_CHUNK])
            ids = list(
                session.scalars(
                    select(Job.id).where(Job.id.in_(chunk), Job.status == PENDING).with_for_update()
                )
            )
            if ids:
                session.execute(
                    update(Job)
                    .where(Job.id.in_(ids), Job.status == PENDING)
                    .values(status=QUEUED, queued_at=now, updated_at=now)
                    .execution_options(synchronize_session=False)
                )
            moved.extend(ids)
    return moved


def unqueue(session: Session, job_id: str, *, why: str | None = None, delay: float = 0.0) -> bool:
    """queued → pending: the transport could not take the job (no runner manager accepted).

    It keeps its place (priority, then age) and is offered again at the next tick. `why`, when
    given, is recorded as the job's error (class `waiting`) so API, CLI and dashboard show
    why it waits; a completion clears it. `delay` seconds pass before it is offered again.
    """
    now = utcnow()
    values: dict[str, Any] = {"status": PENDING, "queued_at": None, "updated_at": now}
    if delay > 0:
        values["not_before"] = now + timedelta(seconds=delay)
    if why is not None:
        values.update(error=one_line(why), error_class="waiting")
    with write_transaction(session):
        result = cast(
            CursorResult[Any],
            session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == QUEUED)
                .values(**values)
                .execution_options(synchronize_session=False)
            ),
        )
    return result.rowcount == 1


def note_waiting(session: Session, job_ids: Sequence[str], why: str, *, cause: str) -> None:
    """Say on waiting jobs why they wait (API, CLI, dashboard): `error`, class `cause`."""
    with write_transaction(session):
        session.execute(
            update(Job)
            .where(Job.id.in_(list(job_ids)), Job.status.in_(WAITING))
            .values(error=one_line(why), error_class=cause)
            .execution_options(synchronize_session=False)
        )


def clear_waiting(session: Session, job_ids: Sequence[str], *, cause: str) -> None:
    """The reason `cause` no longer holds these jobs back: forget it."""
    with write_transaction(session):
        session.execute(
            update(Job)
            .where(Job.id.in_(list(job_ids)), Job.error_class == cause)
            .values(error=None, error_class=None)
            .execution_options(synchronize_session=False)
        )


def mark_republished(session: Session, job_ids: Sequence[str]) -> None:
    """A queued job's message was published again: restart its republish clock."""
    now = utcnow()
    with write_transaction(session):
        for start in range(0, len(job_ids), IN_CHUNK):
            chunk = list(job_ids[start : start + IN_CHUNK])
            session.execute(
                update(Job)
                .where(Job.id.in_(chunk), Job.status == QUEUED)
                .values(queued_at=now)
                .execution_options(synchronize_session=False)
            )


def complete(
    session: Session,
    job_id: str,
    fencing_token: int,
    result: dict[str, Any],
    outputs: Sequence[OutputRecord],
) -> Job:
    """Accept the current attempt's outputs, once; they replace any earlier run's rows."""
    with write_transaction(session):
        job = lock_row(session, job_id)
        check_current(job, fencing_token)
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
        job.step = None  # the state says it all (was the last step: publishing, importing)
        job.result = dict(result)
        job.progress = 100.0
        job.error = None
        job.error_class = None
        job.finished_at = now
        job.updated_at = now
        clear_lease(job)
        queue_follow_ups(session, job)
        child_completed(session, job)
    return job


def release(session: Session, job_id: str, fencing_token: int) -> Job:
    """Hand a running job back (its worker is stopping): queued again, attempt not counted."""
    with write_transaction(session):
        job = lock_row(session, job_id)
        if job.fencing_token == fencing_token and job.status == JobStatus.CANCELLED.value:
            return job
        check_current(job, fencing_token)
        now = utcnow()
        job.status = QUEUED
        job.attempts = max(0, job.attempts - 1)
        job.queued_at = now
        job.progress = 0.0
        job.step = None
        job.updated_at = now
        clear_lease(job)
    return job


def cancel(session: Session, job_id: str) -> Job:
    """Cancel a waiting or running job; a running worker learns it at its next heartbeat."""
    with write_transaction(session):
        job = lock_row(session, job_id)
        if job.status in FINAL:
            raise InvalidTransition(f"job {job_id} is already {job.status}")
        now = utcnow()
        job.status = JobStatus.CANCELLED.value
        job.error = "cancelled"
        job.error_class = JobCancelled.__name__
        job.finished_at = now
        job.updated_at = now
        clear_lease(job)
        cancel_children(session, job_id)
    return job


def restart(session: Session, job_id: str, *, split: Split | None = None) -> Job:
    """Run a finished job again from scratch, with a fresh attempt budget (with `split`:
    split again in the same transaction, so no transport takes it whole meanwhile)."""
    with write_transaction(session):
        job = lock_row(session, job_id)
        if job.status not in FINAL:
            raise InvalidTransition(f"job {job_id} is {job.status}; only a finished job restarts")
        now = utcnow()
        job.status = PENDING
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
        clear_lease(job)
        if split is not None:
            apply_split(session, job, split)
    return job

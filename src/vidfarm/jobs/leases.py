"""Claims and leases: who runs a job now, for how long, and what happens when it vanishes.

Every claim bumps the job's fencing token and sets a lease; heartbeats renew it; an expired
lease counts as a transient failure of that attempt (`reclaim_expired`), so the job runs again.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session

from vidfarm.claims import Claim
from vidfarm.db import is_postgresql, write_transaction
from vidfarm.errors import JobNotFound, LeaseExpired, OutOfSpace, VidfarmError
from vidfarm.jobs.clock import as_utc, utcnow
from vidfarm.jobs.failures import record_failure
from vidfarm.jobs.family import child_failed, child_progressed
from vidfarm.jobs.queries import CLAIM_ORDER
from vidfarm.jobs.rows import (
    QUEUED,
    RUNNING,
    check_current,
    lock_row,
)
from vidfarm.models import Job, JobStatus, Video

_CLAIM_RETRIES = 20  # a claim lost to a concurrent worker is retried on the next candidate


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
            stmt = select(Job.id).where(Job.status == QUEUED).order_by(*CLAIM_ORDER).limit(1)
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
            .where(Job.id == job_id, Job.status == QUEUED)
            .values(
                status=RUNNING,
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
        job = lock_row(session, job_id)
        if job.fencing_token == fencing_token and job.status == JobStatus.CANCELLED.value:
            return False
        check_current(job, fencing_token)
        now = utcnow()
        job.progress = min(100.0, max(0.0, float(progress)))
        job.step = step
        job.lease_expires_at = now + timedelta(seconds=lease_seconds)
        job.updated_at = now
        alive = child_progressed(session, job)  # False: its parent ended, it is cancelled
    return alive


def reclaim_expired(
    session: Session,
    now: datetime | None = None,
    *,
    retry_base: float,
    retry_max: float,
    rng: random.Random | None = None,
    out_of_space: str | None = None,
) -> list[str]:
    """Treat running jobs whose lease ran out as a transient failure (their worker is lost).

    `out_of_space`: the control plane's disk is full (what /readyz says). A worker that could
    not record its end there (SQLite on that disk, a 507 on its report) is not the job's
    fault: the attempt waits for space, uncounted, as an OutOfSpace failure would."""
    now = utcnow() if now is None else as_utc(now)
    with write_transaction(session):
        stmt = (
            select(Job)
            .where(Job.status == RUNNING, Job.lease_expires_at < now)
            .order_by(Job.lease_expires_at)
            .execution_options(populate_existing=True)
        )
        if is_postgresql(session):
            stmt = stmt.with_for_update(skip_locked=True)
        expired = list(session.scalars(stmt))
        for job in expired:
            owner = job.lease_owner or "unknown worker"
            error: VidfarmError = LeaseExpired(
                f"lease expired (worker lost): {owner}, attempt {job.attempts}"
            )
            if out_of_space:
                error = OutOfSpace(f"lease expired while out of space ({out_of_space}): {owner}")
            record_failure(job, error, [], now, retry_base, retry_max, rng)
            child_failed(session, job)
    return [job.id for job in expired]

"""Reading jobs: one job, filtered lists, what waits to be dispatched, and a job's rank."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from vidfarm.errors import JobNotFound
from vidfarm.jobs.clock import as_utc, utcnow
from vidfarm.models import WAITING_STATUSES, Job, JobStatus, Video

_PENDING = JobStatus.PENDING.value
_QUEUED = JobStatus.QUEUED.value
_WAITING = sorted(status.value for status in WAITING_STATUSES)
#: Claim order, also used by `rank`: higher priority first, then oldest; id breaks exact ties.
CLAIM_ORDER = (Job.priority.desc(), Job.created_at.asc(), Job.id.asc())


def queued_counts(
    session: Session, cutoff: datetime, *, limit: int = 500
) -> dict[str, tuple[int, list[str]]]:
    """Per job type: how many jobs are queued, and (up to `limit`) those queued before `cutoff`."""
    totals = dict(
        session.execute(
            select(Job.type, func.count()).where(Job.status == _QUEUED).group_by(Job.type)
        ).all()
    )
    found: dict[str, tuple[int, list[str]]] = {}
    for job_type, total in totals.items():
        stale = session.scalars(
            select(Job.id)
            .where(
                Job.status == _QUEUED,
                Job.type == job_type,
                or_(Job.queued_at.is_(None), Job.queued_at <= cutoff),
            )
            .order_by(*CLAIM_ORDER)
            .limit(limit)
        )
        found[job_type] = (int(total), list(stale))
    session.rollback()  # end the read snapshot
    return found


def due_pending(
    session: Session, now: datetime | None = None, *, limit: int | None = None
) -> list[str]:
    """Pending jobs ready to dispatch (no backoff left), in claim order."""
    now = utcnow() if now is None else as_utc(now)
    stmt = (
        select(Job.id)
        .where(Job.status == _PENDING, or_(Job.not_before.is_(None), Job.not_before <= now))
        .order_by(*CLAIM_ORDER)
        .limit(limit)
    )
    return list(session.scalars(stmt))


def get_job(session: Session, job_id: str) -> Job:
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise JobNotFound(f"no job {job_id}")
    return job


def list_jobs(
    session: Session,
    *,
    status: str | Sequence[str] | None = None,
    job_type: str | None = None,
    video_id: str | None = None,
    job_ids: Sequence[str] | None = None,
    owner: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Job]:
    """Jobs, newest first, optionally filtered; `owner`: a token's own jobs and its videos'."""
    stmt = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit).offset(offset)
    if owner is not None:
        owned = select(Video.id).where(Video.owner_token_id == owner)
        stmt = stmt.where(or_(Job.owner_token_id == owner, Job.video_id.in_(owned)))
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        stmt = stmt.where(Job.status.in_(statuses))
    if job_type is not None:
        stmt = stmt.where(Job.type == job_type)
    if video_id is not None:
        stmt = stmt.where(Job.video_id == video_id)
    if job_ids is not None:
        stmt = stmt.where(Job.id.in_(list(job_ids)))
    return list(session.scalars(stmt.execution_options(populate_existing=True)))


def rank(session: Session, job_id: str) -> tuple[int | None, int]:
    """(1-based place among waiting jobs in claim order, or None if not waiting; total waiting)."""
    job = get_job(session, job_id)
    waiting = Job.status.in_(_WAITING)
    total = session.scalar(select(func.count()).select_from(Job).where(waiting)) or 0
    if job.status not in _WAITING:
        return None, total
    ahead = or_(
        Job.priority > job.priority,
        and_(Job.priority == job.priority, Job.created_at < job.created_at),
        and_(Job.priority == job.priority, Job.created_at == job.created_at, Job.id < job.id),
    )
    before = session.scalar(select(func.count()).select_from(Job).where(waiting, ahead)) or 0
    return before + 1, total


def ranks(session: Session, jobs: Sequence[Job]) -> tuple[dict[str, int], int]:
    """`rank` for many jobs at once (a list, the event stream): the places of those that
    wait, and the total waiting, in two queries whatever the number of jobs."""
    waiting = Job.status.in_(_WAITING)
    total = session.scalar(select(func.count()).select_from(Job).where(waiting)) or 0
    ids = [job.id for job in jobs if job.status in _WAITING]
    if not ids:
        return {}, total
    place = func.row_number().over(order_by=CLAIM_ORDER).label("place")
    ordered = select(Job.id, place).where(waiting).subquery()
    found = session.execute(select(ordered.c.id, ordered.c.place).where(ordered.c.id.in_(ids)))
    return {job_id: int(n) for job_id, n in found}, total


#: A running job silent this long is worth saying so ("no news for 40 s"): its worker may be
#: dead, and its lease has not run out yet.
QUIET_SECONDS = 10.0


def heartbeat_age(job: Job, now: datetime | None = None) -> float | None:
    """Seconds since a running job's worker last reported (claim or heartbeat); else None."""
    if job.status != JobStatus.RUNNING.value or job.updated_at is None:
        return None
    return max(0.0, ((now or utcnow()) - as_utc(job.updated_at)).total_seconds())


def news(job: Job, now: datetime | None = None) -> str | None:
    """`no news for 40 s` for a running job that has been quiet a while, else None."""
    age = heartbeat_age(job, now)
    return None if age is None or age < QUIET_SECONDS else f"no news for {age:.0f} s"

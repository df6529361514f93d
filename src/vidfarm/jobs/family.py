"""Jobs made of children: a parent split into child jobs, joined by one last job.

A chunked encode is the first user: the `encode` job (the parent) is split into
`encode_chunk` children, each a job of its own (lease, fencing token, retries, progress), and
when the last one completes the core creates the parent's `join_type` job (the `stitch`), once,
in that completion's transaction, guarded by a conditional update of the parent's step (the
same discipline as the runner importer). The join's completion completes the parent with the
join's result and outputs, and creates the parent's follow-ups. The core names no kind here:
the parent declares its join type, children carry a `weight` (media seconds) in their params.

While split, the parent is `running` with no lease (no worker holds it; the reclaimer skips
it) and its step says where it is: `chunks`, then `stitching`. Its progress is the weighted
share of its children's progress (media seconds done over total).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update
from sqlalchemy.orm import Session

from vidfarm.db import is_postgresql, write_transaction
from vidfarm.errors import InvalidTransition
from vidfarm.jobs.clock import utcnow
from vidfarm.jobs.followups import queue_follow_ups
from vidfarm.jobs.rows import FINAL, PENDING, RUNNING, clear_lease, lock_row, one_line
from vidfarm.models import Job, JobStatus, Output

SPLIT_STEP = "chunks"
JOIN_STEP = "stitching"
#: The parent's progress never reads 100 before the join completed.
JOINED_SHARE = 99.0


@dataclass(frozen=True)
class Split:
    """How a job is to be split: its children's params (each with a `weight`), their type and
    the type of the job joining them."""

    children: Sequence[dict[str, Any]]
    child_type: str
    join_type: str


def apply_split(session: Session, parent: Job, plan: Split) -> list[Job]:
    """Make `parent` a running parent of the planned children, in the caller's transaction
    (`create_job`, `restart`: the scheduler never sees it pending in between); the
    scheduler dispatches the children, never the parent."""
    now = utcnow()
    parent.status = RUNNING
    parent.step = SPLIT_STEP
    parent.join_type = plan.join_type
    parent.started_at = now
    parent.updated_at = now
    made = [
        Job(
            type=plan.child_type,
            video_id=parent.video_id,
            parent_id=parent.id,
            params=dict(params),
            status=PENDING,
            priority=parent.priority,
            max_attempts=parent.max_attempts,
            owner_token_id=parent.owner_token_id,
            # In order (claims go oldest first): the start plays first (docs/chunked.md).
            created_at=now + timedelta(microseconds=n),
        )
        for n, params in enumerate(plan.children)
    ]
    session.add_all(made)
    return made


def forget_children(session: Session, parent_id: str) -> list[str]:
    """Delete a finished parent's children (before it runs again); returns the storage
    prefixes of what they published that is nobody's now (the join's became the parent's
    outputs: not listed)."""
    with write_transaction(session):
        parent = lock_row(session, parent_id)
        if parent.status not in FINAL:
            raise InvalidTransition(f"job {parent_id} is {parent.status}: it has not ended")
        children = children_of(session, parent_id)
        unfinished = [c.id for c in children if c.status not in FINAL]
        if unfinished:
            raise InvalidTransition(f"job {parent_id}: its part {unfinished[0]} has not ended")
        leftovers = [
            str((c.result or {})["prefix"])
            for c in children
            if c.type != parent.join_type and (c.result or {}).get("prefix")
        ]
        session.execute(
            delete(Job)
            .where(Job.id.in_([c.id for c in children]))
            .execution_options(synchronize_session=False)
        )
        parent.join_type = None
    return leftovers


def children_of(session: Session, parent_id: str) -> list[Job]:
    return list(
        session.scalars(
            select(Job)
            .where(Job.parent_id == parent_id)
            .order_by(Job.created_at, Job.id)
            .execution_options(populate_existing=True)
        )
    )


def child_completed(session: Session, job: Job) -> None:
    """In `complete`'s transaction: a child finished; join, or finish the parent."""
    if job.parent_id is None:
        return
    parent = lock_row(session, job.parent_id)
    if parent.status != RUNNING:
        return  # cancelled or failed meanwhile: nothing to join
    if job.type == parent.join_type:
        _finish_parent(session, parent, job)
        return
    parts = [c for c in children_of(session, parent.id) if c.type != parent.join_type]
    _set_progress(parent, parts)
    if any(c.status != JobStatus.COMPLETED.value for c in parts):
        return
    moved = cast(
        CursorResult[Any],
        session.execute(
            update(Job)
            .where(Job.id == parent.id, Job.status == RUNNING, Job.step == SPLIT_STEP)
            .values(step=JOIN_STEP, updated_at=utcnow())
            .execution_options(synchronize_session=False)
        ),
    )
    if moved.rowcount != 1:
        return  # another completion created the join already
    results = [
        {**dict(c.params), "result": dict(c.result or {})}
        for c in sorted(parts, key=lambda c: float(c.params.get("start_at", 0.0)))
    ]
    session.add(
        Job(
            type=parent.join_type,
            video_id=parent.video_id,
            parent_id=parent.id,
            params={**dict(parent.params), "children": results},
            status=PENDING,
            priority=parent.priority + 1,  # the last step of a waiting video goes first
            max_attempts=parent.max_attempts,
            owner_token_id=parent.owner_token_id,
            created_at=utcnow(),
        )
    )


def _finish_parent(session: Session, parent: Job, join: Job) -> None:
    now = utcnow()
    session.execute(
        update(Output)
        .where(Output.job_id == join.id)
        .values(job_id=parent.id)
        .execution_options(synchronize_session=False)
    )
    parent.status = JobStatus.COMPLETED.value
    parent.step = None
    parent.result = dict(join.result or {})
    parent.progress = 100.0
    parent.error = None
    parent.error_class = None
    parent.finished_at = now
    parent.updated_at = now
    queue_follow_ups(session, parent)


def child_failed(session: Session, job: Job) -> None:
    """After a child's failure was recorded: a final one fails the parent and stops the rest
    (a retry of the child alone changes nothing here)."""
    if job.parent_id is None or job.status not in FINAL:
        return
    parent = lock_row(session, job.parent_id)
    if parent.status != RUNNING:
        return
    now = utcnow()
    parent.status = job.status if job.status != JobStatus.CANCELLED.value else "failed"
    parent.error = one_line(f"{job.type} {job.params.get('index', '')} {job.status}: {job.error}")
    parent.error_class = job.error_class
    parent.finished_at = now
    parent.updated_at = now
    cancel_children(session, parent.id)


def cancel_children(session: Session, parent_id: str) -> None:
    """Cancel every unfinished child that no other transaction holds; one that is held (its
    heartbeat or report is in flight) learns it at its next heartbeat (`child_progressed`).

    Locks are always taken child first, then parent (heartbeat, complete, fail); holding the
    parent here, waiting for a child would deadlock, so held children are skipped."""
    now = utcnow()
    for child in _unlocked_children(session, parent_id):
        if child.status in FINAL:
            continue
        _cancel(child, now)


def _cancel(child: Job, now: datetime) -> None:
    child.status = JobStatus.CANCELLED.value
    child.error = "cancelled with its parent"
    child.error_class = "JobCancelled"
    child.finished_at = now
    child.updated_at = now
    clear_lease(child)


def child_progressed(session: Session, job: Job) -> bool:
    """In a heartbeat's transaction (the child's row held): the parent's progress follows its
    children's. False when the parent ended meanwhile: the child is cancelled, stop now."""
    if job.parent_id is None:
        return True
    parent = session.get(Job, job.parent_id, populate_existing=True)
    if parent is None or parent.status != RUNNING:
        _cancel(job, utcnow())
        return False
    if job.type == parent.join_type:
        return True
    stmt = select(Job).where(Job.id == parent.id).execution_options(populate_existing=True)
    if is_postgresql(session):  # never wait for the parent: progress is advisory
        stmt = stmt.with_for_update(skip_locked=True)
    held = session.scalars(stmt).one_or_none()
    if held is not None and held.status == RUNNING:
        _set_progress(held, [c for c in children_of(session, held.id) if c.type != held.join_type])
    return True


def _unlocked_children(session: Session, parent_id: str) -> list[Job]:
    stmt = (
        select(Job)
        .where(Job.parent_id == parent_id)
        .order_by(Job.id)
        .execution_options(populate_existing=True)
    )
    if is_postgresql(session):
        stmt = stmt.with_for_update(skip_locked=True)
    return list(session.scalars(stmt))


def _set_progress(parent: Job, parts: Sequence[Job]) -> None:
    total = sum(float(c.params.get("weight", 1.0)) for c in parts) or 1.0
    done = sum(
        float(c.params.get("weight", 1.0))
        * (100.0 if c.status == JobStatus.COMPLETED.value else c.progress)
        for c in parts
    )
    parent.progress = min(JOINED_SHARE, done / total)
    parent.updated_at = utcnow()


def summary(session: Session, parent_id: str) -> list[dict[str, Any]]:
    """The children as the API and the CLI show them."""
    return summaries(session, [parent_id]).get(parent_id, [])


def summaries(session: Session, parent_ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    """`summary` of many parents in one query (a job list holding chunked encodes)."""
    if not parent_ids:
        return {}
    children = session.scalars(
        select(Job)
        .where(Job.parent_id.in_(list(parent_ids)))
        .execution_options(populate_existing=True)
    )
    found: dict[str, list[Job]] = {}
    for child in children:
        found.setdefault(str(child.parent_id), []).append(child)
    return {
        parent: [
            {
                "id": c.id,
                "type": c.type,
                "status": c.status,
                "progress": round(c.progress, 1),
                "attempts": c.attempts,
                "start": c.params.get("start_at"),
                "end": c.params.get("end_at"),
            }
            for c in sorted(
                kids, key=lambda c: (c.created_at, float(c.params.get("start_at") or 0.0), c.id)
            )
        ]
        for parent, kids in found.items()
    }


__all__ = [
    "JOIN_STEP",
    "SPLIT_STEP",
    "Split",
    "apply_split",
    "cancel_children",
    "child_completed",
    "child_failed",
    "child_progressed",
    "children_of",
    "forget_children",
    "summaries",
    "summary",
]

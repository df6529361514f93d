"""The xAPI outbox: statements are written to SQL first, then delivered to the LRS in batches.

    pending ──POST 200/204 (or 409: the LRS has it)──► delivered
       │ ──400/422 for this statement alone────────► dead (the LRS's reason kept; redeliverable)
       │ ──5xx, 429, timeout, no answer────────────► pending, next try after backoff + jitter
       └ ──401/403 (404: wrong URL)────────────────► pending, delivery paused (an alert in status)

After a success, every statement backing off is due again at once: the LRS is back, so the
backlog drains in full batches instead of at each statement's own randomised retry time.

A 400 for a batch is bisected until the bad statement is alone, so one malformed statement
never holds back the others. The LRS treats a second POST of the same id and content as
already stored: a batch sent twice (a lost answer, a crash after sending) has no second effect.
This module is the table (write, claim, record, read); `delivery` is the loop that sends.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from vidfarm.db import is_postgresql, write_transaction
from vidfarm.jobs import as_utc, backoff_delay
from vidfarm.models import XapiStatement

log = logging.getLogger(__name__)

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"
STATES = (PENDING, DELIVERED, DEAD)
DELIVERED_STATUSES = frozenset({200, 204})
#: The LRS says our request, not the statements, is wrong: stop sending until it is fixed.
PAUSE_STATUSES = frozenset({401, 403, 404, 405})
#: The LRS refuses what we sent: bisect a batch, kill a single statement.
REFUSED_STATUSES = frozenset({400, 413, 422})
CONFLICT = 409
_IN_CHUNK = 500

Outcome = Literal["delivered", "dead", "retry", "paused"]


def utcnow() -> datetime:
    return datetime.now(UTC)


# --- writing to the outbox ----------------------------------------------------------------------


def enqueue(session: Session, statements: Sequence[tuple[dict[str, Any], str | None]]) -> list[str]:
    """Store built statements (with their video id) as pending; one transaction for all."""
    now = utcnow()
    with write_transaction(session):
        for statement, video_id in statements:
            session.add(
                XapiStatement(
                    id=statement["id"],
                    statement=statement,
                    video_id=video_id,
                    state=PENDING,
                    attempts=0,
                    next_attempt_at=now,
                    created_at=now,
                )
            )
    return [statement["id"] for statement, _ in statements]


def claim_due(session: Session, limit: int, lease_seconds: float) -> list[XapiStatement]:
    """Take up to `limit` due statements, oldest first, hiding them for `lease_seconds`.

    The lease keeps a second delivery loop (another process) from sending the same batch at
    the same time; if this one dies, the statements come back when the lease runs out.
    """
    now = utcnow()
    with write_transaction(session):
        query = (
            select(XapiStatement)
            .where(XapiStatement.state == PENDING, XapiStatement.next_attempt_at <= now)
            .order_by(XapiStatement.next_attempt_at, XapiStatement.created_at, XapiStatement.id)
            .limit(limit)
        )
        if is_postgresql(session):
            query = query.with_for_update(skip_locked=True)
        rows = list(session.scalars(query))
        for row in rows:
            row.next_attempt_at = now + timedelta(seconds=lease_seconds)
    return rows


@dataclass(frozen=True, slots=True)
class Result:
    outcome: Outcome
    status: int
    reason: str


def record(
    session: Session, results: dict[str, Result], *, retry_base: float, retry_max: float
) -> None:
    """Write the outcome of one delivery round; a success also lifts an earlier pause and
    brings every statement backing off forward (the LRS answers again: catch up now)."""
    now = utcnow()
    with write_transaction(session):
        ids = list(results)
        rows: list[XapiStatement] = []
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            rows.extend(session.scalars(select(XapiStatement).where(XapiStatement.id.in_(chunk))))
        for row in rows:
            result = results[row.id]
            row.last_status = result.status
            row.last_error = result.reason or None
            if result.outcome == "delivered":
                row.state = DELIVERED
                row.delivered_at = now
            elif result.outcome == "dead":
                row.state = DEAD
            elif result.outcome == "retry":
                row.attempts += 1
                delay = backoff_delay(row.attempts, retry_base, max(retry_base, retry_max))
                row.next_attempt_at = now + timedelta(seconds=delay)
            else:  # paused: not the statement's fault, so no attempt is counted
                row.next_attempt_at = now
        outcomes = {r.outcome for r in results.values()}
        if "delivered" in outcomes and not outcomes & {"paused", "retry"}:
            # Backing off = tried before and waiting. A statement another loop leases right
            # now may be sent twice; the LRS keeps one (same id), as after any lost answer.
            session.execute(
                update(XapiStatement)
                .where(
                    XapiStatement.state == PENDING,
                    XapiStatement.attempts > 0,
                    XapiStatement.next_attempt_at > now,
                )
                .values(next_attempt_at=now)
            )
        if "delivered" in outcomes and "paused" not in outcomes:
            session.execute(
                update(XapiStatement)
                .where(
                    XapiStatement.state == PENDING,
                    XapiStatement.last_status.in_(sorted(PAUSE_STATUSES)),
                )
                .values(last_status=None, last_error=None)
            )


def redeliver_dead(session: Session, ids: Sequence[str] | None = None) -> int:
    """Send dead statements again (after the LRS or the statement was fixed); returns how many."""
    with write_transaction(session):
        query = update(XapiStatement).where(XapiStatement.state == DEAD)
        if ids is not None:
            query = query.where(XapiStatement.id.in_(list(ids)))
        moved = session.execute(
            query.values(
                state=PENDING, attempts=0, next_attempt_at=utcnow(), last_status=None
            ).execution_options(synchronize_session=False)
        )
        return int(getattr(moved, "rowcount", 0) or 0)


# --- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    pending: int
    delivered: int
    dead: int
    paused: bool
    pause_reason: str | None
    retrying: int  # pending statements that failed at least once (LRS down, 5xx)
    last_error: str | None  # of the most recently failed pending statement
    next_attempt_at: datetime | None
    oldest_pending_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return None if value is None else as_utc(value).isoformat()

        return {
            "pending": self.pending,
            "delivered": self.delivered,
            "dead": self.dead,
            "paused": self.paused,
            "pause_reason": self.pause_reason,
            "retrying": self.retrying,
            "last_error": self.last_error,
            "next_attempt_at": iso(self.next_attempt_at),
            "oldest_pending_at": iso(self.oldest_pending_at),
        }


def outbox_status(session: Session) -> OutboxStatus:
    """Counts per state, and whether delivery is paused (the LRS refused our credentials)."""
    counts = dict(
        session.execute(
            select(XapiStatement.state, func.count()).group_by(XapiStatement.state)
        ).all()
    )
    pending_only = XapiStatement.state == PENDING
    pause = session.execute(
        select(XapiStatement.last_status, XapiStatement.last_error)
        .where(pending_only, XapiStatement.last_status.in_(sorted(PAUSE_STATUSES)))
        .limit(1)
    ).first()
    failing = session.execute(
        select(XapiStatement.last_error)
        .where(pending_only, XapiStatement.attempts > 0)
        .order_by(XapiStatement.next_attempt_at.desc())
        .limit(1)
    ).first()
    retrying = session.scalar(select(func.count()).where(pending_only, XapiStatement.attempts > 0))
    next_at, oldest = session.execute(
        select(func.min(XapiStatement.next_attempt_at), func.min(XapiStatement.created_at)).where(
            pending_only
        )
    ).one()
    session.rollback()  # end the read snapshot: status is polled by long-lived sessions
    return OutboxStatus(
        pending=int(counts.get(PENDING, 0)),
        delivered=int(counts.get(DELIVERED, 0)),
        dead=int(counts.get(DEAD, 0)),
        paused=pause is not None,
        pause_reason=None if pause is None else f"LRS answered {pause[0]}: {pause[1]}",
        retrying=int(retrying or 0),
        last_error=None if failing is None else failing[0],
        next_attempt_at=next_at,
        oldest_pending_at=oldest,
    )


def due_now(session: Session, now: datetime | None = None) -> tuple[bool, bool]:
    """(some statement is due, delivery is paused): two indexed LIMIT 1 lookups.

    The reconciler asks this every tick; `outbox_status` counts the whole table, which only
    grows with delivered history.
    """
    now = utcnow() if now is None else as_utc(now)
    pending = XapiStatement.state == PENDING
    due = session.scalar(
        select(XapiStatement.id).where(pending, XapiStatement.next_attempt_at <= now).limit(1)
    )
    paused = session.scalar(
        select(XapiStatement.id)
        .where(pending, XapiStatement.last_status.in_(sorted(PAUSE_STATUSES)))
        .limit(1)
    )
    session.rollback()
    return due is not None, paused is not None


def list_dead(session: Session, *, limit: int = 50, offset: int = 0) -> list[XapiStatement]:
    return list(
        session.scalars(
            select(XapiStatement)
            .where(XapiStatement.state == DEAD)
            .order_by(XapiStatement.created_at, XapiStatement.id)
            .limit(limit)
            .offset(offset)
        )
    )


def dead_view(row: XapiStatement) -> dict[str, Any]:
    return {
        "id": row.id,
        "video_id": row.video_id,
        "status": row.last_status,
        "reason": row.last_error,
        "created_at": as_utc(row.created_at).isoformat(),
        "statement": row.statement,
    }

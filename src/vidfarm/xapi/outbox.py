"""The xAPI outbox: statements are written to SQL first, then delivered to the LRS in batches.

    pending ──POST 200/204 (or 409: the LRS has it)──► delivered
       │ ──400/422 for this statement alone────────► dead (the LRS's reason kept; redeliverable)
       │ ──5xx, 429, timeout, no answer────────────► pending, next try after backoff + jitter
       └ ──401/403 (404: wrong URL)────────────────► pending, delivery paused (an alert in status)

A 400 for a batch is bisected until the bad statement is alone, so one malformed statement
never holds back the others. The LRS treats a second POST of the same id and content as
already stored: a batch sent twice (a lost answer, a crash after sending) has no second effect.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from vidfarm.config import Settings
from vidfarm.db import is_postgresql, write_transaction
from vidfarm.jobs import as_utc, backoff_delay
from vidfarm.models import XapiStatement
from vidfarm.xapi.lrs import LrsAnswer, LrsClient

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
    """Write the outcome of one delivery round; a success also lifts an earlier pause."""
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


# --- delivering ---------------------------------------------------------------------------------


def delivery_lease_seconds(settings: Settings) -> float:
    """How long a claimed batch stays hidden: bisecting n statements takes up to 2n requests."""
    return max(60.0, settings.xapi_timeout_seconds * 4)


@dataclass(frozen=True, slots=True)
class Leased:
    """One statement handed to a delivery loop (a row here, a JSON item for remote workers)."""

    id: str
    statement: dict[str, Any]


class OutboxPort(Protocol):
    """Where a delivery loop takes statements from and writes outcomes to."""

    def claim(self, limit: int, lease_seconds: float) -> Sequence[Leased]: ...

    def record(self, results: dict[str, Result]) -> None: ...


class SqlOutbox:
    """The outbox table itself: used by the embedded loop and by the worker API's routes."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings

    def claim(self, limit: int, lease_seconds: float) -> list[Leased]:
        with self._sessions() as session:
            rows = claim_due(session, limit, lease_seconds)
            return [Leased(row.id, row.statement) for row in rows]

    def record(self, results: dict[str, Result]) -> None:
        with self._sessions() as session:
            record(
                session,
                results,
                retry_base=self._settings.xapi_retry_base_seconds,
                retry_max=self._settings.xapi_retry_max_seconds,
            )


@dataclass
class DeliveryReport:
    """What one `deliver_once` did."""

    claimed: int = 0
    requests: int = 0
    delivered: int = 0
    dead: int = 0
    retried: int = 0
    paused: bool = False
    reason: str | None = None
    results: dict[str, Result] = field(default_factory=dict, repr=False)


class XapiDelivery:
    """Delivers the outbox to the LRS: `deliver_once()` for one batch, or a background loop.

    The loop runs in the `vidfarm serve` process (the embedded worker) on the SQL outbox, or in
    a Celery worker of the `xapi` queue on the worker API (`vidfarm.remote.HttpOutbox`); the
    CLI and tests call `deliver_once()` directly. Stopping is clean at any time: a statement
    claimed but not yet recorded comes back when its lease runs out, and a resend has no
    second effect.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session] | None,
        settings: Settings,
        *,
        client: LrsClient | None = None,
        outbox: OutboxPort | None = None,
    ) -> None:
        self.settings = settings
        if outbox is None:
            if sessions is None:
                raise ValueError("XapiDelivery needs a database or an outbox")
            outbox = SqlOutbox(sessions, settings)
        self.outbox = outbox
        self.client = client or LrsClient(
            url=settings.xapi_lrs_url,
            login=settings.xapi_lrs_login,
            password=settings.xapi_lrs_password.get_secret_value(),
            timeout=settings.xapi_timeout_seconds,
        )
        self._own_client = client is None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._paused_reason: str | None = None

    @property
    def lease_seconds(self) -> float:
        # Bisecting a batch of n takes up to 2n requests; never expire under a slow LRS.
        return delivery_lease_seconds(self.settings)

    def deliver_once(self) -> DeliveryReport:
        """Claim one batch of due statements, send it, record every statement's outcome."""
        batch = list(self.outbox.claim(self.settings.xapi_batch_size, self.lease_seconds))
        report = DeliveryReport(claimed=len(batch))
        if not batch:
            return report
        self._send(batch, report)
        self.outbox.record(report.results)
        for result in report.results.values():
            if result.outcome == "delivered":
                report.delivered += 1
            elif result.outcome == "dead":
                report.dead += 1
            elif result.outcome == "retry":
                report.retried += 1
        return report

    def _send(self, batch: list[Leased], report: DeliveryReport) -> None:
        if report.paused:  # the LRS refused us for a sibling half: do not hammer it
            for row in batch:
                report.results[row.id] = Result("paused", 0, report.reason or "")
            return
        answer = self.client.post_statements([row.statement for row in batch])
        report.requests += 1
        outcome = _classify(answer, len(batch))
        if outcome == "split":
            middle = len(batch) // 2
            self._send(batch[:middle], report)
            self._send(batch[middle:], report)
            return
        reason = answer.reason
        if outcome == "delivered" and answer.status == CONFLICT:
            reason = f"the LRS already had this id: {answer.reason}"
        elif outcome == "paused":
            report.paused = True
            report.reason = f"LRS answered {answer.status}: {answer.reason}"
        for row in batch:
            report.results[row.id] = Result(outcome, answer.status, reason)

    # --- the background loop --------------------------------------------------------------------

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="xapi-delivery", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._own_client:
            self.client.close()

    def _run(self) -> None:
        poll = self.settings.poll_seconds
        while not self._stop.is_set():
            try:
                report = self.deliver_once()
            except Exception:  # the database went away, a bug: log, wait, go on
                log.exception("xAPI delivery round failed")
                self._stop.wait(poll)
                continue
            if report.paused:
                if self._paused_reason is None:
                    log.error("xAPI delivery paused: %s", report.reason)
                self._paused_reason = report.reason
                self._stop.wait(self.settings.xapi_pause_seconds)
                continue
            if self._paused_reason is not None and report.delivered:
                log.warning("xAPI delivery resumed")
                self._paused_reason = None
            if report.claimed < self.settings.xapi_batch_size:
                self._stop.wait(poll)


def _classify(answer: LrsAnswer, size: int) -> Outcome | Literal["split"]:
    status = answer.status
    if status in DELIVERED_STATUSES:
        return "delivered"
    if status in PAUSE_STATUSES:
        return "paused"
    if status in REFUSED_STATUSES or status == CONFLICT:
        if size > 1:
            return "split"
        return "delivered" if status == CONFLICT else "dead"
    return "retry"  # NO_ANSWER, 408, 429, 5xx and anything unexpected: try again later

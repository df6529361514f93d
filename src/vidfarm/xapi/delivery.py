"""The xAPI delivery loop: claim a batch from an outbox, send it, record each outcome.

One algorithm over two outboxes: the SQL table in-process (`SqlOutbox`), or the worker API
for a Celery `xapi` worker (remote.py). The outcome rules are in outbox.py's docstring.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from sqlalchemy.orm import Session, sessionmaker

from vidfarm.config import Settings
from vidfarm.xapi.lrs import LrsAnswer, LrsClient
from vidfarm.xapi.outbox import (
    CONFLICT,
    DELIVERED_STATUSES,
    PAUSE_STATUSES,
    REFUSED_STATUSES,
    Outcome,
    Result,
    claim_due,
    record,
)

log = logging.getLogger(__name__)


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
        leader: Callable[[], bool] | None = None,
    ) -> None:
        self.settings = settings
        self._leader = leader  # among replicas, deliver only while this one leads
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
            if self._leader is not None and not self._leader():
                self._stop.wait(poll)
                continue
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

"""Transports that carry job ids to workers: the local pool, Celery queues, runner managers.

A dispatcher only hands ids over; SQL stays the truth (ARCHITECTURE.md, invariant 1), so a
lost message is repaired by the scheduler (`reconcile`), never by the transport alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol


class Dispatcher(Protocol):
    def dispatch(self, job_ids: list[str]) -> None:
        """Mark the pending jobs queued and make them reachable by a worker."""
        ...

    def reconcile(self, now: datetime) -> None:
        """Repair what the transport may have lost; called on every scheduler tick."""
        ...

    def start(self) -> None:
        """Start the transport's own background work (if any) in this process."""
        ...

    def stop(self, timeout: float) -> None:
        """Stop that background work; jobs in flight stay owned by SQL."""
        ...

    def requeued(self, job_ids: list[str]) -> None:
        """A stopping worker handed these jobs back (queued again): make them reachable now."""
        ...

    def workers(self) -> list[dict[str, Any]]:
        """Workers this transport knows of: name, queues, online, active [{job_id}]."""
        ...

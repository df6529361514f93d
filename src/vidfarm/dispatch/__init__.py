"""Transports that carry job ids to workers: the local pool, Celery queues, runner managers.

A dispatcher only hands ids over; SQL stays the truth (ARCHITECTURE.md, invariant 1), so a
lost message is repaired by the scheduler, never by the transport.
"""

from __future__ import annotations

from typing import Protocol


class Dispatcher(Protocol):
    def dispatch(self, job_ids: list[str]) -> None:
        """Mark the pending jobs queued and make them reachable by a worker."""
        ...

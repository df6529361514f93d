"""Which runner managers may be asked right now, and a client to ask each one.

A manager that answered 503 or failed is left alone for `runners_busy_seconds`; the others
come in dispatch order (priority, then least recently used). Submission and the status
checks of the reconciler share one pool, so a manager found down by either is skipped by both.

What each manager runs is learnt from its health answer (`task_types`, kept in SQL so every
process and the chunking decision see it), asked again every `TASK_TYPES_MAX_AGE` seconds
and within 30 s after its URL or token changed; one that did not answer is asked again after
`TASK_TYPES_RETRY` seconds, not at every pass.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from vidfarm.config import Settings
from vidfarm.dispatch.runners import registry as runner_registry
from vidfarm.dispatch.runners.client import ManagerClient
from vidfarm.jobs import as_utc
from vidfarm.models import RunnerManager

log = logging.getLogger(__name__)

TASK_TYPES_MAX_AGE = 300.0
TASK_TYPES_RETRY = 30.0


class ManagerPool:
    """The registered managers, minus those recently busy; thread-safe."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._busy_until: dict[str, float] = {}
        self._types_asked: dict[str, float] = {}
        self._lock = threading.Lock()

    def client(self, manager: RunnerManager) -> ManagerClient:
        token = runner_registry.decrypt_token(runner_registry.load_cipher(self._settings), manager)
        return ManagerClient(
            name=manager.name,
            url=manager.url,
            token=token,
            timeout=self._settings.runners_request_timeout,
            allow_private=self._settings.runners_allow_private_urls,
        )

    def mark_busy(self, manager_id: str) -> None:
        with self._lock:
            self._busy_until[manager_id] = time.monotonic() + self._settings.runners_busy_seconds

    def available(self, session: Session) -> list[RunnerManager]:
        now = time.monotonic()
        with self._lock:
            busy = {key for key, until in self._busy_until.items() if until > now}
        ordered = runner_registry.dispatch_order(runner_registry.list_managers(session))
        session.rollback()
        return [m for m in ordered if m.id not in busy]

    def refresh_task_types(self, session: Session, now: datetime) -> None:
        """Ask the managers whose task types are unknown or old what they run."""
        due = [
            m
            for m in runner_registry.dispatch_order(runner_registry.list_managers(session))
            if m.task_types_checked_at is None
            or as_utc(m.task_types_checked_at) < now - timedelta(seconds=TASK_TYPES_MAX_AGE)
        ]
        session.rollback()
        for manager in due:
            with self._lock:
                asked = self._types_asked.get(manager.id)
                if asked is not None and time.monotonic() - asked < TASK_TYPES_RETRY:
                    continue
                self._types_asked[manager.id] = time.monotonic()
            try:
                with self.client(manager) as client:
                    report = client.health()
            except Exception as error:  # an undecryptable token, say: the pass goes on
                log.warning("runner manager %s: cannot ask its task types: %s", manager.name, error)
                continue
            runner_registry.record_task_types(session, manager.id, report)

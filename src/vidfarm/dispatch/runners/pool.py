"""Which runner managers may be asked right now, and a client to ask each one.

A manager that answered 503 or failed is left alone for `runners_busy_seconds`; the others
come in dispatch order (priority, then least recently used). Submission and the status
checks of the reconciler share one pool, so a manager found down by either is skipped by both.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy.orm import Session

from vidfarm.config import Settings
from vidfarm.dispatch.runners import registry as runner_registry
from vidfarm.dispatch.runners.client import ManagerClient
from vidfarm.models import RunnerManager


class ManagerPool:
    """The registered managers, minus those recently busy; thread-safe."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._busy_until: dict[str, float] = {}
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

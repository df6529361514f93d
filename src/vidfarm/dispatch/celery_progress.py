"""A Celery task's live progress, where Celery tools look for it (Flower, AsyncResult).

SQL stays the truth (the worker API records progress and renews the lease); this is a copy
for Celery's own tools: the task's state becomes `PROGRESS` with meta
`{"percent", "step", "job_id"}` in the result backend (when `VIDFARM_RESULT_BACKEND` is set)
and a `task-progress` event goes to the broker's event exchange (Flower shows the task's
state as PROGRESS with those fields). Publishing is throttled and never raises: a slow or
absent backend costs the job nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Celery

log = logging.getLogger(__name__)

PROGRESS = "PROGRESS"
EVENT = "task-progress"


class ProgressPublisher:
    """Called with every progress report of one task; publishes at most once per interval."""

    def __init__(
        self,
        app: Celery,
        *,
        task_id: str,
        hostname: str | None,
        job_id: str,
        min_interval: float = 1.0,
    ) -> None:
        # The task's id and hostname are read here, in the task's thread: progress comes
        # from the encoder's thread, where Celery's `task.request` is empty.
        self._app = app
        self._task_id = task_id
        self._hostname = hostname
        self._job_id = job_id
        self._min_interval = min_interval
        self._last = float("-inf")
        self._lock = threading.Lock()
        self._has_backend = bool(app.conf.result_backend)

    def __call__(self, percent: float, step: str) -> None:
        now = time.monotonic()
        with self._lock:
            if now - self._last < self._min_interval:
                return
            self._last = now
        meta = self.meta(percent, step)
        try:
            if self._has_backend:
                self._app.backend.store_result(self._task_id, meta, PROGRESS)
            with self._app.events.default_dispatcher(hostname=self._hostname) as dispatcher:
                dispatcher.send(EVENT, uuid=self._task_id, **meta)
        except Exception as error:  # the broker or backend is away: SQL has the progress
            log.debug("task %s: progress not published: %s", self._task_id, error)

    def meta(self, percent: float, step: str) -> dict[str, Any]:
        return {"percent": round(float(percent), 1), "step": step, "job_id": self._job_id}

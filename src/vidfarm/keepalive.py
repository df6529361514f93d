"""A reporter wrapper that renews the lease while a long step holds the worker."""

from __future__ import annotations

import threading
from typing import Any

from vidfarm.claims import OutputRecord, Reporter
from vidfarm.errors import VidfarmError


class KeepAlive:
    """A reporter that also renews the lease between the job's own reports.

    Loading a speech model, hashing or uploading outputs can take longer than a lease; the
    lease must not expire because a step is long, only because the worker is gone. When the
    job core learns it must stop (cancelled, stale, shutting down), so does every later report.
    """

    def __init__(self, reporter: Reporter, interval: float) -> None:
        self._reporter = reporter
        self._interval = interval
        self._lock = threading.Lock()
        self._percent, self._step = 0.0, "starting"
        self._stopped = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="vidfarm-keepalive", daemon=True)

    def __enter__(self) -> KeepAlive:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def progress(self, percent: float, step: str) -> bool:
        with self._lock:
            self._percent, self._step = percent, step
            self._stopped = self._stopped or not self._reporter.progress(percent, step)
            return not self._stopped

    def complete(self, result: dict[str, Any], outputs: list[OutputRecord]) -> None:
        self._done.set()
        with self._lock:
            self._reporter.complete(result, outputs)

    def fail(self, error: VidfarmError, log_tail: list[str]) -> None:
        self._done.set()
        with self._lock:
            self._reporter.fail(error, log_tail)

    def _beat(self) -> None:
        while not self._done.wait(self._interval):
            with self._lock:
                if self._done.is_set() or self._stopped:
                    return
                self._stopped = not self._reporter.progress(self._percent, self._step)

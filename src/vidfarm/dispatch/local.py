"""The embedded transport: a pool of threads in this process claiming jobs straight from SQL.

Jobs are not passed from dispatcher to pool: dispatching marks them queued and wakes the pool,
whose threads claim from SQL like any other worker, with leases and fencing tokens.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from types import TracebackType
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs
from vidfarm.attempt import RunFunction, run_attempt
from vidfarm.claims import Claim
from vidfarm.config import Settings
from vidfarm.reporting import DirectReporter

log = logging.getLogger(__name__)


class LocalDispatcher:
    """Queues jobs in SQL and wakes the local pool (if any) so an idle thread claims at once."""

    def __init__(
        self, session_factory: sessionmaker[Session], pool: WorkerPool | None = None
    ) -> None:
        self._sessions = session_factory
        self.pool = pool

    def dispatch(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        with self._sessions() as session:
            jobs.mark_queued(session, job_ids)
        if self.pool is not None:
            self.pool.wake()

    def reconcile(self, now: datetime) -> None:
        """Nothing to repair: the pool claims straight from SQL."""

    def start(self) -> None:
        if self.pool is not None:
            self.pool.start()

    def stop(self, timeout: float) -> None:
        if self.pool is not None:
            self.pool.stop(graceful=True, timeout=timeout)

    def requeued(self, job_ids: list[str]) -> None:
        if self.pool is not None:
            self.pool.wake()

    def workers(self) -> list[dict[str, Any]]:
        if self.pool is None:
            return []
        active = [{"job_id": job_id} for job_id in self.pool.running_jobs]
        return [{"name": "embedded pool", "queues": ["local"], "online": True, "active": active}]


class WorkerPool:
    """`settings.worker_concurrency` threads, each claiming and running one job at a time.

    The run function is the worker core: it reports through the reporter it is given
    (complete or fail). The pool only covers for it: an exception it lets escape becomes a
    transient failure, never a dead thread.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        run: RunFunction,
        worker_id_prefix: str | None = None,
        *,
        job_types: Sequence[str] | None = None,
    ) -> None:
        self._sessions = session_factory
        self._settings = settings
        self._run = run
        self._prefix = worker_id_prefix or f"{socket.gethostname()}-{os.getpid()}"
        self._job_types = list(job_types) if job_types is not None else None
        self._stopping = threading.Event()
        self._wakeup = threading.Condition()
        self._generation = 0  # bumped by wake(); an idle thread sleeps only if it is unchanged
        self._threads: list[threading.Thread] = []
        self._active: dict[str, DirectReporter] = {}
        self._active_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("worker pool already started")
        for index in range(self._settings.worker_concurrency):
            worker_id = f"{self._prefix}-{index}"
            thread = threading.Thread(
                target=self._loop, args=(worker_id,), name=f"vidfarm-{worker_id}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def wake(self) -> None:
        """New jobs are queued: idle threads claim now instead of at their next poll."""
        with self._wakeup:
            self._generation += 1
            self._wakeup.notify_all()

    def stop(self, *, graceful: bool = True, timeout: float | None = None) -> bool:
        """Stop claiming. Graceful: interrupt running jobs, hand them back, wait for threads.

        Not graceful: return at once; running attempts are left to their lease, as after a
        crash. Returns True when every thread has ended.
        """
        self._stopping.set()
        self.wake()
        if not graceful:
            return not self.alive
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            thread.join(remaining)
        if self.alive:
            log.warning("worker pool: jobs %s did not stop in time", sorted(self._active))
        return not self.alive

    @property
    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    @property
    def running_jobs(self) -> list[str]:
        with self._active_lock:
            return sorted(self._active)

    def __enter__(self) -> WorkerPool:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop(graceful=True)

    # -- threads -----------------------------------------------------------------------------

    def _loop(self, worker_id: str) -> None:
        while not self._stopping.is_set():
            generation = self._generation
            claim = self._claim(worker_id)
            if claim is not None:
                self._run_claim(claim)
                continue
            with self._wakeup:
                if not self._stopping.is_set() and generation == self._generation:
                    self._wakeup.wait(self._settings.poll_seconds)

    def _claim(self, worker_id: str) -> Claim | None:
        try:
            with self._sessions() as session:
                return jobs.claim_next(
                    session,
                    worker_id=worker_id,
                    lease_seconds=self._settings.lease_seconds,
                    job_types=self._job_types,
                )
        except Exception:
            log.exception("worker %s: claiming failed; retrying after a poll", worker_id)
            return None

    def _run_claim(self, claim: Claim) -> None:
        reporter = DirectReporter(
            self._sessions, claim, self._settings, should_stop=self._stopping.is_set
        )
        with self._active_lock:
            self._active[claim.job_id] = reporter
        try:
            run_attempt(claim, reporter, self._run)
        except Exception:
            # Even SQL is unreachable: the lease will expire and the scheduler retries the job.
            log.exception("job %s: could not report the attempt's end", claim.job_id)
        finally:
            with self._active_lock:
                self._active.pop(claim.job_id, None)

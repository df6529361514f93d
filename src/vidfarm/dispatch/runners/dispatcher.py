"""The runner-manager transport: pending jobs go to HTTP runner managers (Esup-Runner protocol).

`RunnersDispatcher` implements the Dispatcher protocol and ties the parts together, each in
its own module: pool.py (which managers may be asked), submit.py (offer a job
until a manager accepts it; undo lost submissions), news.py (webhook and status
answers: fail, renew the lease, abandon), importer.py (import completed results
exactly once, in the background; the transfer is transfer.py), purge.py (forget
old assignments), assignments.py (the states and SQL they share).

A manager that disappears mid-task stops renewing the lease; when it expires the scheduler
returns the job to the queue (a transient failure, retried up to the job's attempt limit),
and it is offered to the next manager. Its old assignment is abandoned (and stopped, best
effort), and anything it might still send is refused by the fencing token.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs
from vidfarm.config import Settings
from vidfarm.dispatch.runners.assignments import RUNNING, Notification, in_state, stops_owed
from vidfarm.dispatch.runners.importer import Importer
from vidfarm.dispatch.runners.news import TaskNews
from vidfarm.dispatch.runners.pool import ManagerPool
from vidfarm.dispatch.runners.purge import Purger
from vidfarm.dispatch.runners.request import notify_url
from vidfarm.dispatch.runners.submit import Submitter, requeue_lost
from vidfarm.storage import Storage

log = logging.getLogger(__name__)


class RunnersDispatcher:
    """Hands jobs to runner managers and follows them; see the module docstring.

    Not started (`vidfarm process-tasks`): `dispatch` submits and `reconcile` checks and
    imports synchronously, so one pass finishes its imports before returning. Started (inside
    `vidfarm serve`): both only wake a background thread, and imports run in another, so
    neither the scheduler, nor an API request, nor the webhook waits for a manager.
    """

    def __init__(
        self, session_factory: sessionmaker[Session], settings: Settings, storage: Storage
    ) -> None:
        self._sessions = session_factory
        self._settings = settings
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._pass_lock = threading.Lock()
        self._wake = threading.Event()
        self._import_wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        pool = self._pool = ManagerPool(settings)
        self._submitter = Submitter(session_factory, settings, pool, self._stopping)
        self._news = TaskNews(session_factory, settings, pool, self.wake_importer)
        self._importer = Importer(
            session_factory, settings, storage, pool, self.owner, self._stopping
        )
        self._purger = Purger(settings)

    # -- the Dispatcher protocol -----------------------------------------------------------------

    @property
    def started(self) -> bool:
        return bool(self._threads) and not self._stopping.is_set()

    def dispatch(self, job_ids: list[str]) -> None:
        if self.started:
            self._wake.set()
        else:
            self.submit(job_ids)

    def reconcile(self, now: datetime) -> None:
        if self.started:
            self._wake.set()
            self._import_wake.set()
            return
        self.reconcile_now(now)
        self.import_due()

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("runner dispatcher already started")
        if not self._settings.runners_public_url:
            log.warning(
                "VIDFARM_RUNNERS_PUBLIC_URL is not set: runner managers will be told to call "
                "back %s; set it to the URL they can reach",
                notify_url(self._settings),
            )
        self._stopping.clear()
        for name, target in (
            ("vidfarm-runners", self._submit_loop),
            ("vidfarm-runner-import", self._import_loop),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            self._threads.append(thread)
            thread.start()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        self._wake.set()
        self._import_wake.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._threads = []

    # -- the parts, serialised where they must be ------------------------------------------------

    def requeued(self, job_ids: list[str]) -> None:
        """Runner managers never hand jobs back; a queued job is offered at the next pass."""

    def workers(self) -> list[dict[str, Any]]:
        """Runner managers are listed by /api/v1/runners, not as workers."""
        return []

    def submit(self, job_ids: list[str]) -> list[str]:
        """Offer due jobs, in the order given, to the managers; returns the jobs placed."""
        with self._pass_lock:
            return self._submitter.submit(job_ids)

    def reconcile_now(self, now: datetime) -> None:
        """One pass: learn what new managers run, requeue lost submissions, follow running
        tasks, stop abandoned ones, purge."""
        now = jobs.as_utc(now)
        with self._pass_lock, self._sessions() as session:
            self._pool.refresh_task_types(session, now)
            requeue_lost(session, self._settings, now)
            for assignment in in_state(session, RUNNING):
                try:
                    self._news.follow(session, assignment, now)
                except Exception:
                    log.exception("task %s: following it failed", assignment.task_id)
            for assignment in stops_owed(session, now):
                try:
                    self._news.send_owed_stop(session, assignment, now)
                except Exception:
                    log.exception("task %s: asking for its stop failed", assignment.task_id)
            self._purger.purge(session, now)

    def record_news(self, assignment_id: str, news: Notification) -> None:
        """Apply what the manager said about a task (the webhook); see news.py."""
        self._news.record_news(assignment_id, news)

    def import_due(self) -> list[str]:
        """Import every completed task not imported yet (or whose importer died)."""
        return self._importer.import_due()

    def import_one(self, assignment_id: str) -> bool:
        """Import one completed task's result, if this caller wins it; True when imported."""
        return self._importer.import_one(assignment_id)

    def wake_importer(self) -> None:
        """A task just completed (webhook): import it now, in the background."""
        if self.started:
            self._import_wake.set()

    # -- background threads (when started) -------------------------------------------------------

    def _submit_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._settings.poll_seconds)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                with self._sessions() as session:
                    due = jobs.due_pending(session)
                self.submit(due)
                self.reconcile_now(jobs.utcnow())
            except Exception:
                log.exception("runner dispatch pass failed; retrying at the next tick")

    def _import_loop(self) -> None:
        while not self._stopping.is_set():
            self._import_wake.wait(self._settings.poll_seconds)
            self._import_wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.import_due()
            except Exception:
                log.exception("runner import pass failed; retrying at the next tick")

"""The runner-manager transport: pending jobs go to HTTP runner managers (Esup-Runner protocol).

Submission (Pod's rules): each due job is offered to the active managers, lowest priority
value first, equal priorities in turn (least recently used first), with `POST /task/execute`;
a manager answering 503 or failing is skipped (and left alone for `runners_busy_seconds`).
The first that accepts gets the job: it becomes `running` under a long lease held for that
manager (`runner:<name>`), renewed whenever the manager says the task still runs. If none
accepts, the job goes back to `pending`, keeping its rank, and is offered again later.

The end comes by webhook (`POST /runner/notify_task_end/`, api/routes/runner_webhook.py) or,
when that never arrives, from the reconciler asking `GET /task/status/{id}` about tasks quiet
for `runners_check_after_seconds`. A failure is recorded at once; a success is imported in the
background (runner_import.py) by whoever wins a conditional UPDATE on the assignment row, so
the webhook and the reconciler racing import exactly once, across processes.

A manager that disappears mid-task stops renewing the lease; when it expires the scheduler
returns the job to the queue (a transient failure, retried up to the job's attempt limit),
and it is offered to the next manager. Its old assignment is abandoned (and stopped, best
effort), and anything it might still send is refused by the fencing token.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import shutil
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs
from vidfarm.config import Settings
from vidfarm.db import write_transaction
from vidfarm.dispatch import runner_import, runner_registry
from vidfarm.dispatch.runner_client import ManagerClient, ResultNotReady
from vidfarm.dispatch.runner_request import TASK_TYPES, notify_url, source_url, task_request
from vidfarm.errors import (
    JobTimedOut,
    PermanentError,
    StaleAttempt,
    TransientError,
    UnexpectedError,
    VidfarmError,
)
from vidfarm.models import Job, JobStatus, RunnerAssignment, RunnerManager, Video
from vidfarm.storage import Storage

log = logging.getLogger(__name__)

# Assignment states and import states (see models.RunnerAssignment).
SUBMITTING, RUNNING, COMPLETED, FAILED, TIMEOUT, ABANDONED = (
    "submitting",
    "running",
    "completed",
    "failed",
    "timeout",
    "abandoned",
)
IMPORT_NONE, IMPORTING, IMPORTED, IMPORT_FAILED, IMPORT_SKIPPED = (
    "none",
    "importing",
    "imported",
    "failed",
    "skipped",
)
FINISHED_STATES = (COMPLETED, FAILED, TIMEOUT, ABANDONED)
#: What managers report, in Pod's words.
SUCCESS_STATUSES = frozenset({"completed", "warning"})
FAILURE_STATUSES = frozenset({"failed", "timeout", "error"})
ALIVE_STATUSES = frozenset({"running", "pending"})
KNOWN_STATUSES = SUCCESS_STATUSES | FAILURE_STATUSES | ALIVE_STATUSES

IMPORT_LEASE_SECONDS = 600.0
NOT_READY_RETRY_SECONDS = 30.0
STALE_QUEUED_SECONDS = 60.0
PURGE_EVERY_SECONDS = 600.0
_ERROR_CHARS = 1000
_LOG_LINES = 40


class RunnerTaskFailed(PermanentError):
    """The runner manager reported that it could not process the job (bad input, mostly)."""


class NotYetRegistered(TransientError):
    """A webhook for a task whose submission is still being recorded: the manager retries."""


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


_DUMMY_SHA256 = hash_secret("vidfarm: no such assignment")


def secret_matches(secret: str, expected_sha256: str | None) -> bool:
    """Constant-time check of a source URL's secret against its stored hash."""
    return hmac.compare_digest(hash_secret(secret), expected_sha256 or _DUMMY_SHA256) and (
        expected_sha256 is not None
    )


@dataclass(frozen=True)
class Notification:
    """What a manager told us about one task (by webhook or status answer)."""

    status: str
    error_message: str | None = None
    script_output: str | None = None
    progress: float | None = None


def _text(value: object, limit: int = 16_000) -> str | None:
    """A manager's free text, made safe to store (no NUL, which PostgreSQL refuses; bounded)."""
    if value is None:
        return None
    text = str(value).replace("\x00", "")
    return text if len(text) <= limit else text[-limit:]


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
        self._storage = storage
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self._busy_until: dict[str, float] = {}
        self._busy_lock = threading.Lock()
        self._pass_lock = threading.Lock()
        self._wake = threading.Event()
        self._import_wake = threading.Event()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_purge: float | None = None

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

    def wake_importer(self) -> None:
        """A task just completed (webhook): import it now, in the background."""
        if self.started:
            self._import_wake.set()

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

    # -- managers --------------------------------------------------------------------------------

    def _client(self, manager: RunnerManager) -> ManagerClient:
        token = runner_registry.decrypt_token(runner_registry.load_cipher(self._settings), manager)
        return ManagerClient(
            name=manager.name,
            url=manager.url,
            token=token,
            timeout=self._settings.runners_request_timeout,
            allow_private=self._settings.runners_allow_private_urls,
        )

    def _mark_busy(self, manager_id: str) -> None:
        with self._busy_lock:
            self._busy_until[manager_id] = time.monotonic() + self._settings.runners_busy_seconds

    def _available(self, session: Session) -> list[RunnerManager]:
        now = time.monotonic()
        with self._busy_lock:
            busy = {key for key, until in self._busy_until.items() if until > now}
        ordered = runner_registry.dispatch_order(runner_registry.list_managers(session))
        session.rollback()
        return [m for m in ordered if m.id not in busy]

    @property
    def _lease_seconds(self) -> float:
        """Owned this long without news; renewed by each sign of life from the manager."""
        return 2 * self._settings.runners_check_after_seconds

    # -- submission ------------------------------------------------------------------------------

    def submit(self, job_ids: list[str]) -> list[str]:
        """Offer due jobs, in the order given, to the managers; returns the jobs placed."""
        placed: list[str] = []
        with self._pass_lock:
            for job_id in job_ids:
                if self._stopping.is_set():
                    break
                with self._sessions() as session:
                    if not self._available(session):
                        break  # everyone is busy: the rest stay pending, in order
                try:
                    if self._submit_one(job_id):
                        placed.append(job_id)
                except Exception:
                    log.exception("job %s: submission to runner managers failed", job_id)
        return placed

    def _submit_one(self, job_id: str) -> bool:
        with self._sessions() as session:
            job = session.get(Job, job_id, populate_existing=True)
            if job is None or job.status != JobStatus.PENDING.value:
                return False
            video = session.get(Video, job.video_id) if job.video_id else None
            if not jobs.mark_queued(session, [job_id]):
                return False  # another process took it
            secret = secrets.token_urlsafe(32)
            managers = self._available(session)
            if not managers:
                jobs.unqueue(session, job_id)
                return False
            try:
                if video is None:
                    raise RunnerTaskFailed(f"job {job_id} has no video to send to a runner")
                if job.type not in TASK_TYPES:
                    raise RunnerTaskFailed(f"runner managers do not run {job.type!r} jobs")
                assignment = RunnerAssignment(
                    id=uuid.uuid4().hex,
                    job_id=job_id,
                    manager_id=managers[0].id,
                    task_type=TASK_TYPES[job.type],
                    source_secret_sha256=hash_secret(secret),
                    state=SUBMITTING,
                    import_state=IMPORT_NONE,
                    submitted_at=jobs.utcnow(),
                )
                body = task_request(
                    job,
                    video,
                    self._settings,
                    source=source_url(
                        self._settings, assignment.id, secret, video.source_key.rsplit("/")[-1]
                    ),
                )
            except VidfarmError as error:
                self._refuse(session, job_id, error)
                return False
            with write_transaction(session):
                session.add(assignment)
            for manager in managers:
                if self._offer(session, job_id, assignment.id, manager, body):
                    return True
            with write_transaction(session):
                session.execute(
                    delete(RunnerAssignment).where(RunnerAssignment.id == assignment.id)
                )
            jobs.unqueue(session, job_id)
            log.info("job %s: no runner manager accepted it; it stays pending", job_id)
            return False

    def _refuse(self, session: Session, job_id: str, error: VidfarmError) -> None:
        """A job no manager can be asked to run (bad parameters): fail it like a worker would."""
        claim = jobs.claim_job(session, job_id, worker_id="runner:dispatch", lease_seconds=60)
        if claim is not None:
            jobs.fail(
                session,
                job_id,
                claim.fencing_token,
                error,
                [],
                retry_base=self._settings.retry_base_seconds,
                retry_max=self._settings.retry_max_seconds,
            )

    def _offer(
        self,
        session: Session,
        job_id: str,
        assignment_id: str,
        manager: RunnerManager,
        body: dict[str, Any],
    ) -> bool:
        with write_transaction(session):
            session.execute(
                update(RunnerAssignment)
                .where(RunnerAssignment.id == assignment_id)
                .values(manager_id=manager.id)
                .execution_options(synchronize_session=False)
            )
        try:
            with self._client(manager) as client:
                task_id = client.execute(body)
        except VidfarmError as error:
            self._mark_busy(manager.id)
            log.info("job %s: runner manager %s skipped: %s", job_id, manager.name, error)
            return False
        now = jobs.utcnow()
        # Record the task id first: a webhook arriving now finds it (and waits for the claim).
        with write_transaction(session):
            session.execute(
                update(RunnerAssignment)
                .where(RunnerAssignment.id == assignment_id)
                .values(
                    task_id=task_id,
                    state=RUNNING,
                    last_news_at=now,
                    next_check_at=now
                    + timedelta(seconds=self._settings.runners_check_after_seconds),
                )
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(RunnerManager)
                .where(RunnerManager.id == manager.id)
                .values(last_used_at=now)
                .execution_options(synchronize_session=False)
            )
        claim = jobs.claim_job(
            session, job_id, worker_id=f"runner:{manager.name}", lease_seconds=self._lease_seconds
        )
        if claim is None:  # cancelled (or deleted) while we were asking
            with self._client(manager) as client:
                client.stop(task_id)
            self._finish(session, assignment_id, ABANDONED, IMPORT_SKIPPED, "job left the queue")
            return True
        with write_transaction(session):
            session.execute(
                update(RunnerAssignment)
                .where(RunnerAssignment.id == assignment_id)
                .values(fencing_token=claim.fencing_token)
                .execution_options(synchronize_session=False)
            )
        # Show where it runs (the dashboard's "step"). Stale means cancelled this very
        # moment: the reconciler stops the task.
        with contextlib.suppress(StaleAttempt):
            jobs.heartbeat(
                session,
                job_id,
                claim.fencing_token,
                progress=0.0,
                step=f"runner {manager.name}",
                lease_seconds=self._lease_seconds,
            )
        log.info("job %s: runner manager %s took it as task %s", job_id, manager.name, task_id)
        return True

    def _finish(
        self,
        session: Session,
        assignment_id: str,
        state: str,
        import_state: str | None = None,
        error: str | None = None,
    ) -> None:
        values: dict[str, Any] = {"state": state, "finished_at": jobs.utcnow()}
        if import_state is not None:
            values["import_state"] = import_state
        if error is not None:
            values["error"] = error[:_ERROR_CHARS]
        with write_transaction(session):
            session.execute(
                update(RunnerAssignment)
                .where(RunnerAssignment.id == assignment_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )

    # -- news: webhook and status answers --------------------------------------------------------

    def record_news(self, assignment_id: str, news: Notification) -> None:
        """Apply what the manager said about a task; each outcome is recorded once."""
        status = news.status.strip().lower()
        if status not in KNOWN_STATUSES:
            log.warning("assignment %s: unknown status %r ignored", assignment_id, status[:40])
            return
        news = Notification(
            status=status,
            error_message=_text(news.error_message),
            script_output=_text(news.script_output),
            progress=news.progress,
        )
        now = jobs.utcnow()
        with self._sessions() as session:
            assignment = session.get(RunnerAssignment, assignment_id, populate_existing=True)
            if assignment is None:
                return
            if assignment.state == RUNNING and assignment.fencing_token is None:
                raise NotYetRegistered(
                    f"task {assignment.task_id} is still being registered; try again"
                )
            manager = session.get(RunnerManager, assignment.manager_id)
            name = manager.name if manager else assignment.manager_id
            common = {
                "remote_status": status[:16],
                "last_news_at": now,
                "script_output": _text(news.script_output) or assignment.script_output,
            }
            if status in SUCCESS_STATUSES:
                if _advance(session, assignment_id, COMPLETED, {**common, "next_check_at": None}):
                    log.info("task %s (%s): %s", assignment.task_id, name, status)
                    self.wake_importer()
            elif status in FAILURE_STATUSES:
                state = TIMEOUT if status == "timeout" else FAILED
                reason = news.error_message or news.script_output or f"task {status}"
                message = (
                    f"runner manager {name}, task {assignment.task_id}: {status}: "
                    f"{' '.join(str(reason).split())}"
                )[:_ERROR_CHARS]
                values = {**common, "finished_at": now, "error": message}
                if _advance(session, assignment_id, state, values):
                    error: VidfarmError = (
                        JobTimedOut(message) if state == TIMEOUT else RunnerTaskFailed(message)
                    )
                    self._fail_job(session, assignment, error, news.script_output)
            elif status in ALIVE_STATUSES:
                self._still_running(session, assignment, news, name, common)

    def _still_running(
        self,
        session: Session,
        assignment: RunnerAssignment,
        news: Notification,
        name: str,
        common: dict[str, Any],
    ) -> None:
        check_after = timedelta(seconds=self._settings.runners_check_after_seconds)
        values = {**common, "next_check_at": jobs.utcnow() + check_after}
        if not _advance(session, assignment.id, RUNNING, values, from_state=RUNNING):
            return
        if assignment.fencing_token is None:
            return
        try:
            going = jobs.heartbeat(
                session,
                assignment.job_id,
                assignment.fencing_token,
                progress=min(99.0, max(0.0, float(news.progress or 0.0))),
                step=f"runner {name}",
                lease_seconds=self._lease_seconds,
            )
        except StaleAttempt:
            going = False
        if not going:
            self._abandon(session, assignment, "the job moved on (cancelled or retried)")

    def _fail_job(
        self,
        session: Session,
        assignment: RunnerAssignment,
        error: VidfarmError,
        script_output: str | None,
    ) -> None:
        if assignment.fencing_token is None:
            return
        lines = (script_output or "").splitlines()[-_LOG_LINES:]
        try:
            jobs.fail(
                session,
                assignment.job_id,
                assignment.fencing_token,
                error,
                lines,
                retry_base=self._settings.retry_base_seconds,
                retry_max=self._settings.retry_max_seconds,
            )
        except StaleAttempt:
            log.info("job %s: failure of a superseded attempt ignored", assignment.job_id)
        log.warning("job %s: %s", assignment.job_id, error)

    def _abandon(self, session: Session, assignment: RunnerAssignment, reason: str) -> None:
        """The job no longer waits for this task: stop it (best effort) and forget it."""
        if not _advance(
            session,
            assignment.id,
            ABANDONED,
            {"finished_at": jobs.utcnow(), "error": reason, "import_state": IMPORT_SKIPPED},
            from_state=assignment.state,
        ):
            return
        manager = session.get(RunnerManager, assignment.manager_id)
        if manager is not None and assignment.task_id:
            try:
                with self._client(manager) as client:
                    client.stop(assignment.task_id)
            except VidfarmError as error:
                log.info("task %s: could not ask for a stop: %s", assignment.task_id, error)
        log.info("job %s: task %s abandoned: %s", assignment.job_id, assignment.task_id, reason)

    # -- the reconciler --------------------------------------------------------------------------

    def reconcile_now(self, now: datetime) -> None:
        """One pass: requeue lost submissions, follow quiet tasks, drop abandoned ones, purge."""
        now = jobs.as_utc(now)
        with self._pass_lock, self._sessions() as session:
            self._requeue_lost(session, now)
            for assignment in _assignments(session, RUNNING):
                try:
                    self._follow(session, assignment, now)
                except Exception:
                    log.exception("task %s: following it failed", assignment.task_id)
            self._purge(session, now)

    def _requeue_lost(self, session: Session, now: datetime) -> None:
        """Jobs left `queued` by a submission that died midway go back to `pending`."""
        limit = self._submission_limit(session)
        with write_transaction(session):
            session.execute(
                delete(RunnerAssignment).where(
                    RunnerAssignment.state == SUBMITTING,
                    RunnerAssignment.submitted_at < now - timedelta(seconds=limit),
                )
            )
        submitting = select(RunnerAssignment.job_id).where(RunnerAssignment.state == SUBMITTING)
        stale = list(
            session.scalars(
                select(Job.id).where(
                    Job.status == JobStatus.QUEUED.value,
                    or_(
                        Job.queued_at.is_(None),
                        Job.queued_at < now - timedelta(seconds=STALE_QUEUED_SECONDS),
                    ),
                    Job.id.not_in(submitting),
                )
            )
        )
        session.rollback()
        for job_id in stale:
            jobs.unqueue(session, job_id)

    def _submission_limit(self, session: Session) -> float:
        """Longest a submission can take: every manager timing out, plus a margin."""
        managers = len(runner_registry.list_managers(session))
        return (managers + 1) * self._settings.runners_request_timeout + STALE_QUEUED_SECONDS

    def _follow(self, session: Session, assignment: RunnerAssignment, now: datetime) -> None:
        job = session.get(Job, assignment.job_id, populate_existing=True)
        session.rollback()
        if assignment.fencing_token is None:  # its submission is still being recorded...
            age = now - jobs.as_utc(assignment.submitted_at)
            if age > timedelta(seconds=self._submission_limit(session)):  # ...or died midway
                self._abandon(session, assignment, "its submission was never completed")
            return
        if (
            job is None
            or job.status != JobStatus.RUNNING.value
            or job.fencing_token != assignment.fencing_token
        ):
            self._abandon(session, assignment, "the job moved on (cancelled, retried or deleted)")
            return
        due = assignment.next_check_at
        if due is not None and jobs.as_utc(due) > now:
            return
        manager = session.get(RunnerManager, assignment.manager_id)
        if manager is None or not assignment.task_id:
            return
        try:
            with self._client(manager) as client:
                answer = client.status(assignment.task_id)
        except VidfarmError as error:
            # No news is no renewal: if the manager stays silent, the lease expires.
            self._mark_busy(manager.id)
            retry = min(60.0, self._settings.runners_check_after_seconds / 2)
            _advance(
                session,
                assignment.id,
                RUNNING,
                {"next_check_at": now + timedelta(seconds=retry), "error": str(error)[:1000]},
                from_state=RUNNING,
            )
            log.warning("task %s: %s", assignment.task_id, error)
            return
        status = str(answer.get("status") or "").lower()
        if status not in KNOWN_STATUSES:
            log.warning("task %s: unknown status %r from %s", assignment.task_id, status, manager)
            status = "running"
        progress = answer.get("progress")
        self.record_news(
            assignment.id,
            Notification(
                status=status,
                error_message=_text(answer.get("error_message") or answer.get("error")),
                script_output=_text(answer.get("script_output")),
                progress=float(progress) if isinstance(progress, int | float) else None,
            ),
        )

    def _purge(self, session: Session, now: datetime) -> None:
        """Drop finished assignments older than runners_tasks_deleted_after_days (<= 0: never)."""
        days = self._settings.runners_tasks_deleted_after_days
        clock = time.monotonic()
        if days <= 0 or (
            self._last_purge is not None and clock - self._last_purge < PURGE_EVERY_SECONDS
        ):
            return
        self._last_purge = clock
        with write_transaction(session):
            result = cast(
                CursorResult[Any],
                session.execute(
                    delete(RunnerAssignment).where(
                        RunnerAssignment.state.in_(FINISHED_STATES),
                        RunnerAssignment.state != COMPLETED,
                        RunnerAssignment.finished_at < now - timedelta(days=days),
                    )
                ),
            )
            imported = cast(
                CursorResult[Any],
                session.execute(
                    delete(RunnerAssignment).where(
                        RunnerAssignment.state == COMPLETED,
                        RunnerAssignment.import_state.in_(
                            [IMPORTED, IMPORT_FAILED, IMPORT_SKIPPED]
                        ),
                        RunnerAssignment.finished_at < now - timedelta(days=days),
                    )
                ),
            )
        if result.rowcount or imported.rowcount:
            log.info("purged %d old runner tasks", result.rowcount + imported.rowcount)

    # -- importing results -----------------------------------------------------------------------

    def import_due(self) -> list[str]:
        """Import every completed task not imported yet (or whose importer died)."""
        now = jobs.utcnow()
        with self._sessions() as session:
            ids = list(
                session.scalars(
                    select(RunnerAssignment.id)
                    .where(RunnerAssignment.state == COMPLETED, _importable(now))
                    .order_by(RunnerAssignment.last_news_at)
                )
            )
        done = []
        for assignment_id in ids:
            if self._stopping.is_set():
                break
            try:
                if self.import_one(assignment_id):
                    done.append(assignment_id)
            except Exception:
                log.exception("assignment %s: import failed unexpectedly", assignment_id)
        return done

    def _take_import(self, session: Session, assignment_id: str) -> bool:
        """The lock: one conditional UPDATE; whoever changes the row imports."""
        now = jobs.utcnow()
        with write_transaction(session):
            result = cast(
                CursorResult[Any],
                session.execute(
                    update(RunnerAssignment)
                    .where(
                        RunnerAssignment.id == assignment_id,
                        RunnerAssignment.state == COMPLETED,
                        _importable(now),
                    )
                    .values(
                        import_state=IMPORTING,
                        import_owner=self.owner,
                        import_expires_at=now + timedelta(seconds=IMPORT_LEASE_SECONDS),
                    )
                    .execution_options(synchronize_session=False)
                ),
            )
        return result.rowcount == 1

    def import_one(self, assignment_id: str) -> bool:
        """Import one completed task's result, if this caller wins it; True when imported."""
        with self._sessions() as session:
            if not self._take_import(session, assignment_id):
                return False
            assignment = session.get(RunnerAssignment, assignment_id, populate_existing=True)
            assert assignment is not None
            job = session.get(Job, assignment.job_id, populate_existing=True)
            manager = session.get(RunnerManager, assignment.manager_id)
            session.rollback()
            if (
                job is None
                or manager is None
                or assignment.fencing_token is None
                or assignment.task_id is None
                or job.status != JobStatus.RUNNING.value
                or job.fencing_token != assignment.fencing_token
            ):
                self._end_import(session, assignment_id, IMPORT_SKIPPED, "the job moved on")
                return False
            return self._import(session, assignment, job, manager)

    def _import(
        self, session: Session, assignment: RunnerAssignment, job: Job, manager: RunnerManager
    ) -> bool:
        token = cast(int, assignment.fencing_token)
        task_id = cast(str, assignment.task_id)
        prefix = f"videos/{job.video_id}/{job.id}/a{token}"
        folder = self._settings.data_dir / "work" / f"runner-{assignment.id}-{uuid.uuid4().hex[:8]}"

        def renew() -> None:
            with self._sessions() as own:
                _advance(
                    own,
                    assignment.id,
                    COMPLETED,
                    {"import_expires_at": jobs.utcnow() + timedelta(seconds=IMPORT_LEASE_SECONDS)},
                    from_state=COMPLETED,
                )
                jobs.heartbeat(
                    own,
                    job.id,
                    token,
                    progress=99.9,
                    step="importing",
                    lease_seconds=self._lease_seconds,
                )

        try:
            renew()
            with self._client(manager) as client:
                fetched = runner_import.fetch_result(
                    client,
                    task_id,
                    folder / "out",
                    backoff=self._settings.runners_import_backoff_seconds,
                    renew=renew,
                )
            imported = runner_import.describe(folder / "out", fetched, prefix)
            runner_import.publish(self._storage, folder / "out", prefix)
        except ResultNotReady as error:
            self._end_import(session, assignment.id, IMPORT_NONE, str(error), retry=True)
            return False
        except StaleAttempt:
            self._end_import(session, assignment.id, IMPORT_SKIPPED, "the job moved on")
            return False
        except Exception as error:
            wrapped = error if isinstance(error, VidfarmError) else UnexpectedError(error)
            log.warning("job %s: import of task %s refused: %s", job.id, task_id, wrapped)
            self._end_import(session, assignment.id, IMPORT_FAILED, str(wrapped))
            self._fail_job(session, assignment, wrapped, None)
            return False
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        result = {
            **imported.result,
            "runner": {"manager": manager.name, "task_id": task_id, "files": len(fetched)},
        }
        try:
            jobs.complete(session, job.id, token, result, imported.outputs)
        except StaleAttempt:
            self._storage.delete_prefix(prefix)  # a newer attempt owns the job
            self._end_import(session, assignment.id, IMPORT_SKIPPED, "the job moved on")
            return False
        except Exception:
            self._storage.delete_prefix(prefix)
            self._end_import(session, assignment.id, IMPORT_NONE, "completion failed", retry=True)
            raise
        self._end_import(session, assignment.id, IMPORTED, None)
        log.info("job %s: imported %d files from %s", job.id, len(fetched), manager.name)
        return True

    def _end_import(
        self,
        session: Session,
        assignment_id: str,
        import_state: str,
        error: str | None,
        *,
        retry: bool = False,
    ) -> None:
        now = jobs.utcnow()
        values: dict[str, Any] = {
            "import_state": import_state,
            "import_owner": None,
            "import_expires_at": None,
            "error": error[:_ERROR_CHARS] if error else None,
        }
        if retry:
            values["next_check_at"] = now + timedelta(seconds=NOT_READY_RETRY_SECONDS)
        else:
            values["finished_at"] = now
        with write_transaction(session):
            session.execute(
                update(RunnerAssignment)
                .where(
                    RunnerAssignment.id == assignment_id,
                    RunnerAssignment.import_owner == self.owner,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )


# --- SQL helpers --------------------------------------------------------------------------------


def _importable(now: datetime) -> Any:
    """Not imported yet (and not waiting before a retry), or held by an importer that died."""
    return or_(
        and_(
            RunnerAssignment.import_state == IMPORT_NONE,
            or_(RunnerAssignment.next_check_at.is_(None), RunnerAssignment.next_check_at <= now),
        ),
        and_(
            RunnerAssignment.import_state == IMPORTING,
            RunnerAssignment.import_expires_at < now,
        ),
    )


def _advance(
    session: Session,
    assignment_id: str,
    state: str,
    values: dict[str, Any],
    *,
    from_state: str = RUNNING,
) -> bool:
    """Move an assignment from `from_state` to `state` (a conditional UPDATE): True if it did."""
    with write_transaction(session):
        result = cast(
            CursorResult[Any],
            session.execute(
                update(RunnerAssignment)
                .where(RunnerAssignment.id == assignment_id, RunnerAssignment.state == from_state)
                .values(state=state, **values)
                .execution_options(synchronize_session=False)
            ),
        )
    return result.rowcount == 1


def _assignments(session: Session, state: str) -> list[RunnerAssignment]:
    found = list(
        session.scalars(
            select(RunnerAssignment)
            .where(RunnerAssignment.state == state)
            .order_by(RunnerAssignment.submitted_at)
            .execution_options(populate_existing=True)
        )
    )
    session.rollback()
    return found


def find_assignments(
    session: Session, task_id: str
) -> list[tuple[RunnerAssignment, RunnerManager]]:
    """Assignments a webhook's task id may name (task ids are the managers' own)."""
    rows = session.execute(
        select(RunnerAssignment, RunnerManager)
        .join(RunnerManager, RunnerManager.id == RunnerAssignment.manager_id)
        .where(RunnerAssignment.task_id == task_id)
        .order_by(RunnerAssignment.submitted_at.desc())
        .execution_options(populate_existing=True)
    ).all()
    return [(row[0], row[1]) for row in rows]


def submitting_managers(session: Session) -> list[RunnerManager]:
    """Managers with a submission in flight (their webhook may come before its task id)."""
    return list(
        session.scalars(
            select(RunnerManager)
            .join(RunnerAssignment, RunnerAssignment.manager_id == RunnerManager.id)
            .where(
                or_(
                    RunnerAssignment.state == SUBMITTING,
                    and_(
                        RunnerAssignment.state == RUNNING,
                        RunnerAssignment.fencing_token.is_(None),
                    ),
                )
            )
            .distinct()
        )
    )

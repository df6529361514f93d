"""News about a task on a runner manager, by webhook or by asking, applied exactly once.

The end comes by webhook (`POST /runner/notify_task_end/`, api/routes/runner_webhook.py) or,
when that never arrives, from the reconciler asking `GET /task/status/{id}` about each running
task every `runners_check_after_seconds` (`TaskNews.follow`; the answer carries progress too).
Both end in `record_news`: a failure fails the job at once, a success marks the task for the
importer, and "still running" renews the job's lease. A manager that stays silent renews
nothing, so its lease expires and the scheduler retries the job elsewhere; a task whose job
moved on is abandoned, and its stop is sent until the manager takes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs
from vidfarm.config import Settings
from vidfarm.dispatch.runners.assignments import (
    ABANDONED,
    ALIVE_STATUSES,
    COMPLETED,
    ERROR_CHARS,
    FAILED,
    FAILURE_STATUSES,
    IMPORT_SKIPPED,
    KNOWN_STATUSES,
    RUNNING,
    SUCCESS_STATUSES,
    TIMEOUT,
    Notification,
    NotYetRegistered,
    RunnerTaskFailed,
    advance,
    lease_seconds,
    text,
)
from vidfarm.dispatch.runners.pool import ManagerPool
from vidfarm.dispatch.runners.submit import submission_limit
from vidfarm.errors import JobTimedOut, StaleAttempt, VidfarmError
from vidfarm.models import Job, JobStatus, RunnerAssignment, RunnerManager

log = logging.getLogger(__name__)

_LOG_LINES = 40


class TaskNews:
    """Applies what managers say about their tasks; `on_completed` wakes the importer."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        pool: ManagerPool,
        on_completed: Callable[[], None],
    ) -> None:
        self._sessions = session_factory
        self._settings = settings
        self._pool = pool
        self._on_completed = on_completed

    def record_news(self, assignment_id: str, news: Notification) -> None:
        """Apply what the manager said about a task; each outcome is recorded once."""
        status = news.status.strip().lower()
        if status not in KNOWN_STATUSES:
            log.warning("assignment %s: unknown status %r ignored", assignment_id, status[:40])
            return
        news = Notification(
            status=status,
            error_message=text(news.error_message),
            script_output=text(news.script_output),
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
                "script_output": text(news.script_output) or assignment.script_output,
            }
            if status in SUCCESS_STATUSES:
                if advance(session, assignment_id, COMPLETED, {**common, "next_check_at": None}):
                    log.info("task %s (%s): %s", assignment.task_id, name, status)
                    self._on_completed()
            elif status in FAILURE_STATUSES:
                state = TIMEOUT if status == "timeout" else FAILED
                reason = news.error_message or news.script_output or f"task {status}"
                message = (
                    f"runner manager {name}, task {assignment.task_id}: {status}: "
                    f"{' '.join(str(reason).split())}"
                )[:ERROR_CHARS]
                values = {**common, "finished_at": now, "error": message}
                if advance(session, assignment_id, state, values):
                    error: VidfarmError = (
                        JobTimedOut(message) if state == TIMEOUT else RunnerTaskFailed(message)
                    )
                    fail_job(session, self._settings, assignment, error, news.script_output)
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
        if not advance(session, assignment.id, RUNNING, values, from_state=RUNNING):
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
                lease_seconds=lease_seconds(self._settings),
            )
        except StaleAttempt:
            going = False
        if not going:
            self.abandon(session, assignment, "the job moved on (cancelled or retried)")

    def abandon(self, session: Session, assignment: RunnerAssignment, reason: str) -> None:
        """The job no longer waits for this task: stop it and forget it.

        Only a running task is abandoned: one whose news (completed, failed) arrived
        meanwhile keeps its own final state. (The state is not read from `assignment`: after
        a rollback the ORM reloads it, and a final state read back would be overwritten.)
        The stop is owed until the manager takes it (`next_check_at` set): a manager down
        now gets it again when it is back (`send_owed_stop`), rather than encoding to the end.
        """
        now = jobs.utcnow()
        if not advance(
            session,
            assignment.id,
            ABANDONED,
            {
                "finished_at": now,
                "error": reason,
                "import_state": IMPORT_SKIPPED,
                "next_check_at": now if assignment.task_id else None,
            },
            from_state=RUNNING,
        ):
            return
        log.info("job %s: task %s abandoned: %s", assignment.job_id, assignment.task_id, reason)
        if assignment.task_id:
            self.send_owed_stop(session, assignment, now)

    def send_owed_stop(self, session: Session, assignment: RunnerAssignment, now: datetime) -> None:
        """Ask the manager to stop an abandoned task; if it does not answer, ask again later."""
        manager = session.get(RunnerManager, assignment.manager_id)
        settled = manager is None or not assignment.task_id
        if not settled and manager is not None and assignment.task_id:
            try:
                with self._pool.client(manager) as client:
                    settled = client.stop(assignment.task_id)
            except VidfarmError as error:
                log.info("task %s: could not ask for a stop: %s", assignment.task_id, error)
        retry = now + timedelta(seconds=self._settings.runners_check_after_seconds)
        advance(
            session,
            assignment.id,
            ABANDONED,
            {"next_check_at": None if settled else retry},
            from_state=ABANDONED,
        )
        if not settled:
            log.info("task %s: stop not taken yet; asking again later", assignment.task_id)

    def follow(self, session: Session, assignment: RunnerAssignment, now: datetime) -> None:
        """The reconciler's look at one running task: abandon it, or ask its manager if due."""
        job = session.get(Job, assignment.job_id, populate_existing=True)
        session.rollback()
        if assignment.fencing_token is None:  # its submission is still being recorded...
            age = now - jobs.as_utc(assignment.submitted_at)
            limit = submission_limit(session, self._settings)
            if age > timedelta(seconds=limit):  # ...or died midway
                self.abandon(session, assignment, "its submission was never completed")
            return
        if (
            job is None
            or job.status != JobStatus.RUNNING.value
            or job.fencing_token != assignment.fencing_token
        ):
            self.abandon(session, assignment, "the job moved on (cancelled, retried or deleted)")
            return
        due = assignment.next_check_at
        if due is not None and jobs.as_utc(due) > now:
            return
        manager = session.get(RunnerManager, assignment.manager_id)
        if manager is None or not assignment.task_id:
            return
        try:
            with self._pool.client(manager) as client:
                answer = client.status(assignment.task_id)
        except VidfarmError as error:
            # No news is no renewal: if the manager stays silent, the lease expires.
            self._pool.mark_busy(manager.id)
            retry = min(60.0, self._settings.runners_check_after_seconds / 2)
            advance(
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
                error_message=text(answer.get("error_message") or answer.get("error")),
                script_output=text(answer.get("script_output")),
                progress=float(progress) if isinstance(progress, int | float) else None,
            ),
        )


def fail_job(
    session: Session,
    settings: Settings,
    assignment: RunnerAssignment,
    error: VidfarmError,
    script_output: str | None,
) -> None:
    """Record a task's failure on its job (retried or failed by the job core's rules)."""
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
            retry_base=settings.retry_base_seconds,
            retry_max=settings.retry_max_seconds,
        )
    except StaleAttempt:
        log.info("job %s: failure of a superseded attempt ignored", assignment.job_id)
    log.warning("job %s: %s", assignment.job_id, error)

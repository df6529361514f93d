"""Submission: offer each due job to the runner managers until one accepts it (Pod's rules).

Managers are tried lowest priority value first, equal priorities in turn (least recently used
first), with `POST /task/execute`; one answering 503 or failing is skipped and left alone for a
while (pool.py). The first that accepts gets the job: it becomes `running` under a long
lease held for that manager (`runner:<name>`). If none accepts, the job goes back to `pending`,
keeping its rank. A submission that died midway is undone by `requeue_lost`.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs
from vidfarm.config import Settings
from vidfarm.db import write_transaction
from vidfarm.dispatch.runners import registry as runner_registry
from vidfarm.dispatch.runners.assignments import (
    ABANDONED,
    ERROR_CHARS,
    IMPORT_NONE,
    IMPORT_SKIPPED,
    REFUSED,
    RUNNING,
    SUBMITTING,
    RunnerTaskFailed,
    hash_secret,
    lease_seconds,
)
from vidfarm.dispatch.runners.client import TaskRejected
from vidfarm.dispatch.runners.pool import ManagerPool
from vidfarm.dispatch.runners.request import (
    inputs_url,
    runner_task_type,
    source_url,
    task_request,
)
from vidfarm.errors import InvalidParameters, StaleAttempt, VidfarmError
from vidfarm.models import Job, JobStatus, RunnerAssignment, RunnerManager, Video

log = logging.getLogger(__name__)

STALE_QUEUED_SECONDS = 60.0


class Submitter:
    """Places pending jobs on managers; the caller serialises passes (one at a time)."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        pool: ManagerPool,
        stopping: threading.Event,
    ) -> None:
        self._sessions = session_factory
        self._settings = settings
        self._pool = pool
        self._stopping = stopping

    def submit(self, job_ids: list[str]) -> list[str]:
        """Offer due jobs, in the order given, to the managers; returns the jobs placed."""
        placed: list[str] = []
        waiting: dict[str, str | None] = {}  # task type -> why no manager takes it (per pass)
        for job_id in job_ids:
            if self._stopping.is_set():
                break
            with self._sessions() as session:
                if not self._pool.available(session):
                    break  # everyone is busy: the rest stay pending, in order
            try:
                if self._submit_one(job_id, waiting):
                    placed.append(job_id)
            except Exception:
                log.exception("job %s: submission to runner managers failed", job_id)
        return placed

    def _submit_one(self, job_id: str, waiting: dict[str, str | None]) -> bool:
        with self._sessions() as session:
            job = session.get(Job, job_id, populate_existing=True)
            if job is None or job.status != JobStatus.PENDING.value:
                return False
            video = session.get(Video, job.video_id) if job.video_id else None
            try:
                task_type = runner_task_type(job)
            except InvalidParameters as error:
                if jobs.mark_queued(session, [job_id]):
                    self._refuse(session, job_id, RunnerTaskFailed(str(error)))
                return False
            managers = [
                m for m in self._pool.available(session) if runner_registry.takes(m, task_type)
            ]
            if not managers:  # untouched: it keeps its place, no write at every pass
                if task_type not in waiting:
                    waiting[task_type] = _nobody_takes(session, task_type)
                why = waiting[task_type]
                if why is not None and job.error != why:
                    jobs.note_waiting(session, [job_id], why, cause="waiting")
                return False
            if not jobs.mark_queued(session, [job_id]):
                return False  # another process took it
            secret = secrets.token_urlsafe(32)
            try:
                if video is None:
                    raise RunnerTaskFailed(f"job {job_id} has no video to send to a runner")
                assignment = RunnerAssignment(
                    id=uuid.uuid4().hex,
                    job_id=job_id,
                    manager_id=managers[0].id,
                    task_type=task_type,
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
                    inputs=inputs_url(self._settings, assignment.id, secret),
                )
            except VidfarmError as error:
                self._refuse(session, job_id, error)
                return False
            with write_transaction(session):
                session.add(assignment)
            refusals: list[TaskRejected] = []
            for manager in managers:
                if self._offer(session, job_id, assignment.id, manager, body, refusals):
                    return True
            if refusals:
                self._refused(session, job_id, assignment.id, refusals[-1])
                return False
            with write_transaction(session):
                session.execute(
                    delete(RunnerAssignment).where(RunnerAssignment.id == assignment.id)
                )
            jobs.unqueue(session, job_id)
            log.info("job %s: no runner manager accepted it; it stays pending", job_id)
            return False

    def _refused(
        self, session: Session, job_id: str, assignment_id: str, refusal: TaskRejected
    ) -> None:
        """No manager took the job and one refused it: say why on the job, and count.

        A refusal (Esup-Runner's 422 for a source URL on an IP address, say) repeats itself
        until someone fixes the configuration; the job is offered again after a growing pause
        (the job core's backoff), and after `runners_max_refusals` refusals it fails for good
        instead of being offered forever with a new secret each time.
        """
        _finish(session, assignment_id, REFUSED, IMPORT_SKIPPED, str(refusal))
        count = session.scalar(
            select(func.count())
            .select_from(RunnerAssignment)
            .where(RunnerAssignment.job_id == job_id, RunnerAssignment.state == REFUSED)
        )
        session.rollback()
        limit = self._settings.runners_max_refusals
        if (count or 0) >= limit:
            log.warning("job %s: refused by runner managers %d times: failing it", job_id, limit)
            self._refuse(session, job_id, RunnerTaskFailed(f"{refusal} (refused {limit} times)"))
            return
        # Offered again after a growing pause: time for an operator to read the reason.
        delay = jobs.backoff_delay(
            count or 1, self._settings.retry_base_seconds, self._settings.retry_max_seconds
        )
        jobs.unqueue(
            session, job_id, why=f"{refusal} (refused {count} of {limit} times)", delay=delay
        )
        log.warning("job %s: %s (refusal %d of %d)", job_id, refusal, count, limit)

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
        refusals: list[TaskRejected],
    ) -> bool:
        with write_transaction(session):
            session.execute(
                update(RunnerAssignment)
                .where(RunnerAssignment.id == assignment_id)
                .values(manager_id=manager.id)
                .execution_options(synchronize_session=False)
            )
        try:
            with self._pool.client(manager) as client:
                task_id = client.execute(body)
        except TaskRejected as error:
            refusals.append(error)  # about this task, not the manager: others still get asked
            log.info("job %s: runner manager %s refused it: %s", job_id, manager.name, error)
            return False
        except VidfarmError as error:
            self._pool.mark_busy(manager.id)
            log.info("job %s: runner manager %s skipped: %s", job_id, manager.name, error)
            return False
        now = jobs.utcnow()
        lease = lease_seconds(self._settings)
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
            session, job_id, worker_id=f"runner:{manager.name}", lease_seconds=lease
        )
        if claim is None:  # cancelled (or deleted) while we were asking
            with self._pool.client(manager) as client:
                client.stop(task_id)
            _finish(session, assignment_id, ABANDONED, IMPORT_SKIPPED, "job left the queue")
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
                lease_seconds=lease,
            )
        log.info("job %s: runner manager %s took it as task %s", job_id, manager.name, task_id)
        return True


def _nobody_takes(session: Session, task_type: str) -> str | None:
    """Why a job waits when no manager may be offered it: None when they are only busy."""
    managers = runner_registry.list_managers(session)
    session.rollback()
    if any(m.active and runner_registry.takes(m, task_type) for m in managers):
        return None
    return (
        f"no active runner manager announces {task_type!r} tasks (a `vidfarm runner` does; "
        "a foreign Esup-Runner does not): it waits for one"
    )


def _finish(
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
        values["error"] = error[:ERROR_CHARS]
    with write_transaction(session):
        session.execute(
            update(RunnerAssignment)
            .where(RunnerAssignment.id == assignment_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )


def submission_limit(session: Session, settings: Settings) -> float:
    """Longest a submission can take: every manager timing out, plus a margin."""
    managers = len(runner_registry.list_managers(session))
    return (managers + 1) * settings.runners_request_timeout + STALE_QUEUED_SECONDS


def requeue_lost(session: Session, settings: Settings, now: datetime) -> None:
    """Jobs left `queued` by a submission that died midway go back to `pending`."""
    limit = submission_limit(session, settings)
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

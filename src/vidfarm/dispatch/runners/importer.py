"""Importing completed tasks' results, exactly once, in the background.

Whoever wins a conditional UPDATE on the assignment row (`import_state` none -> importing,
with an owner and a lease) imports; the webhook and the reconciler racing, or two processes,
therefore import once. An importer that dies leaves a lease that expires, and the next pass
takes over. The transfer itself (fetch, verify, publish) is transfer.py; this module
decides when to run it and records the outcome on the assignment and the job.
"""

from __future__ import annotations

import logging
import shutil
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs
from vidfarm.config import Settings
from vidfarm.db import write_transaction
from vidfarm.dispatch.runners import transfer
from vidfarm.dispatch.runners.assignments import (
    COMPLETED,
    ERROR_CHARS,
    IMPORT_FAILED,
    IMPORT_NONE,
    IMPORT_SKIPPED,
    IMPORTED,
    IMPORTING,
    advance,
    lease_seconds,
)
from vidfarm.dispatch.runners.client import ResultNotReady
from vidfarm.dispatch.runners.news import fail_job
from vidfarm.dispatch.runners.pool import ManagerPool
from vidfarm.errors import StaleAttempt, UnexpectedError, VidfarmError
from vidfarm.kinds import kind_for
from vidfarm.models import Job, JobStatus, RunnerAssignment, RunnerManager
from vidfarm.storage import Storage

log = logging.getLogger(__name__)

IMPORT_LEASE_SECONDS = 600.0
NOT_READY_RETRY_SECONDS = 30.0


class Importer:
    """Imports completed tasks; `owner` names this process in the import lock."""

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        settings: Settings,
        storage: Storage,
        pool: ManagerPool,
        owner: str,
        stopping: threading.Event,
    ) -> None:
        self._sessions = session_factory
        self._settings = settings
        self._storage = storage
        self._pool = pool
        self._owner = owner
        self._stopping = stopping

    def import_due(self) -> list[str]:
        """Import every completed task not imported yet (or whose importer died)."""
        now = jobs.utcnow()
        with self._sessions() as session:
            ids = list(
                session.scalars(
                    select(RunnerAssignment.id)
                    .where(RunnerAssignment.state == COMPLETED, importable(now))
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
                        importable(now),
                    )
                    .values(
                        import_state=IMPORTING,
                        import_owner=self._owner,
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
                advance(
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
                    lease_seconds=lease_seconds(self._settings),
                )

        try:
            renew()
            with self._pool.client(manager) as client:
                fetched = transfer.fetch_result(
                    client,
                    task_id,
                    folder / "out",
                    backoff=self._settings.runners_import_backoff_seconds,
                    renew=renew,
                )
            imported = transfer.describe(folder / "out", fetched, prefix)
            transfer.publish(self._storage, folder / "out", prefix)
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
            fail_job(session, self._settings, assignment, wrapped, None)
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
        self._delete_consumed(job)
        return True

    def _delete_consumed(self, job: Job) -> None:
        """What the completed job used up (a stitch's chunks), now that nobody needs it."""
        for gone in kind_for(job.type).consumed(dict(job.params or {})):
            try:
                self._storage.delete_prefix(gone)
            except VidfarmError as error:  # the job is done; a leftover is only space
                log.warning("job %s: could not delete %s: %s", job.id, gone, error)

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
            "error": error[:ERROR_CHARS] if error else None,
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
                    RunnerAssignment.import_owner == self._owner,
                )
                .values(**values)
                .execution_options(synchronize_session=False)
            )


def importable(now: datetime) -> Any:
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

"""Forget old tasks: after `runner_task_retention_days`, a finished task, its video, jobs and
every published file are deleted (Pod's RM_TASKS_DELETED_AFTER_DAYS, on the runner's side)."""

from __future__ import annotations

import contextlib
import logging
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from vidfarm.db import write_transaction
from vidfarm.errors import NotFound
from vidfarm.models import RunnerTask
from vidfarm.runner_service import tasks
from vidfarm.storage import Storage
from vidfarm.videos import delete_video

log = logging.getLogger(__name__)


def purge_old_tasks(
    session: Session, storage: Storage, retention_days: float, now: datetime | None = None
) -> list[str]:
    """Delete tasks finished more than `retention_days` ago (<= 0: never); returns their ids.

    A task whose notification is still being retried is kept until that ends.
    """
    if retention_days <= 0:
        return []
    cutoff = (now or tasks.utcnow()) - timedelta(days=retention_days)
    old = session.execute(
        select(RunnerTask.id, RunnerTask.video_id).where(
            RunnerTask.status.not_in(tasks.ACTIVE),
            RunnerTask.finished_at < cutoff,
            RunnerTask.notify_state != "pending",
        )
    ).all()
    session.rollback()
    for task_id, video_id in old:
        if video_id:
            with contextlib.suppress(NotFound):  # already gone
                delete_video(session, storage, video_id)
        with write_transaction(session):
            session.execute(delete(RunnerTask).where(RunnerTask.id == task_id))
        log.info("task %s: deleted after %g days", task_id, retention_days)
    return [task_id for task_id, _ in old]

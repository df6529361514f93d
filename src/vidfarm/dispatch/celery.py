"""The Celery transport, control-plane side: publish job ids, repair what the broker lost.

The broker is not trusted to keep anything (Redis may be flushed or restarted without
persistence): a job SQL says is queued, for longer than `republish_after_seconds`, while its
queue holds fewer messages than SQL has queued jobs, is published again. A duplicate message
costs one refused claim (409) and nothing else, so republishing errs on the safe side.

The broker's queues are checked at start and every few seconds (dispatch/queues.py): what
stops publishing is said by `/readyz` and written on each waiting job, not only in a log.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs
from vidfarm.config import Settings
from vidfarm.dispatch.celery_app import (
    TASK_DELIVER_XAPI,
    TASK_RUN_JOB,
    broker_priority,
    make_celery,
)
from vidfarm.dispatch.queues import check_queues, own_queues
from vidfarm.kinds import KINDS
from vidfarm.models import Job, JobStatus, Video
from vidfarm.xapi.outbox import due_now

log = logging.getLogger(__name__)

#: Seconds a soft time limit leaves for what follows the media work (hashing, publishing).
_SLACK_SECONDS = 300.0
#: After the soft limit, the hard limit (prefork pools kill the task there).
_HARD_AFTER_SOFT_SECONDS = 120
_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 1}
#: How often the queues are checked against the broker (and a problem found gone).
_CHECK_SECONDS = 10.0
#: `error_class` of a queued job that waits for the broker; cleared once it is published.
WAITING_FOR_BROKER = "WaitingForBroker"


class CeleryDispatcher:
    def __init__(
        self, sessions: sessionmaker[Session], settings: Settings, app: Celery | None = None
    ) -> None:
        self._sessions = sessions
        self._settings = settings
        self.app = app or make_celery(settings)
        self._queues = {
            "encoding": settings.queue_encoding,
            "transcription": settings.queue_transcription,
        }
        self._xapi_not_before = 0.0
        self._republish_not_before = 0.0
        self._check_not_before = 0.0
        self._without_priority: frozenset[str] = frozenset()
        #: Why publishing to a queue cannot work now (queue name -> one line).
        self._refused: dict[str, str] = {}
        self._broker_problem: str | None = "not checked yet"
        self._warnings: list[str] = []

    # -- Dispatcher protocol ---------------------------------------------------------------------

    def dispatch(self, job_ids: list[str]) -> None:
        if not job_ids:
            return
        with self._sessions() as session:
            moved = jobs.mark_queued(session, job_ids)
        self.publish(moved)

    def reconcile(self, now: datetime) -> None:
        if time.monotonic() >= self._check_not_before:
            self.check_broker()
        self._republish_lost(now)
        self._schedule_xapi(now)

    def start(self) -> None:
        """Check the queues now; publishing connects on demand (and survives broker restarts)."""
        self.check_broker()

    def stop(self, timeout: float) -> None:
        self.app.close()

    def requeued(self, job_ids: list[str]) -> None:
        self.publish(job_ids)

    # -- publishing ------------------------------------------------------------------------------

    def publish(self, job_ids: list[str]) -> int:
        """Publish one message per queued job; returns how many the broker accepted."""
        if not job_ids:
            return 0
        with self._sessions() as session:
            rows = session.execute(
                select(Job.id, Job.type, Job.priority, Job.error_class, Video.duration)
                .outerjoin(Video, Video.id == Job.video_id)
                .where(Job.id.in_(job_ids), Job.status == JobStatus.QUEUED.value)
            ).all()
        sent: list[str] = []
        waiting: dict[str, list[str]] = {}  # reason -> jobs
        for index, (job_id, job_type, priority, _, duration) in enumerate(rows):
            queue = self._queue_for(job_type)
            if queue in self._refused:
                waiting.setdefault(f"waiting: {self._refused[queue]}", []).append(job_id)
                continue
            soft = self.soft_time_limit(duration)
            try:
                self.app.send_task(
                    TASK_RUN_JOB,
                    args=[job_id],
                    queue=queue,
                    priority=broker_priority(priority, self._settings.broker_url),
                    soft_time_limit=soft,
                    time_limit=soft + _HARD_AFTER_SOFT_SECONDS,
                    retry=True,
                    retry_policy=_PUBLISH_RETRY,
                )
            except Exception as error:
                # The job stays queued in SQL: the reconciler publishes it once the broker is back.
                reason = f"cannot publish to {queue}: {_one_line(error)}"
                log.error("job %s: %s", job_id, reason)
                self._broker_problem = reason
                waiting[f"waiting: {reason}"] = [row[0] for row in rows[index:]]
                break
            sent.append(job_id)
            self._broker_problem = None
        noted = [row[0] for row in rows if row[3] == WAITING_FOR_BROKER]
        self._note_waiting(waiting, [job_id for job_id in sent if job_id in noted])
        return len(sent)

    def _note_waiting(self, waiting: dict[str, list[str]], published: list[str]) -> None:
        """Say on each job why it waits (API, CLI, dashboard); clear it once it is published."""
        if not waiting and not published:
            return
        with self._sessions() as session:
            for reason, ids in waiting.items():
                jobs.note_waiting(session, ids, reason, cause=WAITING_FOR_BROKER)
            if published:
                jobs.clear_waiting(session, published, cause=WAITING_FOR_BROKER)

    # -- the broker's queues ---------------------------------------------------------------------

    def check_broker(self) -> None:
        """Declare vidfarm's queues as workers will; remember what is refused, and why."""
        self._check_not_before = time.monotonic() + _CHECK_SECONDS
        queues = own_queues(self._settings)
        try:
            check = check_queues(self._settings.broker_url, queues)
        except Exception as error:
            self._broker_problem = f"cannot reach the broker: {_one_line(error)}"
            log.warning("%s", self._broker_problem)
            return
        if check.warnings != self._warnings or check.refused != self._refused:
            for line in [*check.warnings, *check.refused.values()]:
                log.error("%s", line)
        self._broker_problem = None
        self._refused = check.refused
        self._warnings = check.warnings
        if frozenset(check.without_priority) != self._without_priority:
            # Publishing must stop declaring those queues (RabbitMQ would refuse the message).
            self._without_priority = frozenset(check.without_priority)
            self.app.close()
            self.app = make_celery(self._settings, self._without_priority)

    def broker_health(self) -> tuple[str, list[str]]:
        """`ok` or why jobs cannot be published now; and the warnings (for `/readyz`)."""
        problem = self._broker_problem or "; ".join(self._refused.values())
        return problem or "ok", list(self._warnings)

    def _queue_for(self, job_type: str) -> str:
        """The broker queue of the job's kind (its family's configured name)."""
        kind = KINDS.get(job_type)
        return self._queues[kind.queue if kind else "encoding"]

    def soft_time_limit(self, duration: float | None) -> int:
        """The encoder's own limit (max(min, factor * duration)) plus time to publish."""
        media = self._settings.time_limit_factor * (duration or 0.0)
        return int(max(self._settings.time_limit_min_seconds, media) + _SLACK_SECONDS)

    # -- repairing -------------------------------------------------------------------------------

    def _republish_lost(self, now: datetime) -> None:
        # Asking the broker costs a connection per queue: a few times per republish period.
        period = self._settings.republish_after_seconds
        if time.monotonic() < self._republish_not_before:
            return
        self._republish_not_before = time.monotonic() + min(period / 2, 10.0)
        cutoff = now - timedelta(seconds=period)
        with self._sessions() as session:
            per_type = jobs.queued_counts(session, cutoff)
        for job_type, (total, stale) in per_type.items():
            if not stale:
                continue
            queue = self._queue_for(job_type)
            waiting = self.message_count(queue)
            if waiting is None or waiting >= total:
                continue  # broker down, or every queued job may still have its message
            log.warning(
                "queue %s holds %d messages for %d queued jobs: publishing %d again",
                queue,
                waiting,
                total,
                len(stale),
            )
            if self.publish(stale):
                with self._sessions() as session:
                    jobs.mark_republished(session, stale)

    def message_count(self, queue: str) -> int | None:
        """Messages waiting in `queue`; None when the broker cannot be asked."""
        try:
            with self.app.connection_for_read() as connection:
                connection.ensure_connection(max_retries=1)
                channel: Any = connection.default_channel
                declared = channel.queue_declare(queue=queue, passive=True)
                return int(declared.message_count)
        except Exception as error:
            if "NOT_FOUND" in str(error) or "404" in str(error):
                return 0  # never declared: nothing was ever published there
            log.warning("cannot count messages in %s: %s", queue, _one_line(error))
            return None

    def _schedule_xapi(self, now: datetime) -> None:
        """Keep one delivery task waiting on the xapi queue while statements are due."""
        if not self._settings.xapi_enabled or time.monotonic() < self._xapi_not_before:
            return
        with self._sessions() as session:
            due, paused = due_now(session, now)
        self._xapi_not_before = time.monotonic() + self._settings.poll_seconds
        if not due:
            return
        if paused:
            self._xapi_not_before = time.monotonic() + self._settings.xapi_pause_seconds
        if self._settings.queue_xapi in self._refused:
            return  # said by /readyz and the log; statements wait in SQL
        if self.message_count(self._settings.queue_xapi) != 0:
            return
        try:
            self.app.send_task(
                TASK_DELIVER_XAPI,
                queue=self._settings.queue_xapi,
                retry=True,
                retry_policy=_PUBLISH_RETRY,
            )
        except Exception as error:
            log.error("cannot publish xAPI delivery: %s", _one_line(error))

    # -- observing -------------------------------------------------------------------------------

    def workers(self, timeout: float = 1.0) -> list[dict[str, Any]]:
        """This farm's workers answering a broadcast, with the job ids they are running.

        A broadcast reaches every worker on the broker (virtual host): on one shared with
        Esup-Pod or another farm, those answer too. A worker that names its queues and none
        is ours is left out; one that did not say (a late answer) is kept."""
        inspect = self.app.control.inspect(timeout=timeout)
        try:
            active = inspect.active() or {}
            queues = inspect.active_queues() or {}
        except Exception as error:
            log.warning("cannot inspect Celery workers: %s", _one_line(error))
            return []
        ours = set(own_queues(self._settings))
        found = []
        for name in sorted(set(active) | set(queues)):
            if name in queues and not ours & {q["name"] for q in queues[name]}:
                continue  # another application's worker on the same broker
            running = [
                {"job_id": (task.get("args") or [None])[0], "task": task.get("name")}
                for task in active.get(name, [])
            ]
            found.append(
                {
                    "name": name,
                    "queues": sorted(q["name"] for q in queues.get(name, [])),
                    "online": True,
                    "active": running,
                }
            )
        return found


def _one_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

"""The Celery application: broker settings for long video tasks, and the two tasks.

Workers start with `vidfarm worker` or plainly with
`celery -A vidfarm.dispatch.celery_app worker -Q vidfarm.encoding`. Messages carry a job id only;
the job's state, attempts and retries live in SQL (ARCHITECTURE.md, invariant 1), so Celery's own
retry machinery is never used: a failed attempt is recorded through the worker API and the
control plane re-dispatches it after its backoff.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task, signals
from celery.exceptions import SoftTimeLimitExceeded
from kombu import Exchange, Queue

from vidfarm.attempt import run_attempt
from vidfarm.claims import Claim, Reporter
from vidfarm.config import Settings, load_settings
from vidfarm.dispatch.celery_progress import ProgressPublisher
from vidfarm.dispatch.queues import MAX_PRIORITY, QUEUE_ARGUMENTS, is_redis
from vidfarm.errors import JobTimedOut, VidfarmError
from vidfarm.remote import ControlPlane, HttpOutbox, HttpReporter
from vidfarm.scratch import ATTEMPT_FOLDERS, sweep
from vidfarm.storage import Storage, make_storage
from vidfarm.worker import run_job
from vidfarm.xapi.delivery import XapiDelivery

log = logging.getLogger(__name__)

TASK_RUN_JOB = "vidfarm.run_job"
TASK_DELIVER_XAPI = "vidfarm.deliver_xapi"
#: One xAPI task delivers batches for at most this long, then leaves the queue to others.
XAPI_TASK_SECONDS = 60.0

#: Set when this worker process is asked to stop (SIGTERM, Ctrl-C): running jobs hand back.
STOPPING = threading.Event()


def queues(settings: Settings) -> list[str]:
    return [settings.queue_encoding, settings.queue_transcription, settings.queue_xapi]


def broker_priority(job_priority: int, broker_url: str) -> int:
    """Jobs: higher runs first. AMQP agrees; Redis (kombu) serves the lowest number first."""
    clamped = max(0, min(MAX_PRIORITY, job_priority))
    return MAX_PRIORITY - clamped if is_redis(broker_url) else clamped


def _queue(name: str, as_it_is: bool) -> Queue:
    """A queue declared with priorities, or one that exists already and is never declared.

    An undeclared queue is reached through the default exchange (always bound by name), as a
    queue made by someone else may have no binding to vidfarm's exchange.
    """
    if as_it_is:
        return Queue(name, Exchange(""), routing_key=name, no_declare=True)
    return Queue(name, routing_key=name, queue_arguments=QUEUE_ARGUMENTS)


def make_celery(settings: Settings, without_priority: Collection[str] = ()) -> Celery:
    """The app; `without_priority`: queues found existing without it (dispatch/queues.py)."""
    app = Celery("vidfarm", broker=settings.broker_url or "memory://", set_as_current=False)
    app.conf.update(
        # A long encode is acknowledged only when it ended: a lost worker's job is redelivered.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        # SQL is the result. A result backend, when set, only carries the live PROGRESS
        # state and the end state for Celery's tools (Flower, AsyncResult).
        result_backend=settings.result_backend or None,
        task_ignore_result=not settings.result_backend,
        # Events for Flower and `celery inspect active|reserved`.
        worker_send_task_events=True,
        task_send_sent_event=True,
        # Video work runs in ffmpeg subprocesses: threads are enough, and a thread can be told
        # to stop so SIGTERM hands the job back instead of waiting hours for it to finish.
        worker_pool="threads",
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.queue_encoding,
        task_queues=[_queue(name, name in without_priority) for name in queues(settings)],
        # A message that is not vidfarm's is put back or moved aside, never discarded.
        worker_consumer="vidfarm.dispatch.foreign:Consumer",
        vidfarm_own_queues=queues(settings),
        vidfarm_dead_queue=settings.queue_dead,
        task_default_priority=None,
        broker_transport_options={
            # Redis redelivers an unacknowledged message after this: longer than any job.
            "visibility_timeout": settings.broker_visibility_timeout,
            "priority_steps": list(range(MAX_PRIORITY + 1)),
            "sep": ":",
            "queue_order_strategy": "priority",
        },
    )
    _register_tasks(app)
    return app


# --- the worker side ------------------------------------------------------------------------


@dataclass
class WorkerContext:
    """What a worker process holds: settings, storage and the control plane's API."""

    settings: Settings
    storage: Storage
    plane: ControlPlane
    lease_seconds: float

    @classmethod
    def connect(cls, settings: Settings) -> WorkerContext:
        plane = ControlPlane(settings.api_url, settings.worker_token.get_secret_value())
        plane.stopping = STOPPING.is_set  # a SIGTERM does not wait an outage out
        info = plane.ping()
        storage = make_storage(settings)
        sweep(settings.data_dir / "work", ATTEMPT_FOLDERS)  # left by a worker killed here
        return cls(settings, storage, plane, float(info["lease_seconds"]))

    def run(self, claim: Claim, reporter: Reporter) -> None:
        try:
            run_job(claim, reporter, settings=self.settings, storage=self.storage)
        except SoftTimeLimitExceeded:
            raise JobTimedOut("the job ran past its soft time limit") from None


_context: WorkerContext | None = None
_context_lock = threading.Lock()


def worker_context() -> WorkerContext:
    global _context
    with _context_lock:
        if _context is None:
            _context = WorkerContext.connect(load_settings())
        return _context


def _register_tasks(app: Celery) -> None:
    @app.task(name=TASK_RUN_JOB, bind=True)
    def run_job_task(task: Task[Any, Any], job_id: str) -> str:
        """Claim the job over HTTP (a duplicate message finds it taken) and run it."""
        context = worker_context()
        worker_id = f"{task.request.hostname}/{threading.get_ident()}"
        claim = context.plane.claim(job_id, worker_id)
        if claim is None:
            return "skipped"
        soft_limit = (task.request.timelimit or (None, None))[1]
        reporter = HttpReporter(
            context.plane,
            claim,
            lease_seconds=context.lease_seconds,
            time_limit=soft_limit,
            should_stop=STOPPING.is_set,
            listener=ProgressPublisher(
                app,
                task_id=task.request.id or job_id,
                hostname=task.request.hostname,
                job_id=job_id,
            ),
        )
        try:
            run_attempt(claim, reporter, context.run)
        except VidfarmError as error:
            # The API stayed unreachable for the final report: the lease will expire and the
            # control plane retries the job; the message is done either way.
            log.error("job %s: %s", job_id, error)
        return "released" if reporter.released else "done"

    @app.task(name=TASK_DELIVER_XAPI, ignore_result=True)
    def deliver_xapi_task() -> int:
        """Deliver due statements in batches for up to a minute (leased through the API)."""
        context = worker_context()
        delivery = XapiDelivery(None, context.settings, outbox=HttpOutbox(context.plane))
        delivered, started = 0, time.monotonic()
        try:
            while not STOPPING.is_set() and time.monotonic() - started < XAPI_TASK_SECONDS:
                report = delivery.deliver_once()
                delivered += report.delivered
                if report.paused:
                    log.error("xAPI delivery paused: %s", report.reason)
                    break
                if report.claimed < context.settings.xapi_batch_size:
                    break
        finally:
            delivery.client.close()
        return delivered


@signals.worker_shutting_down.connect
def _on_shutting_down(**_: object) -> None:
    STOPPING.set()


@signals.worker_init.connect
def _check_api_at_start(**_: object) -> None:
    """Say in one line, at start, that the API is unreachable (Pod crashed obscurely there)."""
    try:
        worker_context()
    except VidfarmError as error:
        log.critical("vidfarm worker cannot start: %s", error)
        raise SystemExit(2) from None


def _module_app() -> Celery:
    """The app `celery -A vidfarm.dispatch.celery_app worker` finds (settings from env).

    It is also Celery's default app: Flower reads task results with a bare
    `AsyncResult(task_id)`, which finds the result backend through the default app only."""
    module_app = make_celery(load_settings())
    module_app.set_default()
    return module_app


app = _module_app()

"""The Celery side: Pod's exact task names on Pod's queues, with the delivery Pod lacks.

Pod publishes with `.delay()` from bare Celery apps (JSON, protocol 2, no result backend).
These tasks take the same arguments. Unlike Pod's workers they acknowledge a message only once
its work is done (a killed worker's task is delivered again, not lost), take one message at a
time, and give Redis a visibility timeout longer than the longest task, so a slow job is not
delivered twice. A task whose work fails for good is logged in one line with its error class
and counted; Pod keeps the video's state, as with its own workers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task
from celery.exceptions import Retry
from prometheus_client import Counter, Histogram

from vidfarm.config import Settings
from vidfarm.errors import VidfarmError
from vidfarm.jobs import backoff_delay
from vidfarm.pod_worker.callbacks import PodApi
from vidfarm.pod_worker.encoding import encode_for_pod
from vidfarm.pod_worker.settings import PodSettings
from vidfarm.pod_worker.studio import studio_for_pod
from vidfarm.pod_worker.transcription import engine_settings, transcribe_for_pod
from vidfarm.pod_worker.xapi import LrsUnavailable, batcher_for

log = logging.getLogger(__name__)

ENCODING_TASK = "pod.video_encode_transcript.encoding_tasks.start_encoding_task"
STUDIO_TASK = "pod.video_encode_transcript.encoding_tasks.start_studio_task"
TRANSCRIPTION_TASK = "pod.video_encode_transcript.transcripting_tasks.start_transcripting_task"
XAPI_TASK = "pod.xapi.xapi_tasks.send_xapi_statement_task"
#: Pod's queue -> the tasks vidfarm runs from it.
QUEUES = {
    "encoding": (ENCODING_TASK, STUDIO_TASK),
    "transcripting": (TRANSCRIPTION_TASK,),
    "xapi": (XAPI_TASK,),
}
#: Longer than the longest task: Redis hands an unacknowledged message out again after it.
VISIBILITY_TIMEOUT = 12 * 3600

TASKS = Counter(
    "vidfarm_pod_tasks_total", "Pod tasks run, by task and outcome", ["task", "outcome"]
)
SECONDS = Histogram("vidfarm_pod_task_seconds", "Time Pod tasks took", ["task"])


@dataclass(frozen=True)
class Context:
    """What the tasks need; set once per worker process by `configure`."""

    pod: PodSettings
    settings: Settings
    api: PodApi
    xapi_batch_size: int = 50
    xapi_requeue_seconds: float = 30.0


_context: Context | None = None


def configure(context: Context) -> None:
    global _context
    _context = context


def context() -> Context:
    if _context is None:
        raise RuntimeError("the Pod worker was not configured (vidfarm pod-worker does it)")
    return _context


def make_pod_app(broker_url: str, visibility_timeout: float = VISIBILITY_TIMEOUT) -> Celery:
    """One app per Pod broker (Pod puts xapi on its own database).

    `visibility_timeout`: how long Redis keeps a taken message from others; a worker killed
    mid-task has its message handed out again after it (it must outlast the longest task)."""
    app = Celery("vidfarm-pod", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={
            "visibility_timeout": visibility_timeout,
            # How often taken-but-unacknowledged messages past their timeout are handed out
            # again: one cheap Redis query (kombu's default is about every 100 s).
            "unacked_restore_interval": max(1.0, min(10.0, visibility_timeout / 6)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        worker_pool="threads",
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_routes={
            ENCODING_TASK: {"queue": "encoding"},
            STUDIO_TASK: {"queue": "encoding"},
            TRANSCRIPTION_TASK: {"queue": "transcripting"},
            XAPI_TASK: {"queue": "xapi"},
        },
    )

    @app.task(name=ENCODING_TASK, bind=True)
    def start_encoding_task(
        _task: Any,
        video_id: int,
        video_path: str,
        cut_start: int = 0,
        cut_end: int = 0,
        json_dressing: dict[str, Any] | None = None,
        dressing_input: str = "",
    ) -> None:
        ctx = context()
        _run(
            "encoding",
            f"video {video_id}",
            lambda: encode_for_pod(
                ctx.pod,
                ctx.settings,
                ctx.api,
                video_id=int(video_id),
                video_path=str(video_path),
                cut_start=int(cut_start or 0),
                cut_end=int(cut_end or 0),
                json_dressing=json_dressing,
                dressing_input=str(dressing_input or ""),
            ),
        )

    @app.task(name=STUDIO_TASK, bind=True)
    def start_studio_task(
        _task: Any,
        recording_id: int,
        video_output: str,
        videos: list[dict[str, Any]],
        subtime: str = "",
        presenter: str = "mid",
    ) -> None:
        ctx = context()
        _run(
            "studio",
            f"recording {recording_id}",
            lambda: studio_for_pod(
                ctx.pod,
                ctx.settings,
                ctx.api,
                recording_id=int(recording_id),
                video_output=str(video_output),
                videos=videos,
                subtime=str(subtime or ""),
                presenter=str(presenter or "mid"),
            ),
        )

    @app.task(name=TRANSCRIPTION_TASK, bind=True)
    def start_transcripting_task(
        _task: Any, video_id: int, mp3filepath: str, duration: int, lang: str
    ) -> None:
        ctx = context()
        _run(
            "transcription",
            f"video {video_id}",
            lambda: transcribe_for_pod(
                ctx.pod,
                engine_settings(ctx.settings, ctx.pod),
                ctx.api,
                video_id=int(video_id),
                mp3_path=str(mp3filepath),
                language=str(lang),
            ),
        )

    @app.task(name=XAPI_TASK, bind=True, max_retries=None)
    def send_xapi_statement_task(task: Task[Any, None], statement: dict[str, Any]) -> None:
        ctx = context()

        def deliver() -> None:
            try:
                batcher_for(ctx.pod, ctx.xapi_batch_size).send(statement)
            except LrsUnavailable as error:  # the broker keeps it, not this worker
                delay = backoff_delay(task.request.retries + 1, ctx.xapi_requeue_seconds, 600.0)
                log.warning("xapi statement back to the broker for %.0f s: %s", delay, error)
                raise task.retry(countdown=delay, exc=error) from None

        _run("xapi", f"statement {statement.get('id', '?')}", deliver)

    return app


def _run(task: str, what: str, work: Callable[[], object]) -> None:
    """Run one task's work: one log line and a metric whatever happens, never a traceback."""
    started = time.monotonic()
    try:
        work()
    except Retry:
        TASKS.labels(task, "retried").inc()
        raise
    except VidfarmError as error:
        TASKS.labels(task, "failed").inc()
        log.error("%s %s failed (%s): %s", task, what, error.error_class, error)
    except Exception:
        TASKS.labels(task, "crashed").inc()
        log.exception("%s %s crashed", task, what)
    else:
        TASKS.labels(task, "done").inc()
    finally:
        SECONDS.labels(task).observe(time.monotonic() - started)

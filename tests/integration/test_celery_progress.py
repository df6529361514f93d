"""A Celery task's live progress is readable where Celery's tools look (real Redis, DB 10).

Flower's task API and `AsyncResult` read the result backend; Flower's live view reads the
event stream. The publisher writes both; these tests read both back from Redis.
"""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from celery.result import AsyncResult

from services import require_service
from vidfarm.config import Settings
from vidfarm.dispatch.celery_app import make_celery
from vidfarm.dispatch.celery_progress import EVENT, PROGRESS, ProgressPublisher
from waiting import wait_until

REDIS = "redis://127.0.0.1:6379/10"  # this module's database on the machine's Redis


@pytest.fixture
def app(tmp_path: Path) -> Any:
    require_service("Redis", "127.0.0.1", 6379)
    settings = Settings(data_dir=tmp_path, broker_url=REDIS, result_backend=REDIS)
    celery = make_celery(settings)
    yield celery
    celery.close()


def test_progress_is_the_tasks_state_in_the_result_backend(app: Any) -> None:
    task_id = f"progress-{uuid.uuid4()}"
    publish = ProgressPublisher(app, task_id=task_id, hostname="test@host", job_id="job-1")
    publish(42.04, "encoding")
    publish(43.0, "encoding")  # within the interval: not published

    result = AsyncResult(task_id, app=app)
    assert result.state == PROGRESS
    assert result.info == {"percent": 42.0, "step": "encoding", "job_id": "job-1"}
    app.backend.forget(task_id)


def test_progress_goes_out_as_a_task_event(app: Any) -> None:
    task_id = f"progress-{uuid.uuid4()}"
    seen: list[dict[str, Any]] = []
    with app.connection_for_read() as connection:
        receiver = app.events.Receiver(
            connection, handlers={EVENT: seen.append}, node_id=f"test-{uuid.uuid4().hex[:6]}"
        )
        consuming = threading.Thread(
            target=lambda: receiver.capture(limit=None, timeout=10, wakeup=False),
            daemon=True,
        )
        consuming.start()
        publish = ProgressPublisher(
            app, task_id=task_id, hostname="test@host", job_id="job-2", min_interval=0.0
        )

        def received() -> bool:  # published again until the receiver has bound its queue
            publish(7.0, "transcribing")
            return any(event.get("uuid") == task_id for event in seen)

        wait_until(received, 10, "the task-progress event", interval=0.2)
        receiver.should_stop = True
        consuming.join(timeout=15)
    event = next(e for e in seen if e.get("uuid") == task_id)
    assert (event["percent"], event["step"], event["job_id"]) == (7.0, "transcribing", "job-2")
    app.backend.forget(task_id)


def test_no_result_backend_means_no_stored_state(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, broker_url="memory://")
    app = make_celery(settings)
    assert app.conf.task_ignore_result is True
    # Publishing without a backend neither raises nor stores (events go to the memory broker).
    ProgressPublisher(app, task_id="t", hostname=None, job_id="j")(1.0, "step")


def test_the_module_app_is_celerys_default_app() -> None:
    """Flower reads results with a bare AsyncResult(task_id): the default app's backend."""
    import celery._state

    from vidfarm.dispatch import celery_app

    assert celery._state.default_app is celery_app.app

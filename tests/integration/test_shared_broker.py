"""Sharing a broker with Esup-Pod: vidfarm never takes a message it does not own, and a queue
that already exists with other arguments is used as it is or refused in one visible line.

Pod's task is published as Pod does (a bare Celery app with only `task_routes`, `.delay()`),
with the exact name and arguments of /work/shared/reference/pod-celery.md. Redis runs on a
database of this file's own; vidfarm's queues get the usual per-test prefix.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery
from kombu import Connection, Queue
from test_celery import VIDFARM, CeleryFarm, completed, make_farm

from fixtures_db import fresh_postgres_database
from fixtures_media import MakeMedia, video_args
from services import require_service

POD_DB = 13  # this file's Redis database (test_celery.py uses 11)
REDIS_URL = f"redis://127.0.0.1:6379/{POD_DB}"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672//"
POD_TASK = "pod.video_encode_transcript.encoding_tasks.start_encoding_task"
POD_ARGS = [42, "/srv/pod/media/videos/0123abcd/lecture.mp4", 0, 0]
POD_KWARGS: dict[str, Any] = {"json_dressing": None, "dressing_input": ""}


def pod_app(broker: str) -> tuple[Celery, Any]:
    """Pod's `encoding_tasks` module: a bare app routing its tasks to the queue `encoding`."""
    app = Celery("encoding_tasks", broker=broker, set_as_current=False)
    app.conf.task_routes = {"pod.video_encode_transcript.encoding_tasks.*": {"queue": "encoding"}}

    @app.task(name=POD_TASK, bind=True)
    def start_encoding_task(  # type: ignore[no-untyped-def]
        self, video_id, video_path, cut_start, cut_end, json_dressing=None, dressing_input=""
    ) -> None:
        raise AssertionError("Pod's task never runs in these tests")

    return app, start_encoding_task


def redis_messages(queue: str) -> list[dict[str, Any]]:
    """The Celery messages waiting in a Redis list: task name, args, kwargs and headers."""
    found = []
    for raw in redis.Redis(host="127.0.0.1", port=6379, db=POD_DB).lrange(queue, 0, -1):
        envelope = json.loads(raw)
        args, kwargs, _ = json.loads(base64.b64decode(envelope["body"]))
        headers = envelope["headers"]
        found.append({"task": headers.get("task"), "args": args, "kwargs": kwargs, **headers})
    return found


def rabbitmq_messages(queue: str) -> list[dict[str, Any]]:
    """Take the messages of a RabbitMQ queue (the test's own) and return them decoded."""
    found = []
    with Connection(RABBITMQ_URL) as connection:
        channel: Any = connection.channel()
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            args, kwargs, _ = json.loads(message.body)
            headers = message.headers or {}
            found.append({"task": headers.get("task"), "args": args, "kwargs": kwargs, **headers})
    return found


def wait_until(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := condition():
            return value
        time.sleep(0.2)
    raise AssertionError(f"never happened: {what}")


def readyz(farm: CeleryFarm) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{farm.url}/readyz", timeout=10)
    return response.status_code, dict(response.json())


@pytest.fixture
def postgres() -> Iterator[str]:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    with fresh_postgres_database("vidfarm_shared") as url:
        yield url


@pytest.fixture(scope="module")
def clip(make_media: MakeMedia) -> Path:
    return make_media("shared-clip.mp4", *video_args(size="320x240", duration=2))


@pytest.fixture
def redis_broker() -> Iterator[str]:
    require_service("Redis", "127.0.0.1", 6379)
    client = redis.Redis(host="127.0.0.1", port=6379, db=POD_DB)
    client.delete("encoding", "_kombu.binding.encoding")
    yield REDIS_URL
    client.delete("encoding", "_kombu.binding.encoding")


@pytest.fixture
def shared_farm(
    tmp_path: Path, postgres: str, request: pytest.FixtureRequest
) -> Iterator[CeleryFarm]:
    """A farm on Redis (POD_DB) or RabbitMQ; its RabbitMQ queues are deleted afterwards."""
    kind = getattr(request, "param", "redis")
    if kind == "redis":
        require_service("Redis", "127.0.0.1", 6379)
        broker = REDIS_URL
    else:
        require_service("RabbitMQ", "127.0.0.1", 5672)
        broker = RABBITMQ_URL
    farm = make_farm(tmp_path, postgres, broker, "ultrafast")
    prefix = farm.env["VIDFARM_QUEUE_ENCODING"].rsplit("-", 1)[0]
    farm.env["VIDFARM_QUEUE_DEAD"] = f"{prefix}-dead"
    yield farm
    farm.stop()
    names = [farm.env[f"VIDFARM_QUEUE_{q}"] for q in ("ENCODING", "TRANSCRIPTION", "XAPI", "DEAD")]
    if kind == "redis":
        client = redis.Redis(host="127.0.0.1", port=6379, db=POD_DB)
        client.delete(*names, *(f"{n}:{p}" for n in names for p in range(1, 10)))
    else:
        with Connection(RABBITMQ_URL) as connection:
            for name in names:
                channel: Any = connection.channel()
                channel.queue_delete(name)
                channel.close()


# --- Pod's tasks stay Pod's ----------------------------------------------------------------------


def test_pods_task_on_pods_queue_is_still_there_for_pod(
    shared_farm: CeleryFarm, redis_broker: str, clip: Path
) -> None:
    farm = shared_farm
    farm.start()
    _, start_encoding_task = pod_app(redis_broker)
    start_encoding_task.delay(*POD_ARGS, **POD_KWARGS)
    # The command: `--queues encoding` names vidfarm's encoding queue, not Pod's.
    farm.start_worker("site", "encoding")
    own = farm.env["VIDFARM_QUEUE_ENCODING"]
    assert f"Redis 127.0.0.1:6379 database {POD_DB}, queues {own} " in farm.log("site")
    assert farm.wait_for(farm.upload(clip), completed)
    (left,) = redis_messages("encoding")
    assert left["task"] == POD_TASK
    assert (left["args"], left["kwargs"]) == (POD_ARGS, POD_KWARGS)


def test_a_worker_given_pods_queue_puts_the_task_back_and_stops_consuming_it(
    shared_farm: CeleryFarm, redis_broker: str, clip: Path
) -> None:
    farm = shared_farm
    farm.start()
    own = farm.env["VIDFARM_QUEUE_ENCODING"]
    log = (farm.data_dir / "worker-plain.log").open("ab")
    # The plain Celery command can be pointed at any queue: Pod's `encoding` here.
    plain = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "vidfarm.dispatch.celery_app", "worker",
         "-Q", f"encoding,{own}", "-c", "1", "-n", "plain@%h", "--without-mingle"],
        env=farm.worker_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    farm.workers["plain"] = plain
    wait_until(  # the plain command sets up no log handler: ask the worker itself
        lambda: farm.api("GET", "/api/v1/workers").json()["workers"],
        "the plain Celery worker answers",
    )
    _, start_encoding_task = pod_app(redis_broker)
    start_encoding_task.delay(*POD_ARGS, **POD_KWARGS)
    said = f"queue encoding carries task '{POD_TASK}' of another application"
    wait_until(lambda: said in farm.log("plain"), "the worker says it put Pod's task back")
    start_encoding_task.delay(*POD_ARGS, **POD_KWARGS)
    assert farm.wait_for(farm.upload(clip), completed)  # its own queue still works
    left = redis_messages("encoding")
    assert [(m["task"], m["args"], m["kwargs"]) for m in left] == [
        (POD_TASK, POD_ARGS, POD_KWARGS)
    ] * 2
    text = farm.log("plain")
    assert text.count(said) == 1 and "discarded" not in text
    assert plain.poll() is None


@pytest.mark.parametrize("shared_farm", ["redis", "rabbitmq"], indirect=True)
def test_a_foreign_task_on_vidfarms_queue_is_moved_to_the_dead_queue(
    shared_farm: CeleryFarm, clip: Path
) -> None:
    farm = shared_farm
    broker = farm.env["VIDFARM_BROKER_URL"]
    own, dead = farm.env["VIDFARM_QUEUE_ENCODING"], farm.env["VIDFARM_QUEUE_DEAD"]
    farm.start()
    farm.start_worker("own")
    _, start_encoding_task = pod_app(broker)
    on_own_queue = Queue(own, routing_key=own, queue_arguments={"x-max-priority": 10})
    for _ in range(2):
        start_encoding_task.apply_async(POD_ARGS, POD_KWARGS, queue=on_own_queue)
    said = f"queue {own} is vidfarm's but carried task '{POD_TASK}': moved to queue {dead}"
    wait_until(lambda: farm.log("own").count("handled as before") == 1, "both moved aside")
    assert farm.log("own").count(said) == 1 and "discarded" not in farm.log("own")
    assert farm.wait_for(farm.upload(clip), completed)  # the worker goes on with its jobs
    if broker.startswith("redis"):
        moved, left = redis_messages(dead), redis_messages(own)
    else:
        moved, left = rabbitmq_messages(dead), rabbitmq_messages(own)
    assert [(m["task"], m["args"], m["kwargs"]) for m in moved] == [
        (POD_TASK, POD_ARGS, POD_KWARGS)
    ] * 2
    assert all(m["x-vidfarm-found-on"] == own for m in moved)
    assert left == []


def test_a_worker_refuses_a_queue_that_is_not_vidfarms(shared_farm: CeleryFarm) -> None:
    done = subprocess.run(
        [*VIDFARM, "worker", "--queues", "encoding,transcripting"],
        env=shared_farm.worker_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "--queues transcripting: not one of vidfarm's queues" in done.stderr


# --- queues that already exist -------------------------------------------------------------------


def declare(name: str, **arguments: Any) -> None:
    """Another application's declaration of one of vidfarm's queues."""
    with Connection(RABBITMQ_URL) as connection:
        channel: Any = connection.channel()
        channel.queue_declare(
            queue=name, durable=True, auto_delete=False, arguments=arguments or None
        )
        channel.close()


@pytest.mark.parametrize("shared_farm", ["rabbitmq"], indirect=True)
def test_a_queue_declared_without_priority_is_used_as_it_is(
    shared_farm: CeleryFarm, clip: Path
) -> None:
    farm = shared_farm
    own = farm.env["VIDFARM_QUEUE_ENCODING"]
    declare(own)
    farm.start()
    status, ready = readyz(farm)
    assert status == 200 and ready["checks"]["broker"] == "ok"
    assert any(own in w and "x-max-priority" in w for w in ready["warnings"]), ready
    farm.start_worker("as-is", "encoding")
    assert f"warning: queue {own} already exists with another x-max-priority" in farm.log("as-is")
    job = farm.wait_for(farm.upload(clip, affiliation="staff"), completed, timeout=60)
    assert job["error"] is None
    assert "PRECONDITION_FAILED" not in farm.log("as-is")


@pytest.mark.parametrize("shared_farm", ["rabbitmq"], indirect=True)
def test_a_queue_declared_with_other_arguments_is_refused_visibly(
    shared_farm: CeleryFarm, clip: Path
) -> None:
    farm = shared_farm
    own = farm.env["VIDFARM_QUEUE_ENCODING"]
    declare(own, **{"x-message-ttl": 600000})
    farm.start()
    job_id = farm.upload(clip)
    job = farm.wait_for(job_id, lambda job: job["error_class"] == "WaitingForBroker", timeout=20)
    assert job["status"] == "queued"
    assert f"queue {own} already exists on the broker with another 'x-message-ttl'" in job["error"]
    status, ready = readyz(farm)
    assert status == 503 and "x-message-ttl" in ready["checks"]["broker"], ready
    assert "VIDFARM_QUEUE_ENCODING" in ready["checks"]["broker"]
    refused = subprocess.run(
        [*VIDFARM, "worker", "--queues", "encoding"],
        env=farm.worker_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0, refused.stderr
    assert f"queue {own} already exists" in refused.stderr and "Traceback" not in refused.stderr
    # The remedy works without restarting the control plane: the queue is checked again.
    with Connection(RABBITMQ_URL) as connection:
        channel: Any = connection.channel()
        channel.queue_delete(own)
    wait_until(lambda: readyz(farm)[0] == 200, "/readyz is ready once the queue is gone")
    farm.start_worker("after", "encoding")
    done = farm.wait_for(job_id, completed, timeout=90)
    assert done["error"] is None and done["error_class"] is None


# --- workers of other applications ---------------------------------------------------------------

FOREIGN_WORKER = """\
import sys
from celery import Celery
app = Celery("pod", broker=sys.argv[1], set_as_current=False)
app.worker_main(["worker", f"--queues={sys.argv[2]}", "--hostname=foreign@%h", "--pool=solo",
                 "--without-mingle", "--without-gossip", "--loglevel=warning"])
"""


@pytest.mark.parametrize("shared_farm", ["rabbitmq"], indirect=True)
def test_the_workers_list_names_this_farms_workers_only(shared_farm: CeleryFarm) -> None:
    """A broadcast on a shared virtual host reaches Pod's workers too: they are not ours."""
    farm = shared_farm
    foreign_queue = f"pod-foreign-{farm.env['VIDFARM_QUEUE_ENCODING'].rsplit('-', 1)[-1]}"
    foreign = subprocess.Popen(
        [sys.executable, "-c", FOREIGN_WORKER, RABBITMQ_URL, foreign_queue],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        farm.start()
        farm.start_worker("ours", "encoding")
        probe = Celery("probe", broker=RABBITMQ_URL, set_as_current=False)

        def answering() -> set[str]:
            replies = probe.control.ping(timeout=1) or []
            return {name.split("@")[0] for reply in replies for name in reply}

        wait_until(lambda: "foreign" in answering(), "the foreign worker answers broadcasts")

        def listed() -> list[str]:
            return [w["name"] for w in farm.api("GET", "/api/v1/workers").json()["workers"]]

        names = wait_until(
            lambda: (found := listed()) and any(n.startswith("ours@") for n in found) and found,
            "our worker listed",
        )
        assert [name.split("@")[0] for name in names] == ["ours"], names
    finally:
        foreign.terminate()
        foreign.wait(30)
        with Connection(RABBITMQ_URL) as connection:
            channel: Any = connection.channel()
            channel.queue_delete(foreign_queue)
            channel.close()

"""Celery transport with real services: Redis (and RabbitMQ), PostgreSQL, `vidfarm worker`.

The control plane is a `vidfarm serve` process on PostgreSQL; workers are `vidfarm worker`
processes that are given a database URL nobody answers on, so every job they finish proves
they work through the API alone. Lost workers, a flushed broker and stale reports must lose
no job and complete none twice.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
import redis

from fixtures_db import fresh_postgres_database
from fixtures_media import MakeMedia, video_args
from processes import encoders_in, held_at_work
from services import free_port, require_service
from vidfarm.auth import Role, create_token
from vidfarm.db import make_engine, make_session_factory, migrate
from waiting import wait_until

VIDFARM = [sys.executable, "-m", "vidfarm"]
REDIS_DB = 11  # the tests' own database on the machine's Redis; flushed by one test
NOBODY_DATABASE = "postgresql://nobody@127.0.0.1:1/no_database_for_workers"
PROFILE = (
    'preset = "{preset}"\nkeyframe_interval = 2\nsegment_duration = 4\n'
    '[[renditions]]\nheight = 240\nmin_video_bitrate = "300k"\nvideo_bitrate = "400k"\n'
    'max_video_bitrate = "500k"\naudio_bitrate = "64k"\nmp4 = true\n'
)


BROKERS = {
    "redis": ("Redis", 6379, f"redis://127.0.0.1:6379/{REDIS_DB}"),
    "rabbitmq": ("RabbitMQ", 5672, "amqp://guest:guest@127.0.0.1:5672//"),
}


class CeleryFarm:
    """A control plane (serve) and any number of workers, sharing one media folder."""

    def __init__(self, data_dir: Path, database_url: str, broker_url: str, preset: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        prefix = f"t{uuid.uuid4().hex[:8]}"
        profiles = data_dir / "profiles"
        profiles.mkdir(parents=True, exist_ok=True)
        (profiles / "default.toml").write_text(PROFILE.format(preset=preset))
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("VIDFARM_")},
            "VIDFARM_DATA_DIR": str(data_dir),
            "VIDFARM_DATABASE_URL": database_url,
            "VIDFARM_BROKER_URL": broker_url,
            "VIDFARM_PORT": str(self.port),
            "VIDFARM_QUEUE_ENCODING": f"{prefix}-encoding",
            "VIDFARM_QUEUE_TRANSCRIPTION": f"{prefix}-transcription",
            "VIDFARM_QUEUE_XAPI": f"{prefix}-xapi",
            "VIDFARM_LEASE_SECONDS": "3",
            "VIDFARM_POLL_SECONDS": "0.3",
            "VIDFARM_REPUBLISH_AFTER_SECONDS": "1",
            "VIDFARM_RETRY_BASE_SECONDS": "0.1",
            "VIDFARM_RETRY_MAX_SECONDS": "0.5",
        }
        self.server: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.admin, self.worker_token = self._tokens(database_url)

    @staticmethod
    def _tokens(database_url: str) -> tuple[str, str]:
        """An admin and a worker token, made in-process (two CLI runs cost 3 s a test)."""
        engine = make_engine(database_url)
        try:
            migrate(engine)
            with make_session_factory(engine)() as session:
                admin, _ = create_token(session, role=Role.ADMIN, name="test admin")
                worker, _ = create_token(session, role=Role.WORKER, name="test worker")
        finally:
            engine.dispose()
        return admin, worker

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*VIDFARM, *args],
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise AssertionError(f"vidfarm {args} failed: {done.stderr}")
        return done

    def start(self, **env: str) -> None:
        log = (self.data_dir / "serve.log").open("ab")
        self.server = subprocess.Popen(
            [*VIDFARM, "serve"], env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        self._wait_http(f"{self.url}/healthz", "vidfarm serve")

    def worker_env(self) -> dict[str, str]:
        return {
            **self.env,
            "VIDFARM_DATABASE_URL": NOBODY_DATABASE,
            "VIDFARM_API_URL": self.url,
            "VIDFARM_WORKER_TOKEN": self.worker_token,
        }

    def start_worker(self, name: str, queues: str = "", **env: str) -> subprocess.Popen[bytes]:
        args = [*VIDFARM, "worker", "--name", name, "--concurrency", "1"]
        if queues:
            args += ["--queues", queues]
        log = (self.data_dir / f"worker-{name}.log").open("ab")
        process = subprocess.Popen(
            args,
            env={**self.worker_env(), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.workers[name] = process
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"worker {name} exited: {self.log(name)[-2000:]}")
            if " ready." in self.log(name):
                return process
            time.sleep(0.1)
        raise AssertionError(f"worker {name} never got ready: {self.log(name)[-2000:]}")

    def log(self, name: str) -> str:
        path = self.data_dir / f"worker-{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def kill_worker(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.workers.pop(name)
        if process.poll() is None:
            if sig == signal.SIGKILL:
                os.killpg(process.pid, sig)  # the whole machine is lost: ffmpeg too
            else:
                process.send_signal(sig)
            process.wait(timeout=60)

    def stop(self) -> None:
        for name in list(self.workers):
            self.kill_worker(name)
        if self.server and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()

    def _wait_http(self, url: str, what: str) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"{what} did not start")

    # -- API ---------------------------------------------------------------------------------

    def api(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token or self.admin}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kwargs)

    def upload(self, source: Path, **params: str) -> str:
        with source.open("rb") as handle:
            response = self.api(
                "POST", "/videos/upload", files={"file": (source.name, handle)}, params=params
            )
        assert response.status_code == 200, response.text
        return str(response.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.api("GET", f"/api/v1/jobs/{job_id}")
        response.raise_for_status()
        return dict(response.json())

    def wait_for(self, job_id: str, predicate: Any, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if predicate(job):
                return job
            time.sleep(0.2)
        raise AssertionError(f"job {job_id} never got there: {self.job(job_id)}")

    def completions(self) -> Counter[str]:
        """Accepted completion reports per job, from the control plane's access log."""
        text = (self.data_dir / "serve.log").read_text(errors="replace")
        found = re.findall(r"POST /api/v1/worker/jobs/(\w+)/complete HTTP/1.1\" 200", text)
        return Counter(found)


def completed(job: dict[str, Any]) -> bool:
    return bool(job["status"] == "completed")


@pytest.fixture
def broker(request: pytest.FixtureRequest) -> str:
    name, port, url = BROKERS[getattr(request, "param", "redis")]
    require_service(name, "127.0.0.1", port)
    return url


@pytest.fixture
def postgres() -> Iterator[str]:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    with fresh_postgres_database("vidfarm_celery") as url:
        yield url


def make_farm(tmp_path: Path, postgres: str, broker: str, preset: str) -> CeleryFarm:
    return CeleryFarm(tmp_path / "farm", postgres, broker, preset)


@pytest.fixture
def farm(tmp_path: Path, postgres: str, broker: str) -> Iterator[CeleryFarm]:
    farm = make_farm(tmp_path, postgres, broker, "ultrafast")
    yield farm
    farm.stop()


@pytest.fixture(scope="module")
def clip(make_media: MakeMedia) -> Path:
    return make_media("celery-clip.mp4", *video_args(size="320x240", duration=2))


@pytest.fixture(scope="module")
def long_clip(make_media: MakeMedia) -> Path:
    """20 s of 640x360. The tests that interrupt its encode first hold the encoder still
    (processes.held_at_work): what they do then cannot lose a race with a fast encoder."""
    return make_media("celery-long.mp4", *video_args(size="640x360", duration=20))


def read_back_rendition(farm: CeleryFarm, job: dict[str, Any], height: int = 240) -> None:
    """The published MP4 decodes with the right size and about the source's duration."""
    prefix = job["result"]["prefix"]
    mp4 = next((farm.data_dir / "media" / prefix).rglob("*.mp4"))
    with av.open(str(mp4)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.height == height
        assert container.duration and container.duration / 1e6 > 1.5
    master = (farm.data_dir / "media" / prefix / "master.m3u8").read_text()
    assert "#EXT-X-STREAM-INF" in master


# --- round trips ---------------------------------------------------------------------------------


@pytest.mark.parametrize("broker", ["redis", "rabbitmq"], indirect=True)
def test_round_trip_on_every_queue(
    farm: CeleryFarm, broker: str, speech_clip: Path, ralph: Any
) -> None:
    from fixtures_ralph import RALPH_PASSWORD, RALPH_USER

    xapi = {
        "VIDFARM_XAPI_ENABLED": "true",
        "VIDFARM_XAPI_LRS_URL": ralph.url,
        "VIDFARM_XAPI_LRS_LOGIN": RALPH_USER,
        "VIDFARM_XAPI_LRS_PASSWORD": RALPH_PASSWORD,
    }
    # The control plane needs no LRS credentials. Loading the speech model holds the GIL for
    # seconds: the 3 s lease the other tests use would expire under it (default: 60 s).
    farm.start(VIDFARM_XAPI_ENABLED="true", VIDFARM_LEASE_SECONDS="30")
    queues = ",".join(farm.env[f"VIDFARM_QUEUE_{q}"] for q in ("ENCODING", "TRANSCRIPTION", "XAPI"))
    farm.start_worker("all", queues, **xapi)
    workers = farm.api("GET", "/api/v1/workers").json()
    assert workers["transport"] == "celery"
    assert [w["name"] for w in workers["workers"]] == ["all@" + os.uname().nodename]

    # Transcription takes ~15 s here: it crosses Redis; RabbitMQ carries encode and xAPI.
    transcribe = broker.startswith("redis")
    encode_id = farm.upload(speech_clip, **({"language": "en"} if transcribe else {}))
    encode = farm.wait_for(encode_id, completed)
    read_back_rendition(farm, encode, height=90)  # the speech clip is 160x90
    video_id = encode["video_id"]
    expected = Counter({encode_id: 1})
    if transcribe:
        listed = farm.api("GET", "/api/v1/jobs", params={"type": "transcription"}).json()
        (transcription,) = listed["items"]
        done = farm.wait_for(transcription["id"], completed)
        prefix = farm.data_dir / "media" / done["result"]["prefix"]
        vtt = next(prefix.rglob("*.vtt")).read_text()
        assert vtt.startswith("WEBVTT") and "-->" in vtt
        expected[transcription["id"]] = 1

    event = {"video_id": video_id, "verb": "played", "time": 1.5, "session_id": "s1"}
    posted = farm.api("POST", "/xapi/video/", json=event)
    assert posted.status_code == 202, posted.text
    (statement_id,) = posted.json()["ids"]
    deadline = time.monotonic() + 30
    with ralph.client() as lrs:
        while lrs.get_statement(statement_id) is None:
            assert time.monotonic() < deadline, "the xapi queue never delivered the statement"
            time.sleep(0.3)
    assert farm.api("GET", "/api/v1/xapi/status").json()["delivered"] == 1
    assert farm.completions() == expected


def test_a_worker_that_cannot_reach_the_api_says_so_in_one_line(farm: CeleryFarm) -> None:
    env = {**farm.worker_env(), "VIDFARM_API_URL": f"http://127.0.0.1:{free_port()}"}
    done = subprocess.run([*VIDFARM, "worker"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert "cannot reach the API at http://127.0.0.1:" in done.stderr
    env["VIDFARM_API_URL"] = farm.url
    env["VIDFARM_WORKER_TOKEN"] = "vf_nope_nope"
    farm.start()
    done = subprocess.run([*VIDFARM, "worker"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "refused VIDFARM_WORKER_TOKEN (401" in done.stderr


# --- losing nothing ------------------------------------------------------------------------------


def test_two_workers_share_the_jobs_and_none_completes_twice(farm: CeleryFarm, clip: Path) -> None:
    farm.start()
    farm.start_worker("one")
    farm.start_worker("two")
    ids = [farm.upload(clip) for _ in range(6)]
    finished = [farm.wait_for(job_id, completed) for job_id in ids]
    assert all(job["attempts"] == 1 for job in finished)
    assert farm.completions() == Counter({job_id: 1 for job_id in ids})
    claims = [farm.log(name).count('/claim "HTTP/1.1 200') for name in ("one", "two")]
    assert sum(claims) == 6 and min(claims) >= 1, claims  # both worked, each job once


def test_kill_9_of_a_worker_mid_encode_another_finishes_it_once(
    farm: CeleryFarm, long_clip: Path
) -> None:
    farm.start()
    farm.start_worker("doomed")
    job_id = farm.upload(long_clip)
    attempt = farm.data_dir / "work" / f"{job_id}-a1"
    with held_at_work(attempt, timeout=90):  # mid-encode whatever the machine's speed
        farm.kill_worker("doomed")  # kill -9 of the worker: its ffmpeg dies with it
    wait_until(lambda: not encoders_in(attempt), 30, "the encoder gone with its worker")
    farm.start_worker("rescuer")
    job = farm.wait_for(job_id, completed, timeout=120)
    assert job["attempts"] == 2
    assert job["result"]["prefix"].endswith("/a2")
    read_back_rendition(farm, job)
    assert farm.completions() == Counter({job_id: 1})
    published = sorted(p.name for p in (farm.data_dir / "media" / "videos").glob("*/*/*"))
    assert published == ["a2"]  # the lost attempt published nothing


def test_sigterm_hands_the_running_job_back(farm: CeleryFarm, long_clip: Path) -> None:
    farm.start()
    worker = farm.start_worker("leaving")
    job_id = farm.upload(long_clip)
    with held_at_work(farm.data_dir / "work" / f"{job_id}-a1", timeout=90):
        started = time.monotonic()  # held, it prints no progress: the stop reaches it anyway
        farm.kill_worker("leaving", signal.SIGTERM)
    assert worker.returncode is not None and time.monotonic() - started < 20
    handed_back = farm.job(job_id)
    assert handed_back["status"] == "queued" and handed_back["attempts"] == 0
    farm.start_worker("next")
    job = farm.wait_for(job_id, completed, timeout=120)
    assert job["attempts"] == 1
    assert farm.completions() == Counter({job_id: 1})


def test_a_control_plane_down_longer_than_a_lease_loses_no_finished_work(
    farm: CeleryFarm, long_clip: Path
) -> None:
    """kill -9 of serve mid-encode: the worker keeps encoding, publishes, and retries its
    completion through an outage longer than the lease; the restarted control plane waits a
    lease before reclaiming, so that completion is accepted: one attempt, nothing redone."""
    farm.start()
    farm.start_worker("patient")
    job_id = farm.upload(long_clip)
    with held_at_work(farm.data_dir / "work" / f"{job_id}-a1", timeout=90):
        assert farm.server is not None
        farm.server.kill()  # the control plane crashes; its database (PostgreSQL) stays
        farm.server.wait()
    down_at = time.monotonic()
    lease = float(farm.env["VIDFARM_LEASE_SECONDS"])
    videos = farm.data_dir / "media" / "videos"
    wait_until(lambda: any(videos.glob("*/*/a1/master.m3u8")), 120, "the finished attempt")
    # The outage lasts longer than the lease: the worker holds a finished, unreported result.
    wait_until(lambda: time.monotonic() - down_at > 2 * lease, 60, "an outage of two leases")
    assert "retrying in" in farm.log("patient")
    farm.start()
    job = farm.wait_for(job_id, completed, timeout=60)
    assert job["attempts"] == 1
    assert job["result"]["prefix"].endswith("/a1")
    read_back_rendition(farm, job)
    assert farm.completions() == Counter({job_id: 1})
    assert sorted(p.name for p in videos.glob("*/*/*")) == ["a1"]  # nothing ran twice


def test_a_flushed_broker_loses_no_job(farm: CeleryFarm, clip: Path) -> None:
    farm.start()
    ids = [farm.upload(clip) for _ in range(3)]
    assert {farm.job(job_id)["status"] for job_id in ids} == {"queued"}
    redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB).flushdb()  # every message is gone
    farm.start_worker("after-flush")
    for job_id in ids:
        assert farm.wait_for(job_id, completed)["attempts"] == 1
    assert farm.completions() == Counter({job_id: 1 for job_id in ids})
    serve_log = (farm.data_dir / "serve.log").read_text()
    republished = re.findall(r"for \d+ queued jobs: publishing (\d+) again", serve_log)
    assert sum(int(n) for n in republished) >= 3, serve_log


def test_a_stale_workers_late_reports_are_refused(farm: CeleryFarm, clip: Path) -> None:
    farm.start()
    job_id = farm.upload(clip)  # no worker: the job waits, queued
    token = farm.worker_token
    first = farm.api("POST", f"/api/v1/worker/jobs/{job_id}/claim", token, json={"worker_id": "a"})
    assert first.status_code == 200, first.text
    old = first.json()["fencing_token"]
    again = farm.api("POST", f"/api/v1/worker/jobs/{job_id}/claim", token, json={"worker_id": "b"})
    assert again.status_code == 409  # a duplicate message finds the job taken
    # Worker a goes silent: its lease (3 s) expires, the job is queued again and re-claimed.
    farm.wait_for(job_id, lambda job: job["status"] == "queued", timeout=30)
    second = farm.api("POST", f"/api/v1/worker/jobs/{job_id}/claim", token, json={"worker_id": "b"})
    assert second.status_code == 200, second.text
    new = second.json()["fencing_token"]
    assert new == old + 1
    late = {"fencing_token": old, "percent": 50, "step": "encoding"}
    assert (
        farm.api("POST", f"/api/v1/worker/jobs/{job_id}/progress", token, json=late).status_code
        == 409
    )
    stale_end = {"fencing_token": old, "result": {}, "outputs": []}
    refused = farm.api("POST", f"/api/v1/worker/jobs/{job_id}/complete", token, json=stale_end)
    assert refused.status_code == 409 and "stale" in refused.json()["detail"]
    current_end = {"fencing_token": new, "result": {"by": "b"}, "outputs": []}
    accepted = farm.api("POST", f"/api/v1/worker/jobs/{job_id}/complete", token, json=current_end)
    assert accepted.status_code == 200
    repeated = farm.api("POST", f"/api/v1/worker/jobs/{job_id}/complete", token, json=current_end)
    assert repeated.status_code == 200  # a retried report after a lost answer is harmless
    job = farm.job(job_id)
    assert job["status"] == "completed" and job["result"] == {"by": "b"}
    user = farm.cli("token", "create", "--role", "user").stdout.strip()
    assert (
        farm.api(
            "POST", f"/api/v1/worker/jobs/{job_id}/claim", user, json={"worker_id": "u"}
        ).status_code
        == 403
    )


def test_higher_priority_and_short_jobs_start_first(farm: CeleryFarm, clip: Path) -> None:
    farm.start()
    students = [farm.upload(clip, affiliation="student") for _ in range(3)]
    staff = farm.upload(clip, affiliation="staff")
    assert farm.job(staff)["priority"] > farm.job(students[0])["priority"]
    refused = farm.api(
        "POST", "/videos/upload", files={"file": ("x.mp4", b"x")}, params={"affiliation": "alien"}
    )
    assert refused.status_code == 422 and "unknown affiliation 'alien'" in refused.json()["detail"]
    farm.start_worker("only")
    finished = [farm.wait_for(job_id, completed) for job_id in [*students, staff]]
    order = sorted(finished, key=lambda job: job["started_at"])
    assert order[0]["id"] == staff


def test_a_job_past_its_time_limit_times_out_without_retry(
    farm: CeleryFarm, long_clip: Path
) -> None:
    farm.start()
    # The worker's limit: max(1 s, 0.05 x 20 s); the encoder, held still, goes past it.
    farm.start_worker(
        "strict", VIDFARM_TIME_LIMIT_MIN_SECONDS="1", VIDFARM_TIME_LIMIT_FACTOR="0.05"
    )
    job_id = farm.upload(long_clip)
    with held_at_work(farm.data_dir / "work" / f"{job_id}-a1", timeout=90):
        job = farm.wait_for(job_id, lambda job: job["status"] not in ("queued", "running"))
    assert job["status"] == "timeout" and job["attempts"] == 1, job
    assert job["error_class"] == "JobTimedOut"
    assert not list((farm.data_dir / "media" / "videos").glob("*/*/*"))  # nothing published

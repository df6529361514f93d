"""`vidfarm runner` as Esup-Pod uses it: a real runner process on loopback, a real source
server and a real webhook receiver, Pod's exact request body, outputs read back."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

from fixtures_media import MakeMedia, video_args
from services import free_port

VIDFARM = [sys.executable, "-m", "vidfarm"]
TOKEN_A = "pod-token-a-0123456789"
TOKEN_B = "pod-token-b-9876543210"
RENDITION = json.dumps(
    {"360": {"resolution": "640x360", "video_bitrate": "750k", "audio_bitrate": "96k",
             "encode_mp4": True}}
)  # fmt: skip


class World(ThreadingHTTPServer):
    """The outside world on loopback: Pod's media server and Pod's webhook.

    GET /files/<name> serves a file; /delay/<name> answers after 1 s; /trickle/<name> sends
    it slowly (about 3 s). POST /hook/<name> records the notification and answers 200;
    /hook/flaky-<n> answers 500 to its first POST.
    """

    daemon_threads = True

    def handle_error(self, *_: Any) -> None:
        pass  # a runner that hung up (stopped task, kill -9) is expected here

    def __init__(self, files: Path) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files = files
        self.notifications: list[dict[str, Any]] = []
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def notification(self, task_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                found = [n for n in self.notifications if n["body"].get("task_id") == task_id]
            if found:
                return found[-1]
            time.sleep(0.05)
        raise AssertionError(f"no notification for task {task_id}")


class Handler(BaseHTTPRequestHandler):
    server: World

    def log_message(self, *_: Any) -> None:
        pass

    def do_GET(self) -> None:
        _, mode, name = self.path.split("/", 2)
        data = (self.server.files / name).read_bytes()
        if mode == "delay":
            time.sleep(1.0)
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        step = 32_768 if mode == "trickle" else len(data)
        try:
            for start in range(0, len(data), step):
                self.wfile.write(data[start : start + step])
                if mode == "trickle":
                    time.sleep(0.12)
        except OSError:
            pass  # the runner went away (stopped task, killed runner)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name = self.path.rsplit("/", 1)[-1]
        with self.server.lock:
            hits = self.server.hits[name] = self.server.hits.get(name, 0) + 1
        if name.startswith("flaky") and hits == 1:
            self.send_response(500)
            self.end_headers()
            return
        with self.server.lock:
            self.server.notifications.append(
                {
                    "path": self.path,
                    "authorization": self.headers.get("Authorization"),
                    "content_type": self.headers.get("Content-Type"),
                    "body": body,
                }
            )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"status": "ok"}')


class Runner:
    def __init__(self, data_dir: Path, database_url: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "VIDFARM_DATA_DIR": str(data_dir),
            "VIDFARM_DATABASE_URL": database_url,  # the integration suite runs on PostgreSQL
            "VIDFARM_RUNNER_TOKENS": f"{TOKEN_A},{TOKEN_B}",
            "VIDFARM_RUNNER_CAPACITY": "1",
            "VIDFARM_RUNNER_ALLOW_PRIVATE_URLS": "true",
            "VIDFARM_RUNNER_NOTIFY_BACKOFF": "0.1",
            "VIDFARM_RUNNER_NOTIFY_RETRIES": "3",
            "VIDFARM_RUNNER_NOTIFY_TIMEOUT": "5",
            "VIDFARM_LEASE_SECONDS": "15",  # pocketsphinx may hold the GIL a while
            "VIDFARM_POLL_SECONDS": "0.1",
            "VIDFARM_RETRY_BASE_SECONDS": "0.1",
            "VIDFARM_RETRY_MAX_SECONDS": "0.5",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.data_dir / "runner.log").open("ab")
        self.process = subprocess.Popen(
            [*VIDFARM, "runner", "--port", str(self.port)],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/health").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("vidfarm runner did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=60)
        self.process = None

    def call(
        self, method: str, path: str, token: str | None = TOKEN_A, **kw: Any
    ) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=30, **kw)

    def execute(self, body: dict[str, Any], token: str = TOKEN_A) -> httpx.Response:
        return self.call("POST", "/task/execute", token, json=body)

    def status(self, task_id: str, token: str = TOKEN_A) -> dict[str, Any]:
        response = self.call("GET", f"/task/status/{task_id}", token)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_ended(self, task_id: str, timeout: float = 60, token: str = TOKEN_A) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(task_id, token)
            if status["status"] not in ("pending", "running"):
                return status
            time.sleep(0.1)
        raise AssertionError(f"task {task_id} did not end: {self.status(task_id, token)}")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    server = World(tmp_path_factory.mktemp("world"))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory, pg_module_database: str) -> Iterator[Runner]:
    data_dir = tmp_path_factory.mktemp("runner")
    (data_dir / "profiles").mkdir()
    (data_dir / "profiles" / "default.toml").write_text(
        'preset = "ultrafast"\n[[renditions]]\nheight = 360\nmin_video_bitrate = "500k"\n'
        'video_bitrate = "750k"\nmax_video_bitrate = "1000k"\naudio_bitrate = "96k"\nmp4 = true\n'
    )
    runner = Runner(data_dir, pg_module_database)
    runner.start()
    yield runner
    runner.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def clip(make_media: MakeMedia, world: World) -> str:
    """A 3 s 640x360 clip with sound, served by the world; returns its file name."""
    source = make_media("runner-360.mp4", *video_args("640x360", 25, 3.0))
    (world.files / "clip.mp4").write_bytes(source.read_bytes())
    return "clip.mp4"


def pod_body(world: World, source: str, hook: str, **parameters: Any) -> dict[str, Any]:
    """The body Esup-Pod's runner_manager sends for an encoding task."""
    return {
        "etab_name": "Université de test",
        "app_name": "Esup-Pod",
        "app_version": "4.2.0",
        "task_type": "encoding",
        "source_url": f"{world.url}/{source}",
        "affiliation": "staff",
        "notify_url": f"{world.url}/hook/{hook}",
        "parameters": {
            "rendition": RENDITION,
            "cut": "{}",
            "dressing": "{}",
            "video_id": 42,
            "video_slug": "0042-runner-test",
            "video_title": "Runner test",
            **parameters,
        },
    }


def test_pod_encoding_task_end_to_end(
    runner: Runner, world: World, clip: str, tmp_path: Path
) -> None:
    body = pod_body(world, f"delay/{clip}", "main")
    accepted = runner.execute(body)
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["status"] == "running"
    task_id = accepted.json()["task_id"]

    # While it runs: no result yet, the same request is the same task, no room for another.
    early = runner.call("GET", f"/task/result/{task_id}")
    assert early.status_code == 425 and "still running" in early.json()["detail"]
    again = runner.execute(body)
    assert again.status_code == 200 and again.json()["task_id"] == task_id
    other = runner.execute(pod_body(world, f"files/{clip}", "other"))
    assert other.status_code == 503 and "No runners available" in other.json()["detail"]
    listed = runner.call("GET", "/task/list").json()["tasks"]
    assert [t["task_id"] for t in listed] == [task_id]

    notified = world.notification(task_id)
    assert notified["authorization"] == f"Bearer {TOKEN_A}"
    assert notified["content_type"] == "application/json"
    assert notified["body"]["status"] == "completed"
    assert notified["body"]["error_message"] is None  # as Esup-Runner: null on success
    assert set(notified["body"]) == {"task_id", "status", "script_output", "error_message"}
    assert runner.status(task_id)["status"] == "completed"

    manifest = runner.call("GET", f"/task/result/{task_id}").json()
    names = {entry["file_path"] for entry in manifest["files"]}
    assert {"info_video.json", "manifest.json", "master.m3u8", "360p.mp4", "audio.mp3"} <= names
    for entry in manifest["files"]:  # as Pod does: fetch every file, check its SHA-256
        response = runner.call("GET", f"/task/result/{task_id}/file/{entry['file_path']}")
        assert response.status_code == 200, entry
        assert hashlib.sha256(response.content).hexdigest() == entry["sha256"]
        (tmp_path / entry["file_path"]).write_bytes(response.content)

    with av.open(str(tmp_path / "360p.mp4")) as container:
        assert container.streams.video[0].height == 360
        assert container.streams.audio
    info = json.loads((tmp_path / "info_video.json").read_text())
    assert info["duration"] == 3 and info["has_stream_video"] and info["has_stream_audio"]
    assert info["has_stream_thumbnail"]
    assert {"encoding_format": "video/mp4", "filename": "360p.mp4", "rendition": "640x360",
            "width": 640, "height": 360} in info["encode_video"]  # fmt: skip
    assert {"encoding_format": "audio/mp3", "filename": "audio.mp3"} in info["encode_audio"]
    vidfarm_manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [o["height"] for o in vidfarm_manifest["outputs"] if o["kind"] == "mp4"] == [360]

    # Paths that try to leave the task are refused; unknown files are 404.
    for bad in ("..%2F..%2Fvidfarm.db", "%2e%2e/%2e%2e/vidfarm.db", "../../../vidfarm.db"):
        status, detail = raw_get(runner, f"/task/result/{task_id}/file/{bad}")
        assert (status, detail) == (422, "invalid file path '../../vidfarm.db'") or (
            status == 422 and detail == "invalid file path '../../../vidfarm.db'"
        ), (bad, status, detail)
    assert runner.call("GET", f"/task/result/{task_id}/file/nope.mp4").status_code == 404


def raw_get(runner: Runner, path: str) -> tuple[int, str]:
    """GET `path` exactly as written (httpx would resolve the dot segments first)."""
    connection = http.client.HTTPConnection("127.0.0.1", runner.port, timeout=10)
    try:
        connection.request("GET", path, headers={"Authorization": f"Bearer {TOKEN_A}"})
        response = connection.getresponse()
        return response.status, str(json.loads(response.read())["detail"])
    finally:
        connection.close()


def test_tokens_and_bad_requests(runner: Runner, world: World, clip: str) -> None:
    body = pod_body(world, f"files/{clip}", "bad")
    missing = runner.execute(body, token="")
    assert missing.status_code == 401 and missing.json() == {"detail": "missing token"}
    wrong = runner.execute(body, token="not-the-token")
    assert wrong.status_code == 403 and wrong.json() == {"detail": "invalid token"}
    assert runner.call("GET", "/task/list", token="nope").status_code == 403
    by_header = httpx.get(f"{runner.url}/manager/health", headers={"X-API-Token": TOKEN_B})
    assert by_header.status_code == 200 and by_header.json()["capacity"] == 1
    assert httpx.get(f"{runner.url}/api/health").json() == {"status": "ok"}
    assert httpx.get(f"{runner.url}/api/version").json()["protocol"] == "esup-runner"

    def refused(changes: dict[str, Any], expected: str) -> None:
        response = runner.execute({**body, **changes})
        assert response.status_code == 422, response.text
        assert expected in response.json()["detail"]
        assert "\n" not in response.json()["detail"]

    refused({"task_type": "render"}, "task_type: unsupported 'render'")
    refused({"source_url": "file:///etc/passwd"}, "only http and https")
    refused({"notify_url": "gopher://x/"}, "notify_url: only http and https")
    refused({"source_url": "http://169.254.169.254/latest/"}, "metadata")
    refused({"parameters": {"rendition": "{not json"}}, "parameters.rendition: not valid JSON")
    refused({"parameters": {"dressing": '{"watermark": 1}'}}, "dressing")
    no_source = {k: v for k, v in body.items() if k != "source_url"}
    response = runner.execute(no_source)
    assert response.status_code == 422 and "source_url" in response.json()["detail"]
    assert runner.call("GET", "/task/status/" + "0" * 32).status_code == 404
    assert runner.call("GET", "/task/result/nope").status_code == 404
    assert runner.call("POST", "/task/stop/" + "f" * 32).status_code == 404


def test_a_task_answers_only_the_token_that_created_it(
    runner: Runner, world: World, clip: str
) -> None:
    body = pod_body(world, f"files/{clip}", "tenant-a")
    task_id = runner.execute(body).json()["task_id"]
    runner.wait_ended(task_id)
    for method, path in (
        ("GET", f"/task/status/{task_id}"),
        ("GET", f"/task/result/{task_id}"),
        ("GET", f"/task/result/{task_id}/file/manifest.json"),
        ("POST", f"/task/stop/{task_id}"),
    ):
        other = runner.call(method, path, token=TOKEN_B)
        assert other.status_code == 404, (path, other.text)
        assert other.json() == {"detail": f"no task {task_id}"}
    assert runner.call("GET", f"/task/result/{task_id}").status_code == 200
    listed_b = [
        t["task_id"] for t in runner.call("GET", "/task/list", token=TOKEN_B).json()["tasks"]
    ]
    listed_a = [t["task_id"] for t in runner.call("GET", "/task/list").json()["tasks"]]
    assert task_id in listed_a and task_id not in listed_b


def test_deduplication_never_crosses_tenants(runner: Runner, world: World, clip: str) -> None:
    body = pod_body(world, f"trickle/{clip}", "same-request")
    first = runner.execute(body).json()["task_id"]
    again = runner.execute(body).json()["task_id"]
    assert again == first  # the same tenant's identical request: the task in flight
    runner.call("POST", f"/task/stop/{first}")
    body_b = pod_body(world, f"trickle/{clip}", "same-request-b")
    mine = runner.execute(body_b).json()["task_id"]
    theirs = runner.execute(body_b, token=TOKEN_B)
    # The one slot is taken by A's task: B is told so, and never handed A's task.
    assert theirs.status_code == 503, theirs.text
    runner.call("POST", f"/task/stop/{mine}")


def test_stop_a_running_task(runner: Runner, world: World, clip: str) -> None:
    task_id = runner.execute(pod_body(world, f"trickle/{clip}", "stopped")).json()["task_id"]
    time.sleep(0.3)
    stopped = runner.call("POST", f"/task/stop/{task_id}")
    assert stopped.status_code == 202 and stopped.json()["status"] == "failed"
    notified = world.notification(task_id)["body"]
    assert notified["status"] == "failed" and notified["error_message"] == "stopped by the client"
    assert runner.status(task_id)["status"] == "failed"
    assert runner.call("GET", f"/task/result/{task_id}").status_code == 409
    assert runner.call("POST", f"/task/stop/{task_id}").status_code == 409


def test_notification_retried_after_500_sent_with_the_tasks_token(
    runner: Runner, world: World, clip: str
) -> None:
    body = pod_body(world, f"files/{clip}", "flaky-1")
    task_id = runner.execute(body, token=TOKEN_B).json()["task_id"]
    notified = world.notification(task_id)
    assert notified["authorization"] == f"Bearer {TOKEN_B}"
    assert world.hits["flaky-1"] == 2
    status = runner.wait_ended(task_id, token=TOKEN_B)
    assert status["status"] == "completed"
    assert status["notify"]["state"] == "sent" and status["notify"]["attempts"] == 2


def test_unreachable_webhook_ends_in_warning(runner: Runner, world: World, clip: str) -> None:
    body = pod_body(world, f"files/{clip}", "x")
    body["notify_url"] = f"http://127.0.0.1:{free_port()}/runner/notify_task_end/"
    task_id = runner.execute(body).json()["task_id"]
    deadline = time.monotonic() + 60
    while runner.status(task_id)["status"] != "warning":
        assert time.monotonic() < deadline, runner.status(task_id)
        time.sleep(0.1)
    status = runner.status(task_id)
    assert status["notify"]["state"] == "failed" and status["notify"]["attempts"] == 3
    assert "ConnectError" in status["notify"]["error"]
    assert runner.call("GET", f"/task/result/{task_id}").status_code == 200  # still usable


def test_transcription_task_gives_a_vtt(runner: Runner, world: World, speech_clip: Path) -> None:
    (world.files / "speech.mkv").write_bytes(speech_clip.read_bytes())
    body = pod_body(world, "files/speech.mkv", "speech")
    body["task_type"] = "transcription"
    body["parameters"] = {"language": "en", "source_language": "auto", "duration": 12,
                          "normalize": False, "model_type": "small"}  # fmt: skip
    task_id = runner.execute(body).json()["task_id"]
    assert world.notification(task_id, timeout=120)["body"]["status"] == "completed"
    files = runner.call("GET", f"/task/result/{task_id}").json()["files"]
    [vtt] = [f for f in files if f["file_path"].endswith(".vtt")]
    text = runner.call("GET", f"/task/result/{task_id}/file/{vtt['file_path']}").text
    assert hashlib.sha256(text.encode()).hexdigest() == vtt["sha256"]
    assert text.startswith("WEBVTT") and "-->" in text
    assert any(word in text.lower() for word in ("door", "window", "library", "park"))


def test_kill_nine_mid_task_then_restart_completes_and_notifies(
    runner: Runner, world: World, clip: str
) -> None:
    task_id = runner.execute(pod_body(world, f"trickle/{clip}", "killed")).json()["task_id"]
    time.sleep(0.8)  # downloading
    runner.stop(signal.SIGKILL)
    runner.start()
    notified = world.notification(task_id)
    assert notified["body"]["status"] == "completed"
    assert runner.status(task_id)["status"] == "completed"
    files = runner.call("GET", f"/task/result/{task_id}").json()["files"]
    assert any(f["file_path"] == "360p.mp4" for f in files)
    assert not list((runner.data_dir / "runner" / "incoming").iterdir())

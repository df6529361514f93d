"""`vidfarm pod-worker` against a stand-in Esup-Pod: Pod's Celery publishing, Pod's callback rules.

The stand-in publishes exactly as Pod 4.1 does: bare Celery apps named like Pod's modules, only
`task_routes` set, `.delay()` with Pod's arguments, JSON on the machine's Redis. A small HTTP
server implements Pod's REST callback rules (shared/reference/pod-celery.md, section 3): Token
auth, `?id` equal to the body's id, 400 on a repeated callback, and the VTT read back from
`MEDIA_ROOT/temp/<basename>`. Statements go to a real Ralph LRS through Pod's URL form.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from fixtures_media import run_ffmpeg_cli
from fixtures_ralph import RALPH_PASSWORD, RALPH_USER
from services import require_service
from waiting import wait_until
from webvtt_check import cues

REDIS_DB = 14  # test_celery uses 11, test_shared_broker 13
BROKER = f"redis://127.0.0.1:6379/{REDIS_DB}"
POD_TOKEN = "pod-staff-token-" + uuid.uuid4().hex
TRANSCRIPTION = "pod.video_encode_transcript.transcripting_tasks.start_transcripting_task"
XAPI = "pod.xapi.xapi_tasks.send_xapi_statement_task"


class StandInPod:
    """Pod's REST API, just the callbacks, with Pod's rules."""

    def __init__(self, media_root: Path) -> None:
        self.media_root = media_root
        self.in_progress: set[int] = set()
        self.calls: list[dict[str, Any]] = []
        self.tracks: dict[int, str] = {}
        pod = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                status, answer = pod.answer(self.path, self.headers.get("Authorization"), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/rest/"

    def answer(self, path: str, auth: str | None, body: dict[str, Any]) -> tuple[int, Any]:
        self.calls.append({"path": path, "auth": auth, "body": body})
        if auth != f"Token {POD_TOKEN}":
            return 401, {"detail": "Authentication credentials were not provided."}
        endpoint, _, query = path.partition("?")
        if endpoint != "/rest/store_remote_transcripted_video/":
            return 404, {"detail": "Not found."}
        video_id = int(query.removeprefix("id="))
        if video_id != body.get("video_id"):
            return 400, {"detail": "id and video_id differ"}
        if video_id not in self.in_progress:
            return 400, {"detail": "encoding_in_progress is False"}
        # Pod reads <its MEDIA_ROOT>/temp/<basename> with webvtt-py; a bad file is a 500.
        vtt = self.media_root / "temp" / Path(body["temp_vtt_file"]).name
        try:
            text = vtt.read_text(encoding="utf-8")
            assert cues(vtt), "no cue"
        except Exception as error:
            return 500, {"detail": f"cannot read {vtt.name}: {error}"}
        self.tracks[video_id] = text
        self.in_progress.discard(video_id)
        vtt.unlink()
        return 200, {"id": video_id}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pods_publisher(module: str, task: str, queue: str, broker: str) -> Any:
    """What Pod's tasks module builds: a bare app, only task_routes, and the task to `.delay()`."""
    app = Celery(module, broker=broker)
    app.conf.task_routes = {f"{task.rsplit('.', 1)[0]}.*": {"queue": queue}}

    @app.task(name=task)
    def stub(*_: Any, **__: Any) -> None:  # never runs here: Pod only publishes
        raise AssertionError("Pod does not run its tasks in-process")

    return stub


@pytest.fixture
def broker() -> Iterator[redis.Redis]:
    require_service("Redis", "127.0.0.1", 6379)
    client = redis.Redis(host="127.0.0.1", port=6379, db=REDIS_DB)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def pod(tmp_path: Path) -> Iterator[StandInPod]:
    media_root = tmp_path / "media"
    (media_root / "videos" / "owner").mkdir(parents=True)
    stand_in = StandInPod(media_root)
    yield stand_in
    stand_in.close()


def start_worker(
    tmp_path: Path, pod: StandInPod, queues: str, **extra: str
) -> Callable[[], subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDFARM_")}
    env |= {
        "VIDFARM_DATA_DIR": str(tmp_path / "vidfarm"),
        "ENCODING_TRANSCODING_CELERY_BROKER_URL": BROKER,
        "XAPI_CELERY_BROKER_URL": BROKER,
        "POD_API_URL": pod.api_url,
        "POD_API_TOKEN": POD_TOKEN,
        "MEDIA_ROOT": str(pod.media_root),
        **extra,
    }
    log = (tmp_path / f"pod-worker-{queues.replace(',', '-')}.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "vidfarm", "pod-worker", "--queues", queues],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def stop() -> subprocess.Popen[bytes]:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        return process

    return stop


def test_pods_transcription_task_is_run_and_called_back(
    tmp_path: Path, broker: redis.Redis, pod: StandInPod, speech_clip: Path
) -> None:
    mp3 = pod.media_root / "videos" / "owner" / "0042" / "audio_192k.mp3"
    mp3.parent.mkdir(parents=True)
    run_ffmpeg_cli("-i", str(speech_clip), "-vn", "-c:a", "libmp3lame", "-q:a", "2", str(mp3))
    stop = start_worker(tmp_path, pod, "transcripting")
    try:
        pod.in_progress.add(42)
        publish = pods_publisher("transcripting_tasks", TRANSCRIPTION, "transcripting", BROKER)
        publish.delay(42, str(mp3), 12, "en")
        text = wait_until(lambda: pod.tracks.get(42), 180, "Pod's transcription callback")
    finally:
        worker = stop()
    assert worker.returncode == 0, (tmp_path / "pod-worker-transcripting.log").read_text()
    assert any(word in text.lower() for word in ("door", "window", "library", "park")), text
    [call] = [c for c in pod.calls if "transcripted" in c["path"]]
    assert call["path"] == "/rest/store_remote_transcripted_video/?id=42"
    assert call["body"]["temp_vtt_file"].startswith(str(pod.media_root / "temp" / "tmp"))
    assert "vidfarm" in call["body"]["msg"]
    assert broker.llen("transcripting") == 0  # taken, acknowledged once done
    assert list((pod.media_root / "temp").glob("*.part")) == []


def test_pods_statement_reaches_the_lrs_through_pods_url_form(
    tmp_path: Path, broker: redis.Redis, pod: StandInPod, ralph: Any
) -> None:
    statement_id = str(uuid.uuid4())
    statement = {
        "id": statement_id,
        "actor": {"name": "anonymous", "mbox": "mailto:anon@pod.example"},
        "verb": {"id": "https://w3id.org/xapi/video/verbs/played", "display": {"en-US": "played"}},
        "object": {"id": "https://pod.example/video/0042-lecture/", "objectType": "Activity"},
        "timestamp": "2026-12-01T10:00:00+00:00",
    }
    stop = start_worker(
        tmp_path,
        pod,
        "xapi",
        XAPI_LRS_URL=f"{ralph.url}/statements/",  # Pod's form: the statements resource itself
        XAPI_LRS_LOGIN=RALPH_USER,
        XAPI_LRS_PWD=RALPH_PASSWORD,
    )
    try:
        pods_publisher("xapi_tasks", XAPI, "xapi", BROKER).delay(statement)
        stored = wait_until(
            lambda: ralph.client().get_statement(statement_id), 60, "the statement in Ralph"
        )
    finally:
        worker = stop()
    assert worker.returncode == 0
    assert stored["verb"]["id"] == statement["verb"]["id"]


def test_pod_worker_says_what_is_missing_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIDFARM_", "POD_"))}
    env["VIDFARM_DATA_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "vidfarm", "pod-worker", "--queues", "transcripting,xapi"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    for name in (
        "ENCODING_TRANSCODING_CELERY_BROKER_URL",
        "POD_API_URL",
        "MEDIA_ROOT",
        "XAPI_LRS_URL",
    ):
        assert name in result.stderr
    refused = subprocess.run(
        [sys.executable, "-m", "vidfarm", "pod-worker", "--queues", "encoding"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "not served by vidfarm pod-worker yet" in refused.stderr

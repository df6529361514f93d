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
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from celery import Celery

from fixtures_media import POD_LADDER_PROFILE, run_ffmpeg_cli, video_args
from fixtures_ralph import RALPH_PASSWORD, RALPH_USER
from readback import read_video
from services import free_port, require_service
from waiting import wait_until
from webvtt_check import cues

REDIS_DB = 14  # test_celery uses 11, test_shared_broker 13
BROKER = f"redis://127.0.0.1:6379/{REDIS_DB}"
POD_TOKEN = "pod-staff-token-" + uuid.uuid4().hex
TRANSCRIPTION = "pod.video_encode_transcript.transcripting_tasks.start_transcripting_task"
XAPI = "pod.xapi.xapi_tasks.send_xapi_statement_task"
ENCODING = "pod.video_encode_transcript.encoding_tasks.start_encoding_task"
STUDIO = "pod.video_encode_transcript.encoding_tasks.start_studio_task"


class StandInPod:
    """Pod's REST API, just the callbacks, with Pod's rules."""

    def __init__(self, media_root: Path) -> None:
        self.media_root = media_root
        self.in_progress: set[int] = set()
        self.calls: list[dict[str, Any]] = []
        self.tracks: dict[int, str] = {}
        self.encodings: dict[int, dict[str, Any]] = {}
        self.studios: dict[int, Path] = {}
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
        if endpoint == "/rest/store_remote_encoded_video_studio/":
            output = Path(body["video_output"])  # Pod makes a video of it, then encodes it
            if not output.is_file() or output.stat().st_size == 0:
                return 500, {"detail": f"no file {output}"}
            self.studios[int(query.removeprefix("recording_id="))] = output
            return 200, "ok"
        if endpoint == "/rest/store_remote_encoded_video/":
            return self.import_encoding(int(query.removeprefix("id=")), body)
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

    def import_encoding(self, video_id: int, body: dict[str, Any]) -> tuple[int, Any]:
        """Pod's `store_encoding_info`: re-read info_video.json and the files it lists."""
        if video_id != body.get("video_id"):
            return 400, {"detail": "id and video_id differ"}
        if video_id not in self.in_progress:
            return 400, {"detail": "encoding_in_progress is False"}
        folder = Path(body["video_path"]).parent / f"{video_id:04d}"
        info = json.loads((folder / "info_video.json").read_text())
        kinds = ("m4a", "mp3", "mp4", "hls", "subtitle", "thumbnail", "overview")
        missing = [k for k in ["duration", *(f"list_{k}_files" for k in kinds)] if k not in info]
        if missing:
            return 500, {"detail": f"KeyError {missing}"}
        imported: dict[str, Any] = {"duration": info["duration"], "files": {}}
        for kind in kinds:
            for key, value in info[f"list_{kind}_files"].items():
                path = Path(value[1] if kind == "subtitle" else value)
                if not path.is_absolute() or not path.is_file() or path.stat().st_size == 0:
                    continue  # Pod skips it silently
                if kind in ("mp4", "hls") and int(key) not in (360, 720, 1080):
                    return 500, {"detail": f"VideoRendition x{key} does not exist"}
                if kind == "hls" and not path.with_suffix(".ts").is_file():
                    continue  # no EncodingVideo(video/mp2t): Pod's HLS breaks
                imported["files"].setdefault(kind, {})[key] = path
        self.encodings[video_id] = imported
        self.in_progress.discard(video_id)
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


def first_frame(path: Path) -> Any:
    """The first decoded picture as an RGB array (rows, columns, channels)."""
    import av

    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")


def start_worker(
    tmp_path: Path, pod: StandInPod, queues: str, *options: str, **extra: str
) -> Callable[[], subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDFARM_")}
    (tmp_path / "vidfarm" / "profiles").mkdir(parents=True, exist_ok=True)
    (tmp_path / "vidfarm" / "profiles" / "podladder.toml").write_text(POD_LADDER_PROFILE)
    env |= {
        "VIDFARM_DATA_DIR": str(tmp_path / "vidfarm"),
        "VIDFARM_DEFAULT_PROFILE": "podladder",
        "ENCODING_TRANSCODING_CELERY_BROKER_URL": BROKER,
        "XAPI_CELERY_BROKER_URL": BROKER,
        "POD_API_URL": pod.api_url,
        "POD_API_TOKEN": POD_TOKEN,
        "MEDIA_ROOT": str(pod.media_root),
        **extra,
    }
    log = (tmp_path / f"pod-worker-{queues.replace(',', '-')}-{uuid.uuid4().hex[:4]}.log").open(
        "wb"
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "vidfarm", "pod-worker", "--queues", queues, *options],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )

    def stop(signum: int = signal.SIGTERM) -> subprocess.Popen[bytes]:
        process.send_signal(signum)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        return process

    stop.process = process  # type: ignore[attr-defined]
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
    assert worker.returncode == 0
    assert any(word in text.lower() for word in ("door", "window", "library", "park")), text
    [call] = [c for c in pod.calls if "transcripted" in c["path"]]
    assert call["path"] == "/rest/store_remote_transcripted_video/?id=42"
    assert call["body"]["temp_vtt_file"].startswith(str(pod.media_root / "temp" / "tmp"))
    assert "vidfarm" in call["body"]["msg"]
    assert broker.llen("transcripting") == 0  # taken, acknowledged once done
    assert list((pod.media_root / "temp").glob("*.part")) == []


def test_pods_encoding_task_writes_what_pods_importer_reads(
    tmp_path: Path, broker: redis.Redis, pod: StandInPod
) -> None:
    """With and without a cut, and with a watermark: Pod's files, names and keys."""
    owner = pod.media_root / "videos" / "owner"
    source = owner / "lecture.mp4"
    run_ffmpeg_cli(*video_args("1280x720", 25, 4.0), str(source))
    logo = pod.media_root / "files" / "logo.png"
    logo.parent.mkdir(parents=True)
    run_ffmpeg_cli("-f", "lavfi", "-i", "color=c=red:s=64x64", "-frames:v", "1", str(logo))
    dressing = {
        "watermark": "/media/files/logo.png",
        "watermark_path": str(logo),
        "position_orig": "top_right",
        "opacity": 100,
        "opening_credits": None,
        "ending_credits": None,
    }
    publish = pods_publisher("encoding_tasks", ENCODING, "encoding", BROKER)
    stop = start_worker(tmp_path, pod, "encoding")
    try:
        pod.in_progress |= {42, 43, 44}
        publish.delay(42, str(source), 0, 0, json_dressing=None, dressing_input="")
        publish.delay(43, str(source), 1, 3, json_dressing=None, dressing_input="")
        publish.delay(44, str(source), 0, 0, json_dressing=dressing, dressing_input=f' -i "{logo}"')
        wait_until(lambda: len(pod.encodings) == 3, 240, "Pod's three encoding callbacks")
    finally:
        worker = stop()
    assert worker.returncode == 0
    for video_id, duration in ((42, 4), (43, 2), (44, 4)):
        imported = pod.encodings[video_id]
        assert imported["duration"] == duration
        files = imported["files"]
        assert set(files["mp4"]) == {"360", "720"} and set(files["hls"]) == {"360", "720"}
        folder = owner / f"{video_id:04d}"
        assert files["hls"]["720"] == folder / "720p.m3u8"
        assert (folder / "720p.ts").is_file() and (folder / "livestream.m3u8").is_file()
        assert not list(folder.glob("*_0000*.ts"))  # single-file HLS only
        assert files["mp3"]["192k"] == folder / "audio_192k.mp3"
        assert len(files["thumbnail"]) == 3
        assert "overview" not in files  # as Pod: an overview for 10 s or more only
        mp4 = read_video(files["mp4"]["720"])
        assert (mp4.width, mp4.height) == (1280, 720)
        assert mp4.duration == pytest.approx(duration, abs=0.1)
    master = (owner / "0042" / "livestream.m3u8").read_text()
    assert "360p.m3u8" in master and "720p.m3u8" in master and "BANDWIDTH=" in master
    # The watermark (10 % of the height, 5 % in from the top right, as Pod) is in 44 only.
    dressed = first_frame(pod.encodings[44]["files"]["mp4"]["720"])[72, 1208]
    plain = first_frame(pod.encodings[42]["files"]["mp4"]["720"])[72, 1208]
    assert dressed[0] > 200 and dressed[1] < 60 and dressed[2] < 60, dressed
    assert not (plain[0] > 200 and plain[1] < 60 and plain[2] < 60), plain
    assert not list(owner.glob(".*"))  # no hidden work folder left behind


def test_pods_studio_task_lays_the_recording_out_in_one_mp4(
    tmp_path: Path, broker: redis.Redis, pod: StandInPod
) -> None:
    """Presentation full size, presenter in the top right (piph), cut by subtime."""
    folder = pod.media_root / "videos" / "owner" / "studio"
    folder.mkdir(parents=True)
    slides, camera = folder / "presentation.mp4", folder / "presenter.mp4"
    for path, colour, size in ((slides, "blue", "640x360"), (camera, "green", "320x240")):
        run_ffmpeg_cli(
            "-f", "lavfi", "-i", f"color=c={colour}:s={size}:r=25:d=4",
            "-f", "lavfi", "-i", "sine=f=440:sample_rate=48000:d=4",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac",
            "-shortest", str(path),
        )  # fmt: skip
    output = folder / "studio_5.mp4"
    videos = [
        {"type": "presenter/source", "src": str(camera)},
        {"type": "presentation/source", "src": str(slides)},
    ]
    stop = start_worker(tmp_path, pod, "encoding")
    try:
        pods_publisher("encoding_tasks", STUDIO, "encoding", BROKER).delay(
            5, str(output), videos, "-ss 1 -to 3 ", "piph"
        )
        wait_until(lambda: pod.studios.get(5), 120, "Pod's studio callback")
    finally:
        assert stop().returncode == 0
    assert pod.studios[5] == output
    track = read_video(output)
    assert (track.width, track.height) == (640, 360)
    assert track.duration == pytest.approx(2.0, abs=0.1)
    frame = first_frame(output)
    assert frame[55, 570][1] > 100 and frame[55, 570][2] < 80  # the presenter, green
    assert frame[300, 100][2] > 150 and frame[300, 100][1] < 100  # the slides, blue
    assert output.with_suffix(".log").is_file()
    assert not list(folder.glob(".*"))  # no partial file left


def test_a_file_that_is_not_a_video_is_reported_to_pod_as_pods_worker_does(
    tmp_path: Path, broker: redis.Redis, pod: StandInPod
) -> None:
    """Not retried, not silent: info_video.json says why, and Pod is called back."""
    owner = pod.media_root / "videos" / "owner"
    broken = owner / "broken.mp4"
    broken.write_bytes(b"this is not a video" * 100)
    pod.in_progress.add(9)
    stop = start_worker(tmp_path, pod, "encoding")
    try:
        pods_publisher("encoding_tasks", ENCODING, "encoding", BROKER).delay(9, str(broken), 0, 0)
        imported = wait_until(lambda: pod.encodings.get(9), 60, "Pod's callback")
    finally:
        assert stop().returncode == 0
    assert imported["files"] == {} and 9 not in pod.in_progress  # nothing to import, done
    info = json.loads((owner / "0009" / "info_video.json").read_text())
    assert info["error_encoding"] is True
    assert "not a media file" in info["encoding_log"]["vidfarm"]["msg"]
    assert len([c for c in pod.calls if "encoded_video" in c["path"]]) == 1  # not retried


def test_a_worker_killed_mid_encode_leaves_exactly_one_callback(
    tmp_path: Path, broker: redis.Redis, pod: StandInPod
) -> None:
    """Pod's own worker acknowledges first: killed mid-encode, the video stays "encoding"."""
    owner = pod.media_root / "videos" / "owner"
    source = owner / "long.mp4"
    run_ffmpeg_cli(*video_args("1280x720", 25, 12.0), str(source))
    pod.in_progress.add(7)
    first = start_worker(tmp_path, pod, "encoding", "--visibility-timeout", "6")
    try:
        pods_publisher("encoding_tasks", ENCODING, "encoding", BROKER).delay(7, str(source), 0, 0)
        wait_until(lambda: list(owner.glob("*.0007.vidfarm-*")), 60, "the encode under way")
    finally:
        first(signal.SIGKILL)
    assert pod.encodings == {}
    second = start_worker(tmp_path, pod, "encoding", "--visibility-timeout", "6")
    try:
        wait_until(lambda: pod.encodings.get(7), 180, "the encode, delivered again")
        time.sleep(8)  # past another visibility timeout: nothing is delivered a third time
    finally:
        assert second().returncode == 0
    calls = [c for c in pod.calls if c["path"].startswith("/rest/store_remote_encoded_video/")]
    assert len(calls) == 1, calls
    assert pod.encodings[7]["duration"] == 12
    assert not list(owner.glob(".*"))  # the killed attempt's folder is gone too


def test_pods_statements_queued_up_reach_the_lrs_in_batches(
    tmp_path: Path, broker: redis.Redis, pod: StandInPod, ralph: Any
) -> None:
    """Pod's URL form, Pod's messages published before any worker runs: few POSTs for many."""
    statements = [
        {
            "id": str(uuid.uuid4()),
            "actor": {"name": "anonymous", "mbox": "mailto:anon@pod.example"},
            "verb": {
                "id": "https://w3id.org/xapi/video/verbs/played",
                "display": {"en-US": "played"},
            },
            "object": {
                "id": f"https://pod.example/video/{n:04d}-lecture/",
                "objectType": "Activity",
            },
            "timestamp": "2026-12-01T10:00:00+00:00",
        }
        for n in range(40)
    ]
    publisher = pods_publisher("xapi_tasks", XAPI, "xapi", BROKER)
    for statement in statements:
        publisher.delay(statement)
    metrics_port = free_port()
    stop = start_worker(
        tmp_path,
        pod,
        "xapi",
        f"--metrics-port={metrics_port}",
        XAPI_LRS_URL=f"{ralph.url}/statements/",  # Pod's form: the statements resource itself
        XAPI_LRS_LOGIN=RALPH_USER,
        XAPI_LRS_PWD=RALPH_PASSWORD,
    )
    try:
        client = ralph.client()
        wait_until(
            lambda: all(client.get_statement(s["id"]) for s in statements),
            90,
            "the 40 statements in Ralph",
        )
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    finally:
        worker = stop()
    assert worker.returncode == 0
    posts = _metric(metrics, 'vidfarm_pod_xapi_posts_total{status="200"}')
    assert _metric(metrics, "vidfarm_pod_xapi_batch_statements_sum") == 40
    assert posts < 40 / 2, f"{posts} POSTs for 40 statements that queued up"
    stored = client.get_statement(statements[7]["id"])
    assert stored is not None and stored["object"]["id"] == statements[7]["object"]["id"]


def test_a_statement_the_lrs_did_not_take_waits_in_the_broker_then_arrives(
    tmp_path: Path, broker: redis.Redis, pod: StandInPod, lrs_factory: Callable[..., Any]
) -> None:
    """Wrong credentials at first (401): the message goes back to Redis, and is sent once fixed."""
    fixed = threading.Event()
    lrs = lrs_factory(lambda _s: 200 if fixed.is_set() else 401)
    statement = {
        "id": str(uuid.uuid4()),
        "actor": {"mbox": "mailto:anon@pod.example"},
        "verb": {"id": "https://w3id.org/xapi/video/verbs/paused"},
        "object": {"id": "https://pod.example/video/0001-x/", "objectType": "Activity"},
    }
    metrics_port = free_port()
    stop = start_worker(
        tmp_path,
        pod,
        "xapi",
        f"--metrics-port={metrics_port}",
        "--xapi-requeue-seconds=1",
        XAPI_LRS_URL=f"{lrs.url}/statements/",
        XAPI_LRS_LOGIN="pod",
        XAPI_LRS_PWD="wrong",
    )
    try:
        pods_publisher("xapi_tasks", XAPI, "xapi", BROKER).delay(statement)
        wait_until(lambda: lrs.batches, 60, "the first POST")
        fixed.set()  # the operator fixes the LRS account; the broker still holds the statement
        wait_until(lambda: statement["id"] in lrs.stored, 60, "the statement, sent again")
        metrics = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).text
    finally:
        worker = stop()
    assert worker.returncode == 0
    assert _metric(metrics, 'vidfarm_pod_tasks_total{outcome="retried",task="xapi"}') >= 1
    assert _metric(metrics, 'vidfarm_pod_tasks_total{outcome="done",task="xapi"}') == 1


def _metric(text: str, name: str) -> float:
    """One sample of Prometheus' text format."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in the metrics")


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
        [sys.executable, "-m", "vidfarm", "pod-worker", "--queues", "importing"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "'importing' is not a Pod queue" in refused.stderr

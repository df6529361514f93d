"""The control plane dispatching to HTTP runner managers (VIDFARM_DISPATCHER=runners).

Everything talks real HTTP on loopback. The control plane is the real application (Runtime +
create_app, served by uvicorn in a thread, its farm running). Happy paths use real
`vidfarm runner` processes (Role 1); the deliberately misbehaving peers (busy, bad sha256,
`../` paths, wrong tokens, failures) are small protocol-speaking FastAPI apps in this file —
real HTTP peers that encode for real with vidfarm's encoder when they succeed.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import av
import httpx
import m3u8
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from sqlalchemy import select

from fixtures_db import PG_HOST, PG_PORT, fresh_postgres_database
from fixtures_media import MakeMedia, video_args
from readback import audio_codec, read_video
from services import free_port, require_service
from vidfarm.api.app import create_app
from vidfarm.auth import Role, create_token
from vidfarm.config import Settings
from vidfarm.dispatch.runners.dispatcher import RunnersDispatcher
from vidfarm.media.encode import encode
from vidfarm.media.profiles import load_profile, profile_from_rendition_json
from vidfarm.media.tools import ffmpeg_executable
from vidfarm.models import Output, RunnerAssignment
from vidfarm.runtime import Runtime, open_runtime
from waiting import wait_until

VIDFARM = [sys.executable, "-m", "vidfarm"]
PROFILE = (
    'preset = "ultrafast"\nkeyframe_interval = 1\nsegment_duration = 2\n'
    '[[renditions]]\nheight = 180\nmin_video_bitrate = "200k"\nvideo_bitrate = "300k"\n'
    'max_video_bitrate = "400k"\naudio_bitrate = "64k"\nmp4 = true\n'
)
GOOD_TOKEN = "manager-token-0123456789abcdef"


class ServerThread:
    """An ASGI app served by uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: Any, port: int | None = None) -> None:
        self.port = port or free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerThread:
        self.thread.start()
        wait_until(lambda: self.server.started, 30, "uvicorn start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


# --- a runner manager speaking the protocol, misbehaving on demand ------------------------------


class FakeManager:
    """A runner manager on loopback. `mode` says how it behaves:

    ok (encode for real, notify), busy (503), silent (encode, never notify), hold (accept,
    do nothing), refuse_ip (422, as Esup-Runner refuses an IP-literal source_url), fail
    (report failed), bad_sha (a wrong sha256 in the manifest), traversal
    (a `../` path in it), wrong_notify_token (notify with a token that is not ours), esup
    (Esup-Runner's layout: single-file HLS variants, MP4s, info_video.json; no master, no
    manifest.json, a manifest of plain path strings).
    """

    def __init__(self, workdir: Path, *, token: str = GOOD_TOKEN, mode: str = "ok") -> None:
        self.workdir = workdir
        self.token = token
        self.mode = mode
        self.executes: list[dict[str, Any]] = []
        self.tasks: dict[str, dict[str, Any]] = {}
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.app = FastAPI()
        self._routes()
        self.server = ServerThread(self.app)

    @property
    def url(self) -> str:
        return self.server.url

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {self.token}"

    def _routes(self) -> None:
        app = self.app

        @app.post("/task/execute")
        async def execute(request: Request) -> JSONResponse:
            if not self._authorized(request):
                return JSONResponse({"detail": "Invalid token"}, status_code=401)
            body = await request.json()
            with self.lock:
                self.executes.append(body)
            if self.mode == "busy":
                return JSONResponse({"detail": "No runners available"}, status_code=503)
            if self.mode == "refuse_ip":  # Esup-Runner 1.7.1's answer to an IP-literal host
                detail = "source_url must not point to a private or reserved IP address"
                return JSONResponse({"detail": detail}, status_code=422)
            task_id = str(uuid.uuid4())
            self.tasks[task_id] = {"status": "running", "body": body, "files": {}}
            threading.Thread(target=self._run, args=(task_id,), daemon=True).start()
            return JSONResponse({"task_id": task_id, "status": "running"})

        @app.get("/task/status/{task_id}")
        def status(task_id: str, request: Request) -> JSONResponse:
            if not self._authorized(request):
                return JSONResponse({"detail": "Invalid token"}, status_code=401)
            self.hits["status"] += 1
            task = self.tasks.get(task_id)
            if task is None:
                return JSONResponse({"detail": "Task not found"}, status_code=404)
            answer = {"task_id": task_id, "status": task["status"]}
            if "progress" in task:
                answer["progress"] = task["progress"]
            if "error_message" in task:
                answer["error_message"] = task["error_message"]
            return JSONResponse(answer)

        @app.get("/task/result/{task_id}")
        def result(task_id: str, request: Request) -> JSONResponse:
            if not self._authorized(request):
                return JSONResponse({"detail": "Invalid token"}, status_code=401)
            task = self.tasks.get(task_id)
            if task is None:
                return JSONResponse({"detail": "Task not found"}, status_code=404)
            if task["status"] != "completed":
                return JSONResponse({"detail": "not finished"}, status_code=425)
            with self.lock:
                self.hits["manifest"] += 1
            return JSONResponse({"task_id": task_id, "files": task["manifest"]})

        @app.get("/task/result/{task_id}/file/{path:path}", response_model=None)
        def file(task_id: str, path: str, request: Request) -> Any:
            if not self._authorized(request):
                return JSONResponse({"detail": "Invalid token"}, status_code=401)
            with self.lock:
                self.hits[f"file:{path}"] += 1
            task = self.tasks.get(task_id)
            target = task["files"].get(path) if task else None
            if target is None:
                return JSONResponse({"detail": "no such file"}, status_code=404)
            return FileResponse(target)

        @app.post("/task/stop/{task_id}")
        def stop(task_id: str) -> JSONResponse:
            self.hits["stop"] += 1
            return JSONResponse({"status": "stop_requested"}, status_code=202)

        @app.get("/api/health")
        def health(request: Request) -> JSONResponse:
            if not self._authorized(request):
                return JSONResponse({"detail": "Invalid token"}, status_code=401)
            # Esup-Runner's own answer (manager/app/api/routes/manager.py): no task types.
            body = {"status": "healthy", "timestamp": datetime.now().isoformat(),
                    "runners": 1, "tasks": len(self.tasks)}  # fmt: skip
            return JSONResponse(body)

    def _run(self, task_id: str) -> None:
        task = self.tasks[task_id]
        body = task["body"]
        if self.mode == "hold":
            return
        if self.mode == "fail":
            # The error before the status: a status check in between (the reconciler asks
            # running tasks) must read it too, as Esup-Runner's /task/status gives it.
            task["error_message"] = "Invalid data found when processing input"
            task["status"] = "failed"
            self._notify(task_id, "failed", task["error_message"])
            return
        folder = self.workdir / task_id
        folder.mkdir(parents=True)
        source = folder / "source.mp4"
        with httpx.stream("GET", body["source_url"], timeout=30) as response:
            response.raise_for_status()
            with source.open("wb") as handle:
                for block in response.iter_bytes():
                    handle.write(block)
        base = load_profile("default").model_copy(update={"preset": "ultrafast"})
        profile = profile_from_rendition_json(body["parameters"]["rendition"], base)
        out = folder / "out"
        if self.mode == "esup":
            profile = profile.model_copy(update={"hls_single_file": True})
        encode(source, out, profile=profile, ffmpeg=ffmpeg_executable())
        if self.mode == "esup":  # what Esup-Runner 1.7.1 returns: Pod builds its own master
            (out / "manifest.json").unlink()
            (out / "master.m3u8").unlink()
            info = {"duration": 2, "has_stream_video": True, "has_stream_audio": True,
                    "encode_video": [{"filename": "180p.m3u8", "encoding_format": "video/mp2t",
                                      "rendition": "320x180"}]}  # fmt: skip
            (out / "info_video.json").write_text(json.dumps(info))
        files = {p.relative_to(out).as_posix(): p for p in sorted(out.rglob("*")) if p.is_file()}
        manifest: list[Any] = [
            {"file_path": name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
            for name, p in files.items()
        ]
        if self.mode == "esup":
            manifest = list(files)
        if self.mode == "bad_sha":
            manifest[0]["sha256"] = "0" * 64
        if self.mode == "traversal":
            escape = folder / "escape.txt"
            escape.write_text("outside")
            files["../escape.txt"] = escape
            manifest.append(
                {"file_path": "../escape.txt", "sha256": hashlib.sha256(b"outside").hexdigest()}
            )
        task.update(files=files, manifest=manifest, status="completed")
        if self.mode != "silent":
            self._notify(task_id, "completed", None)

    def _notify(self, task_id: str, status: str, error: str | None) -> None:
        token = "not-the-token" if self.mode == "wrong_notify_token" else self.token
        body = self.tasks[task_id]["body"]
        response = httpx.post(
            body["notify_url"],
            json={
                "task_id": task_id,
                "status": status,
                "error_message": error,
                "script_output": f"fake manager: {status}",
            },
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        with self.lock:
            self.hits[f"notify:{response.status_code}"] += 1


# --- the control plane --------------------------------------------------------------------------


class ControlPlane:
    """The real application, its farm dispatching to runner managers, on loopback."""

    def __init__(self, data_dir: Path, **overrides: Any) -> None:
        (data_dir / "profiles").mkdir(parents=True, exist_ok=True)
        (data_dir / "profiles" / "default.toml").write_text(PROFILE)
        port = free_port()
        options: dict[str, Any] = {
            "data_dir": data_dir,
            "dispatcher": "runners",
            "port": port,
            "runners_public_url": f"http://127.0.0.1:{port}",
            "runners_allow_private_urls": True,
            "runners_check_after_seconds": 30.0,
            "runners_request_timeout": 5.0,
            "runners_busy_seconds": 0.3,
            "runners_import_backoff_seconds": 0.01,
            "poll_seconds": 0.1,
            "retry_base_seconds": 0.1,
            "retry_max_seconds": 0.2,
            "max_attempts": 3,
            **overrides,
        }
        self.settings = Settings(**options)
        self.runtime: Runtime = open_runtime(self.settings)
        with self.runtime.sessions() as session:
            self.token, _ = create_token(session, role=Role.ADMIN, name="test admin")
        self.server = ServerThread(create_app(self.runtime), port=port)
        self.client = httpx.Client(
            base_url=self.server.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )

    @property
    def url(self) -> str:
        return self.server.url

    def add_runner(self, name: str, url: str, *, priority: int = 0, token: str = GOOD_TOKEN) -> str:
        response = self.client.post(
            "/api/v1/runners", json={"name": name, "url": url, "token": token, "priority": priority}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def upload(self, source: Path) -> str:
        with source.open("rb") as handle:
            response = self.client.post(
                "/videos/upload", files={"file": (source.name, handle, "video/mp4")}
            )
        assert response.status_code == 200, response.text
        return str(response.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.client.get(f"/api/v1/jobs/{job_id}")
        response.raise_for_status()
        return dict(response.json())

    def wait_job(
        self, job_id: str, statuses: tuple[str, ...], timeout: float = 60
    ) -> dict[str, Any]:
        found: dict[str, Any] = {}

        def reached() -> bool:
            found.update(self.job(job_id))
            return found["status"] in statuses

        try:
            wait_until(reached, timeout, f"job {job_id} in {statuses}")
        except AssertionError:
            raise AssertionError(f"job {job_id} never reached {statuses}: {found}") from None
        return found

    def assignments(self, job_id: str) -> list[RunnerAssignment]:
        with self.runtime.sessions() as session:
            return list(
                session.scalars(
                    select(RunnerAssignment)
                    .where(RunnerAssignment.job_id == job_id)
                    .order_by(RunnerAssignment.submitted_at)
                )
            )

    def outputs(self, job_id: str) -> list[Output]:
        with self.runtime.sessions() as session:
            return list(session.scalars(select(Output).where(Output.job_id == job_id)))

    def media(self, key: str) -> Path:
        return self.settings.media_dir / key

    def close(self) -> None:
        self.client.close()
        self.server.stop()
        self.runtime.engine.dispose()


@pytest.fixture
def clip(make_media: MakeMedia) -> Path:
    return make_media("runner-clip.mp4", *video_args("320x180", 25, 2.0))


@pytest.fixture
def plane_factory(tmp_path: Path) -> Iterator[Callable[..., ControlPlane]]:
    """Control planes on PostgreSQL (like the whole integration suite), a database each."""
    require_service("PostgreSQL", PG_HOST, PG_PORT)
    made: list[ControlPlane] = []
    with ExitStack() as databases:

        def make(**overrides: Any) -> ControlPlane:
            url = databases.enter_context(fresh_postgres_database("vidfarm_plane"))
            plane = ControlPlane(tmp_path / f"plane{len(made)}", database_url=url, **overrides)
            plane.server.start()
            made.append(plane)
            return plane

        yield make
        for plane in made:
            plane.close()


@pytest.fixture
def manager_factory(tmp_path: Path) -> Iterator[Callable[..., FakeManager]]:
    made: list[FakeManager] = []

    def make(**options: Any) -> FakeManager:
        manager = FakeManager(tmp_path / f"manager{len(made)}", **options)
        manager.server.start()
        made.append(manager)
        return manager

    yield make
    for manager in made:
        manager.server.stop()


def check_imported(plane: ControlPlane, job: dict[str, Any]) -> None:
    """The imported encode is served like a local one: master playlist, rendition, checksums."""
    outputs = plane.outputs(job["id"])
    kinds = {o.kind for o in outputs}
    assert {"hls_master", "hls_variant", "mp4"} <= kinds, kinds
    prefix = job["result"]["prefix"]
    for output in outputs:
        assert output.key.startswith(prefix + "/")
        data = plane.media(output.key).read_bytes()
        assert hashlib.sha256(data).hexdigest() == output.sha256
        assert len(data) == output.size
    video_id = job["video_id"]
    master = plane.client.get(f"/videos/stream/{video_id}/{job['id']}/master.m3u8")
    assert master.status_code == 200 and "#EXT-X-STREAM-INF" in master.text
    [mp4] = [o for o in outputs if o.kind == "mp4"]
    with av.open(str(plane.media(mp4.key))) as container:
        stream = container.streams.video[0]
        assert (stream.codec_context.width, stream.codec_context.height) == (320, 180)


# --- tests with misbehaving (and one well-behaved) loopback peers --------------------------------


def test_pod_shaped_request_import_and_source_url(
    plane_factory: Callable[..., ControlPlane],
    manager_factory: Callable[..., FakeManager],
    clip: Path,
) -> None:
    plane = plane_factory()
    manager = manager_factory()
    plane.add_runner("fake", manager.url)
    job_id = plane.upload(clip)
    job = plane.wait_job(job_id, ("completed", "failed"))
    assert job["status"] == "completed", job
    check_imported(plane, job)

    [body] = manager.executes
    assert set(body) == {
        "etab_name", "app_name", "app_version", "task_type", "source_url", "affiliation",
        "notify_url", "parameters",
    }  # fmt: skip
    assert body["app_name"] == "vidfarm" and body["task_type"] == "encoding"
    assert body["affiliation"] == "staff"
    assert body["notify_url"] == f"{plane.url}/runner/notify_task_end/"
    rendition = json.loads(body["parameters"]["rendition"])  # a JSON *string*, as Pod sends
    assert rendition["180"]["resolution"] == "320x180"
    assert rendition["180"]["video_bitrate"] == "300k"
    assert rendition["180"]["encode_mp4"] is True
    assert body["parameters"]["video_id"] == job["video_id"]
    # The source URL works without an API token while the task runs, never after,
    # and never with another secret.
    source = body["source_url"]
    assert httpx.get(source).status_code == 404  # the task has ended
    forged = source.rsplit("/", 2)[0] + "/" + "x" * 43 + "/" + source.rsplit("/", 1)[1]
    assert httpx.get(forged).status_code == 404
    [assignment] = plane.assignments(job_id)
    assert assignment.state == "completed" and assignment.import_state == "imported"
    assert assignment.source_secret_sha256 not in source  # only the hash is stored


def test_a_foreign_result_without_a_master_gets_one_and_plays(
    plane_factory: Callable[..., ControlPlane],
    manager_factory: Callable[..., FakeManager],
    clip: Path,
) -> None:
    """Esup-Runner returns variants, no master: the import writes one (measured BANDWIDTH,
    CODECS, RESOLUTION) and records what it probed, so /videos/status and players work."""
    plane = plane_factory()
    manager = manager_factory(mode="esup")
    plane.add_runner("esup", manager.url)
    job_id = plane.upload(clip)
    job = plane.wait_job(job_id, ("completed", "failed"))
    assert job["status"] == "completed", job
    task_files = next(iter(manager.tasks.values()))["files"]
    assert "master.m3u8" not in task_files and "manifest.json" not in task_files
    assert "180p.ts" in task_files and not [f for f in task_files if f.endswith("_00000.ts")]
    check_imported(plane, job)
    outputs = {o.key.rsplit("/", 1)[1]: o for o in plane.outputs(job_id)}
    variant, mp4 = outputs["180p.m3u8"], outputs["180p.mp4"]
    assert (variant.width, variant.height) == (mp4.width, mp4.height) == (320, 180)
    assert variant.codecs and variant.codecs.startswith("avc1.") and "mp4a.40.2" in variant.codecs
    assert variant.bandwidth and outputs["master.m3u8"].bandwidth == variant.bandwidth

    video_id = job["video_id"]
    status = plane.client.get(f"/videos/status/{video_id}", params={"format": "hls"})
    assert status.status_code == 200 and status.json()["status"] == "completed", status.text
    assert status.json()["output_name"].endswith(".m3u8")
    master_url = f"/videos/stream/{video_id}/{job_id}/master.m3u8"
    master = m3u8.loads(plane.client.get(master_url).text)
    [entry] = master.playlists
    assert entry.uri == "180p.m3u8" and entry.stream_info.resolution == (320, 180)
    assert entry.stream_info.bandwidth == variant.bandwidth
    assert entry.stream_info.codecs == variant.codecs
    playlist_url = f"/videos/stream/{video_id}/{job_id}/{entry.uri}"
    playlist = m3u8.loads(plane.client.get(playlist_url).text)
    assert playlist.segments and all(s.byterange for s in playlist.segments)
    length, _, offset = playlist.segments[-1].byterange.partition("@")
    ranged = plane.client.get(
        f"/videos/stream/{video_id}/{job_id}/180p.ts",
        headers={"Range": f"bytes={offset}-{int(offset) + int(length) - 1}"},
    )
    assert ranged.status_code == 206 and len(ranged.content) == int(length)
    assert ranged.content[0] == 0x47  # an MPEG-TS packet starts the byte range


def test_busy_manager_is_skipped_lower_priority_first(
    plane_factory: Callable[..., ControlPlane],
    manager_factory: Callable[..., FakeManager],
    clip: Path,
) -> None:
    plane = plane_factory()
    busy = manager_factory(mode="busy")
    good = manager_factory()
    plane.add_runner("busy", busy.url, priority=0)
    plane.add_runner("good", good.url, priority=5)
    job = plane.wait_job(plane.upload(clip), ("completed", "failed"))
    assert job["status"] == "completed", job
    assert len(busy.executes) >= 1 and len(good.executes) == 1
    [assignment] = plane.assignments(job["id"])
    assert assignment.task_id in good.tasks


def test_no_manager_accepts_job_stays_pending_with_rank(
    plane_factory: Callable[..., ControlPlane],
    manager_factory: Callable[..., FakeManager],
    clip: Path,
) -> None:
    plane = plane_factory()
    busy = manager_factory(mode="busy")
    plane.add_runner("busy", busy.url)
    job_id = plane.upload(clip)
    wait_until(lambda: len(busy.executes) >= 2, 10, "two offers")
    job = wait_until(lambda: (j := plane.job(job_id))["status"] == "pending" and j, 5, "pending")
    assert job["rank"] == 1 and job["attempts"] == 0, job
    assert plane.assignments(job_id) == []


def test_a_managers_refusal_shows_on_the_job_and_ends_it_after_a_few_passes(
    plane_factory: Callable[..., ControlPlane],
    manager_factory: Callable[..., FakeManager],
    clip: Path,
) -> None:
    # Refusals back off like retries (0.5-1 s, then 1-2 s): time to read the reason.
    plane = plane_factory(runners_max_refusals=3, retry_base_seconds=1.0, retry_max_seconds=4.0)
    refusing = manager_factory(mode="refuse_ip")
    plane.add_runner("esup", refusing.url)
    job_id = plane.upload(clip)

    def waiting_with_reason() -> dict[str, Any] | None:
        job = plane.job(job_id)
        return job if job["status"] == "pending" and job["error"] else None

    job = wait_until(waiting_with_reason, 20, "the refusal on the pending job")
    assert "HTTP 422" in job["error"] and "private or reserved IP" in job["error"], job
    assert "of 3 times" in job["error"] and job["rank"] == 1, job
    job = plane.wait_job(job_id, ("failed", "completed"))
    assert job["status"] == "failed", job
    assert "refused 3 times" in job["error"] and job["error_class"] == "RunnerTaskFailed", job
    assert len(refusing.executes) == 3  # not offered forever
    time.sleep(1.0)  # several scheduler ticks (poll 0.1 s): a failed job is not offered again
    assert len(refusing.executes) == 3


def test_a_refusing_manager_does_not_keep_a_job_from_another(
    plane_factory: Callable[..., ControlPlane],
    manager_factory: Callable[..., FakeManager],
    clip: Path,
) -> None:
    plane = plane_factory()
    refusing = manager_factory(mode="refuse_ip")
    good = manager_factory()
    plane.add_runner("refusing", refusing.url, priority=0)
    plane.add_runner("good", good.url, priority=5)
    job = plane.wait_job(plane.upload(clip), ("completed", "failed"))
    assert job["status"] == "completed" and job["error"] is None, job
    assert len(refusing.executes) == 1 and len(good.executes) == 1


def test_webhook_semantics(
    plane_factory: Callable[..., ControlPlane],
    manager_factory: Callable[..., FakeManager],
    clip: Path,
) -> None:
    plane = plane_factory()
    manager = manager_factory(mode="silent")
    plane.add_runner("fake", manager.url)
    job_id = plane.upload(clip)
    wait_until(lambda: manager.tasks, 10, "a task")
    [task_id] = manager.tasks
    hook = f"{plane.url}/runner/notify_task_end/"
    body = {"task_id": task_id, "status": "running"}
    bearer = {"Authorization": f"Bearer {GOOD_TOKEN}"}
    assert httpx.post(hook, content=json.dumps(body), headers=bearer).status_code == 415
    assert httpx.post(hook, json=body).status_code == 401
    assert httpx.post(hook, json=body, headers={"Authorization": "Token x"}).status_code == 401
    unknown = {"task_id": "no-such-task", "status": "completed"}
    assert httpx.post(hook, json=unknown, headers=bearer).status_code == 404
    wrong = {"Authorization": f"Bearer {GOOD_TOKEN}x"}
    assert httpx.post(hook, json=body, headers=wrong).status_code == 403
    bad = httpx.post(
        hook, content=b"{not json", headers={**bearer, "Content-Type": "application/json"}
    )
    assert bad.status_code == 400
    assert httpx.post(hook, json={"status": "completed"}, headers=bearer).status_code == 400
    json_headers = {**bearer, "Content-Type": "application/json"}
    # Nested past the parser's recursion limit, or deep enough to exhaust a later dump: 400.
    for deep in (
        b"[" * 100_000 + b"]" * 100_000,
        b'{"task_id": "%s", "status": "completed", "script_output": %s}'
        % (task_id.encode(), b"[" * 900 + b"]" * 900),
    ):
        nested = httpx.post(hook, content=deep, headers=json_headers)
        assert nested.status_code == 400, nested.text
        assert nested.json() == {"detail": "the body nests deeper than 32 levels"}
    huge = b'{"task_id": "' + b"x" * (2 << 20) + b'"}'
    assert httpx.post(hook, content=huge, headers=json_headers).status_code == 413

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
        yield b'{"task_id": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    assert httpx.post(hook, content=chunked(), headers=json_headers).status_code == 413
    assert plane.job(job_id)["status"] == "running"  # nothing of the above changed it
    wait_until(lambda: manager.tasks[task_id]["status"] == "completed", 30, "the encode")
    ok = httpx.post(hook, json={**body, "status": "completed"}, headers=bearer)
    assert ok.status_code == 200 and ok.json() == {"status": "OK"}
    job = plane.wait_job(job_id, ("completed", "failed"))
    assert job["status"] == "completed"
    check_imported(plane, job)


def test_cancel_stops_the_task_and_a_late_result_is_ignored(
    plane_factory: Callable[..., ControlPlane],
    manager_factory: Callable[..., FakeManager],
    clip: Path,
) -> None:
    plane = plane_factory()
    manager = manager_factory(mode="hold")
    plane.add_runner("fake", manager.url)
    job_id = plane.upload(clip)
    wait_until(lambda: [a for a in plane.assignments(job_id) if a.fencing_token], 10, "the task")
    assert plane.client.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
    wait_until(lambda: manager.hits["stop"] == 1, 10, "POST /task/stop")
    [assignment] = plane.assignments(job_id)
    assert assignment.state == "abandoned"
    late = httpx.post(
        f"{plane.url}/runner/notify_task_end/",
        json={"task_id": assignment.task_id, "status": "completed"},
        headers={"Authorization": f"Bearer {GOOD_TOKEN}"},
    )
    assert late.status_code == 200
    time.sleep(0.3)
    assert plane.job(job_id)["status"] == "cancelled"
    assert manager.hits["manifest"] == 0 and plane.outputs(job_id) == []


def test_a_stop_the_manager_missed_is_sent_again_when_it_is_back(
    plane_factory: Callable[..., ControlPlane],
    manager_factory: Callable[..., FakeManager],
    clip: Path,
) -> None:
    """A manager down when its task is abandoned would encode it to the end on restart."""
    plane = plane_factory(runners_check_after_seconds=1.0)
    manager = manager_factory(mode="hold")
    plane.add_runner("fake", manager.url)
    job_id = plane.upload(clip)
    wait_until(lambda: [a for a in plane.assignments(job_id) if a.fencing_token], 10, "the task")
    [task] = manager.tasks.values()
    task["progress"] = 37.5  # the manager's progress reaches the job (Pod showed 0 % to the end)
    wait_until(lambda: plane.job(job_id)["progress"] == 37.5, 10, "the relayed progress")
    port = manager.server.port
    manager.server.stop()
    assert plane.client.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 200
    [owed] = wait_until(
        lambda: [a for a in plane.assignments(job_id) if a.state == "abandoned"], 20, "abandoned"
    )
    assert owed.next_check_at is not None and manager.hits["stop"] == 0  # owed, not taken
    manager.server = ServerThread(manager.app, port=port).start()
    wait_until(lambda: manager.hits["stop"] >= 1, 20, "the stop, sent again")
    wait_until(lambda: plane.assignments(job_id)[0].next_check_at is None, 10, "settled")
    stops = manager.hits["stop"]
    time.sleep(3.0)  # three status periods: a settled stop is not sent again
    assert manager.hits["stop"] == stops
    assert plane.job(job_id)["status"] == "cancelled"


def test_wrong_token_both_ways(
    plane_factory: Callable[..., ControlPlane],
    manager_factory: Callable[..., FakeManager],
    clip: Path,
) -> None:
    plane = plane_factory()
    manager = manager_factory(mode="wrong_notify_token")
    runner_id = plane.add_runner("fake", manager.url, token="not-what-the-manager-wants")
    test = plane.client.post(f"/api/v1/runners/{runner_id}/test").json()
    assert test["ok"] is False and test["status_code"] == 401 and "token" in test["message"]
    job_id = plane.upload(clip)
    time.sleep(1.0)  # a few offers, each refused with 401 before the manager records it
    assert manager.executes == []
    wait_until(lambda: plane.job(job_id)["status"] == "pending", 5, "back to pending")
    # Fix our side's token: the job goes, but the manager's webhook has the wrong token.
    patched = plane.client.patch(f"/api/v1/runners/{runner_id}", json={"token": GOOD_TOKEN})
    assert patched.status_code == 200 and "token" not in patched.json()
    assert plane.client.post(f"/api/v1/runners/{runner_id}/test").json()["ok"] is True
    wait_until(lambda: manager.hits["notify:403"] == 1, 30, "the refused webhook")
    assert plane.job(job_id)["status"] == "running"


@pytest.mark.parametrize("mode", ["bad_sha", "traversal"])
def test_unsafe_result_is_refused(
    mode: str,
    plane_factory: Callable[..., ControlPlane],
    manager_factory: Callable[..., FakeManager],
    clip: Path,
) -> None:
    plane = plane_factory(max_attempts=1)
    manager = manager_factory(mode=mode)
    plane.add_runner("fake", manager.url)
    job = plane.wait_job(plane.upload(clip), ("completed", "failed"))
    assert job["status"] == "failed"
    expected = "sha256 mismatch" if mode == "bad_sha" else "escapes the result folder"
    assert expected in job["error"], job["error"]
    assert plane.outputs(job["id"]) == []
    assert not (plane.settings.media_dir / "videos" / job["video_id"] / job["id"]).exists()
    assert not list((plane.settings.data_dir / "work").glob("runner-*"))
    [assignment] = plane.assignments(job["id"])
    assert assignment.import_state == "failed"
    if mode == "traversal":
        assert manager.hits["file:../escape.txt"] == 0  # refused before any download
        assert not any(key.startswith("file:") for key in manager.hits)
    else:
        assert (
            manager.hits["file:" + manager.tasks[assignment.task_id]["manifest"][0]["file_path"]]
            == 5
        )


def test_runner_failure_is_permanent_then_restart_works(
    plane_factory: Callable[..., ControlPlane],
    manager_factory: Callable[..., FakeManager],
    clip: Path,
) -> None:
    plane = plane_factory()
    manager = manager_factory(mode="fail")
    plane.add_runner("fake", manager.url)
    job = plane.wait_job(plane.upload(clip), ("completed", "failed"))
    assert job["status"] == "failed" and job["attempts"] == 1  # permanent: not retried
    assert "Invalid data found" in job["error"] and job["error_class"] == "RunnerTaskFailed"
    manager.mode = "ok"
    restarted = plane.client.post(f"/api/v1/jobs/{job['id']}/restart")
    assert restarted.status_code == 200, restarted.text
    job = plane.wait_job(job["id"], ("completed", "failed"))
    assert job["status"] == "completed"
    check_imported(plane, job)
    assert [a.state for a in plane.assignments(job["id"])] == ["failed", "completed"]


def test_webhook_and_reconciler_racing_import_once(
    plane_factory: Callable[..., ControlPlane],
    manager_factory: Callable[..., FakeManager],
    clip: Path,
) -> None:
    plane = plane_factory()
    manager = manager_factory(mode="silent")
    plane.add_runner("fake", manager.url)
    job_id = plane.upload(clip)
    wait_until(lambda: manager.tasks, 10, "a task")
    [task_id] = manager.tasks
    wait_until(lambda: manager.tasks[task_id]["status"] == "completed", 30, "the encode")
    # Now, all at once: the webhook (twice), and reconcilers of two more processes' kind.
    others = [RunnersDispatcher(plane.runtime.sessions, plane.settings, plane.runtime.storage)]
    hook = f"{plane.url}/runner/notify_task_end/"
    body = {"task_id": task_id, "status": "completed"}
    headers = {"Authorization": f"Bearer {GOOD_TOKEN}"}
    barrier = threading.Barrier(5)
    answers: list[int] = []

    def webhook() -> None:
        barrier.wait()
        answers.append(httpx.post(hook, json=body, headers=headers).status_code)

    def reconciler() -> None:
        barrier.wait()
        # As if run long after the task went quiet: its status check is due.
        others[0].reconcile(datetime.now(UTC) + timedelta(minutes=5))

    threads = [threading.Thread(target=webhook) for _ in range(2)]
    threads += [threading.Thread(target=reconciler) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    job = plane.wait_job(job_id, ("completed", "failed"))
    assert job["status"] == "completed" and answers == [200, 200]
    files = manager.tasks[task_id]["files"]
    assert all(manager.hits[f"file:{name}"] == 1 for name in files), manager.hits
    assert manager.hits["manifest"] == 1
    [assignment] = plane.assignments(job_id)
    assert assignment.import_state == "imported"
    check_imported(plane, job)


# --- real `vidfarm runner` processes (Role 1) ---------------------------------------------------


class RunnerProcess:
    """`vidfarm runner` on a free port with its own data folder and the fast profile."""

    def __init__(self, data_dir: Path, database_url: str, token: str = GOOD_TOKEN) -> None:
        (data_dir / "profiles").mkdir(parents=True, exist_ok=True)
        (data_dir / "profiles" / "default.toml").write_text(PROFILE)
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {
            **os.environ,
            "VIDFARM_DATA_DIR": str(data_dir),
            "VIDFARM_DATABASE_URL": database_url,
            "VIDFARM_PORT": str(self.port),
            "VIDFARM_RUNNER_TOKENS": token,
            "VIDFARM_RUNNER_CAPACITY": "1",
            "VIDFARM_RUNNER_ALLOW_PRIVATE_URLS": "true",
            "VIDFARM_RUNNER_NOTIFY_BACKOFF": "0.2",
            "VIDFARM_POLL_SECONDS": "0.1",
            "VIDFARM_DISPATCHER": "local",
        }
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RunnerProcess:
        log = (self.data_dir / "runner.log").open("ab")
        self.process = subprocess.Popen(
            [*VIDFARM, "runner"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        return self

    def wait_ready(self) -> None:
        def up() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log()
            try:
                return httpx.get(f"{self.url}/api/health").status_code < 500
            except httpx.TransportError:
                return False

        wait_until(up, 60, "vidfarm runner")

    def log(self) -> str:
        path = self.data_dir / "runner.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)


@pytest.fixture
def runner_processes(tmp_path: Path) -> Iterator[Callable[[int], list[RunnerProcess]]]:
    made: list[RunnerProcess] = []
    with ExitStack() as databases:  # each runner is its own instance, with its own database

        def make(count: int) -> list[RunnerProcess]:
            batch = [
                RunnerProcess(
                    tmp_path / f"runner{len(made) + i}",
                    databases.enter_context(fresh_postgres_database("vidfarm_runner")),
                ).start()
                for i in range(count)
            ]
            for runner in batch:
                runner.wait_ready()
            made.extend(batch)
            return batch

        yield make
        for runner in made:
            runner.kill()


def test_real_runners_priority_round_robin_and_failover(
    plane_factory: Callable[..., ControlPlane],
    runner_processes: Callable[[int], list[RunnerProcess]],
    clip: Path,
    make_media: MakeMedia,
) -> None:
    # News every 3 s, lease 9 s: a loaded CI machine (two test processes) once let a 2 s lease
    # lapse between two status answers, and the surviving runner's attempt was retried too.
    # After the plane starts it reclaims nothing for one such lease (scheduler.OutageGrace).
    plane = plane_factory(runners_check_after_seconds=3.0)
    first, second = runner_processes(2)
    plane.add_runner("first", first.url, priority=1)
    plane.add_runner("second", second.url, priority=1)
    # Two jobs at once spread over both runners (equal priority: they take turns).
    jobs_ = [plane.upload(clip), plane.upload(clip)]
    done = [plane.wait_job(j, ("completed", "failed"), 90) for j in jobs_]
    assert [j["status"] for j in done] == ["completed", "completed"], done
    owners = {plane.assignments(j)[0].manager_id for j in jobs_}
    assert len(owners) == 2
    for job in done:
        check_imported(plane, job)
    # A longer job; its runner is killed in the middle: it fails over and completes once.
    long_clip = make_media("runner-long.mp4", *video_args("320x180", 25, 20.0))
    job_id = plane.upload(long_clip)
    running = wait_until(
        lambda: [a for a in plane.assignments(job_id) if a.state == "running" and a.fencing_token],
        30,
        "the long job on a runner",
    )
    ids = {
        runner_id["name"]: runner_id["id"]
        for runner_id in plane.client.get("/api/v1/runners").json()
    }
    victim = first if running[0].manager_id == ids["first"] else second
    time.sleep(0.5)
    victim.kill()
    job = plane.wait_job(job_id, ("completed", "failed"), 120)
    assert job["status"] == "completed", job
    assignments = plane.assignments(job_id)
    assert [a.state for a in assignments] == ["abandoned", "completed"]
    assert assignments[1].manager_id != assignments[0].manager_id
    assert job["attempts"] == 2
    check_imported(plane, job)
    base = plane.settings.media_dir / "videos" / job["video_id"] / job_id
    assert sorted(p.name for p in base.iterdir()) == [f"a{assignments[1].fencing_token}"]


def test_an_encode_and_its_transcription_both_run_on_a_runner_and_are_served(
    plane_factory: Callable[..., ControlPlane],
    runner_processes: Callable[[int], list[RunnerProcess]],
    speech_clip: Path,
) -> None:
    plane = plane_factory()
    (runner,) = runner_processes(1)
    plane.add_runner("only", runner.url)
    with speech_clip.open("rb") as handle:
        response = plane.client.post(
            "/videos/upload", params={"language": "en"}, files={"file": ("talk.mkv", handle)}
        )
    assert response.status_code == 200, response.text
    video_id, encode_id = response.json()["file_id"], response.json()["job_id"]
    assert plane.wait_job(encode_id, ("completed", "failed"), 90)["status"] == "completed"
    listed = plane.client.get(
        "/api/v1/jobs", params={"video_id": video_id, "type": "transcription"}
    ).json()["items"]
    (transcription,) = listed
    done = plane.wait_job(transcription["id"], ("completed", "failed"), 120)
    assert done["status"] == "completed", done
    assert [a.state for a in plane.assignments(transcription["id"])] == ["completed"]
    (subtitle,) = [o for o in plane.outputs(transcription["id"]) if o.kind == "subtitle"]
    vtt = plane.media(subtitle.key).read_text()
    assert vtt.startswith("WEBVTT") and " --> " in vtt
    assert hashlib.sha256(vtt.encode()).hexdigest() == subtitle.sha256
    master = plane.client.get(f"/videos/stream/{video_id}/{encode_id}/master.m3u8").text
    assert "TYPE=SUBTITLES" in master and 'LANGUAGE="en"' in master


TWO_RUNGS = PROFILE + (
    '[[renditions]]\nheight = 144\nmin_video_bitrate = "100k"\nvideo_bitrate = "150k"\n'
    'max_video_bitrate = "200k"\naudio_bitrate = "64k"\nmp4 = true\n'
)


def announced(plane: ControlPlane) -> dict[str, list[str]]:
    return {m["name"]: m["task_types"] for m in plane.client.get("/api/v1/runners").json()}


def test_vidfarm_runners_take_chunks_and_a_foreign_runner_whole_videos(
    plane_factory: Callable[..., ControlPlane],
    runner_processes: Callable[[int], list[RunnerProcess]],
    manager_factory: Callable[..., FakeManager],
    make_media: MakeMedia,
) -> None:
    """Issue 17: with VIDFARM_DISPATCHER=runners, `vidfarm runner` managers take a long
    encode's chunks and its stitch; a foreign Esup-Runner (it announces no task types) is
    never offered them, and gets whole videos."""
    plane = plane_factory(chunk_seconds=4.0, chunk_min_seconds=6.0, runners_check_after_seconds=3.0)
    # The plane's profile (two rungs) is not the runners' own (one): the chunks and the
    # stitch must follow the plane's, whoever runs them.
    (plane.settings.data_dir / "profiles" / "default.toml").write_text(TWO_RUNGS)
    lecture = make_media("runner-lecture.mp4", *video_args("320x180", 25, 12.0))
    foreign = manager_factory()
    plane.add_runner("foreign", foreign.url, priority=0)  # asked first for what it can run
    wait_until(lambda: "foreign" in announced(plane), 10, "the foreign manager listed")

    # Only a foreign manager: the long video is one whole encode, sent to it.
    whole_id = plane.upload(lecture)
    whole = plane.wait_job(whole_id, ("completed", "failed"), 90)
    assert whole["status"] == "completed", whole
    assert not whole.get("chunks") and "chunks" not in whole["result"]
    assert [body["task_type"] for body in foreign.executes] == ["encoding"]

    first, second = runner_processes(2)
    plane.add_runner("first", first.url, priority=1)
    plane.add_runner("second", second.url, priority=1)
    chunk_types = ["vidfarm_encode_chunk", "vidfarm_stitch"]
    wait_until(
        lambda: all(set(chunk_types) <= set(announced(plane)[n]) for n in ("first", "second")),
        30,
        "the vidfarm runners' task types learnt from their health answers",
    )
    assert announced(plane)["foreign"] == []

    encode_id = plane.upload(lecture)
    video_id = plane.job(encode_id)["video_id"]
    early: list[tuple[m3u8.M3U8, str]] = []  # (EVENT variant, codecs of its first segment)

    def played_early_or_done() -> bool:
        """Plays before the stitch, from the chunks imported so far (playable early)."""
        links = plane.client.get(f"/api/v1/videos/{video_id}/playback").json()
        if links.get("event") and not early:
            master = m3u8.loads(plane.client.get(links["master"]).text)
            variant_url = urljoin(links["master"], master.playlists[0].uri)
            variant = m3u8.loads(plane.client.get(variant_url).text)
            if variant.segments and not variant.is_endlist:  # not the final one meanwhile
                data = plane.client.get(urljoin(variant_url, variant.segments[0].uri)).content
                segment = plane.settings.data_dir / "early.ts"
                segment.write_bytes(data)
                with av.open(str(segment)) as container:
                    kinds = sorted(s.type for s in container.streams)
                early.append((variant, ",".join(kinds)))
        return plane.job(encode_id)["status"] in ("completed", "failed")

    wait_until(played_early_or_done, 240, "the chunked encode on the runners", interval=0.05)
    encode = plane.job(encode_id)
    assert encode["status"] == "completed", encode
    ((variant, kinds),) = early  # the window (a chunk in, not yet stitched) lasts seconds
    assert variant.playlist_type == "event" and not variant.is_endlist
    assert variant.segments[0].uri.startswith("../") and "preview_" in variant.segments[0].uri
    assert kinds == "audio,video"
    children = encode["chunks"]
    assert [(c["type"], c["start"], c["end"]) for c in children] == [
        ("encode_chunk", 0, 4), ("encode_chunk", 4, 8), ("encode_chunk", 8, 12),
        ("stitch", None, None),
    ]  # fmt: skip
    ids = {m["name"]: m["id"] for m in plane.client.get("/api/v1/runners").json()}
    ran_on = {}
    for child in children:
        (assignment,) = [a for a in plane.assignments(child["id"]) if a.state == "completed"]
        ran_on[child["id"]] = assignment.manager_id
        assert assignment.task_type == f"vidfarm_{child['type']}"
    assert set(ran_on.values()) <= {ids["first"], ids["second"]}
    assert {ran_on[c["id"]] for c in children[:3]} == {ids["first"], ids["second"]}  # shared
    assert [body["task_type"] for body in foreign.executes] == ["encoding"]  # nothing more
    for child in children[:3]:  # each chunk's preview came home with it (playable early)
        result = plane.job(child["id"])["result"]
        previews = [name for name in result["files"] if name.startswith("preview_")]
        assert previews and result["preview"] and result["runner"]["files"] > len(previews)

    # The stitched encode, read back: both rungs of the plane's profile, 12 s, 300 frames,
    # a keyframe every second (the plane's grid), 2 s HLS segments each opening on a keyframe.
    assert [c["start"] for c in encode["result"]["chunks"]] == [0, 4, 8]
    outputs = plane.outputs(encode_id)
    mp4s = sorted((o for o in outputs if o.kind == "mp4"), key=lambda o: o.height or 0)
    assert [o.height for o in mp4s] == [144, 180]
    for output in outputs:
        data = plane.media(output.key).read_bytes()
        assert hashlib.sha256(data).hexdigest() == output.sha256
    for mp4 in mp4s:
        track = read_video(plane.media(mp4.key))
        assert track.frames == 300 and abs(track.duration - 12.0) < 0.04
        assert [float(k) for k in track.keyframes] == [float(n) for n in range(12)]
        assert audio_codec(plane.media(mp4.key)) == "aac"
    base = f"/videos/stream/{video_id}/{encode_id}"
    master = m3u8.loads(plane.client.get(f"{base}/master.m3u8").text)
    assert len(master.playlists) == 2
    for variant in master.playlists:
        playlist = m3u8.loads(plane.client.get(f"{base}/{variant.uri}").text)
        assert [round(s.duration, 2) for s in playlist.segments] == [2.0] * 6
        assert playlist.is_endlist
        for segment in playlist.segments:
            local = plane.media(f"{encode['result']['prefix']}/{segment.uri}")
            assert read_video(local).keyframes[0] == 0  # each segment opens on a keyframe
    # The chunks' files went once the stitch was imported: on the plane and on the runner.
    for child in children[:3]:
        folder = plane.settings.media_dir / "videos" / video_id / child["id"]
        assert not [p for p in folder.rglob("*") if p.is_file()], child
    for runner in (first, second):
        leftovers = (runner.data_dir / "media" / "sources").glob("*/chunks/**/*")
        assert not [p for p in leftovers if p.is_file()]

"""The HTTP API end to end: upload -> encode -> stream, the seed contract, errors, auth."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import m3u8
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from fixtures_media import MakeMedia, video_args
from fixtures_s3 import S3_ACCESS_KEY, S3_SECRET_KEY
from readback import read_video
from vidfarm.api.app import create_app
from vidfarm.auth import Role, create_token
from vidfarm.config import Settings
from vidfarm.models import Video
from vidfarm.runtime import Runtime, open_runtime

TINY_PROFILE = (
    'preset = "ultrafast"\n[[renditions]]\nheight = 180\nmin_video_bitrate = "200k"\n'
    'video_bitrate = "300k"\nmax_video_bitrate = "400k"\naudio_bitrate = "64k"\nmp4 = true\n'
    '[[renditions]]\nheight = 360\nmin_video_bitrate = "500k"\nvideo_bitrate = "750k"\n'
    'max_video_bitrate = "1000k"\naudio_bitrate = "96k"\nmp4 = false\n'
)


@dataclass
class Api:
    client: TestClient
    runtime: Runtime
    tokens: dict[str, str]

    def headers(self, role: str = "user") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"}

    def get(self, url: str, role: str = "user", **kwargs: Any) -> Any:
        return self.client.get(
            url, headers={**self.headers(role), **kwargs.pop("headers", {})}, **kwargs
        )

    def post(self, url: str, role: str = "user", **kwargs: Any) -> Any:
        headers = {**self.headers(role), **kwargs.pop("headers", {})}
        return self.client.post(url, headers=headers, **kwargs)

    def fetch(self, url: str) -> Any:
        """GET as a player would: follow redirects, to the object store too."""
        response = self.get(url, follow_redirects=False)
        while response.status_code in (302, 307):
            location = response.headers["location"]
            if location.startswith("http"):
                return httpx.get(location)
            response = self.get(location, follow_redirects=False)
        return response

    def upload(self, path: Path, role: str = "user") -> Any:
        with path.open("rb") as handle:
            return self.post("/videos/upload", role, files={"file": (path.name, handle)})

    def wait_task(self, task_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            body = dict(self.get(f"/videos/task/{task_id}").json())
            if body["state"] in ("SUCCESS", "FAILURE"):
                return body
            time.sleep(0.1)
        raise AssertionError(f"task {task_id} did not finish")


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    profiles = tmp_path / "profiles"
    profiles.mkdir(exist_ok=True)
    (profiles / "tiny.toml").write_text(TINY_PROFILE)
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "profiles_dir": profiles,
        "default_profile": "tiny",
        "lease_seconds": 5,
        "poll_seconds": 0.1,
        "retry_base_seconds": 0.1,
        "retry_max_seconds": 0.2,
        "max_upload_bytes": 64 * 1024 * 1024,
    }
    return Settings(**{**values, **overrides})


@pytest.fixture(params=["local", "s3"])
def api_settings(request: pytest.FixtureRequest, tmp_path: Path, pg_database: str) -> Settings:
    """The API runs on a local media folder, and again on S3 (moto's real HTTP server)."""
    if request.param == "local":
        return make_settings(tmp_path, database_url=pg_database)
    endpoint = request.getfixturevalue("s3_endpoint")
    return make_settings(
        tmp_path,
        database_url=pg_database,
        storage="s3",
        s3_endpoint_url=endpoint,
        s3_bucket=f"vidfarm-api-{uuid.uuid4().hex[:12]}",
        s3_access_key_id=S3_ACCESS_KEY,
        s3_secret_access_key=S3_SECRET_KEY,
    )


@pytest.fixture
def local_settings(tmp_path: Path, pg_database: str) -> Settings:
    return make_settings(tmp_path, database_url=pg_database)


def start_api(settings: Settings) -> tuple[TestClient, Api]:
    runtime = open_runtime(settings)
    tokens = {}
    with runtime.sessions() as session:
        for role in Role:
            tokens[role.value], _ = create_token(session, role=role, name=f"test {role}")
    client = TestClient(create_app(runtime))
    return client, Api(client=client, runtime=runtime, tokens=tokens)


@pytest.fixture
def api(local_settings: Settings) -> Iterator[Api]:
    """The API on local storage: most behaviour does not depend on the store."""
    client, api = start_api(local_settings)
    with client:
        yield api
    api.runtime.engine.dispose()


@pytest.fixture
def any_api(api_settings: Settings) -> Iterator[Api]:
    """The API once per storage backend."""
    client, api = start_api(api_settings)
    with client:
        yield api
    api.runtime.engine.dispose()


def test_upload_encode_stream_through_the_seed_contract(any_api: Api, small_clip: Path) -> None:
    api = any_api
    response = api.upload(small_clip)
    assert response.status_code == 200, response.text
    body = response.json()
    file_id = body["file_id"]
    assert body["filename"] == f"{file_id}.mp4"
    assert body["message"] == "Video uploaded successfully"
    task = api.wait_task(body["job_id"])
    assert (task["state"], task["status"], task["progress"]) == ("SUCCESS", "completed", 100)
    assert task["result"]["output_name"] == f"{file_id}_transcoded.m3u8"

    status = api.get(f"/videos/status/{file_id}", params={"format": "hls"}).json()
    assert status["status"] == "completed" and status["task_id"] == body["job_id"]
    assert status["output_name"] == f"{file_id}_transcoded.m3u8"
    mp4 = api.get(f"/videos/status/{file_id}", params={"format": "mp4"}).json()
    assert mp4["status"] == "completed" and mp4["task_id"] == body["job_id"]
    assert mp4["output_name"] == f"{file_id}_transcoded.mp4", mp4  # named the playlist before
    assert api.get(f"/api/v1/jobs/{body['job_id']}").json()["step"] is None  # not "publishing"

    # The alias redirects to the folder URL, so relative playlist URLs resolve.
    alias = api.get(f"/videos/stream/{file_id}_transcoded.m3u8", follow_redirects=False)
    assert alias.status_code == 307
    master_url = alias.headers["location"]
    assert master_url == f"/videos/stream/{file_id}/{body['job_id']}/master.m3u8"
    master = api.fetch(master_url)
    assert master.headers["content-type"] == "application/vnd.apple.mpegurl"
    playlists = m3u8.loads(master.text).playlists
    assert [p.stream_info.resolution for p in playlists] == [(320, 180)]
    variant_url = urljoin(master_url, playlists[0].uri)
    variant = m3u8.loads(api.fetch(variant_url).text)
    segment = api.fetch(urljoin(variant_url, variant.segments[0].uri))
    assert segment.status_code == 200 and segment.headers["content-type"] == "video/mp2t"

    # The uploaded source itself is served under the seed's filename.
    source = api.fetch(f"/videos/stream/{body['filename']}")
    assert source.status_code == 200 and source.content == small_clip.read_bytes()


def test_range_requests_and_downloads(api: Api, small_clip: Path, tmp_path: Path) -> None:
    body = api.upload(small_clip).json()
    api.wait_task(body["job_id"])
    mp4_url = f"/videos/stream/{body['file_id']}/{body['job_id']}/180p.mp4"
    whole = api.get(mp4_url)
    assert whole.status_code == 200 and whole.headers["content-type"] == "video/mp4"
    assert whole.headers["accept-ranges"] == "bytes"
    part = api.get(mp4_url, headers={"Range": "bytes=100-1099"})
    assert part.status_code == 206
    assert part.headers["content-range"] == f"bytes 100-1099/{len(whole.content)}"
    assert part.content == whole.content[100:1100]
    tail = api.get(mp4_url, headers={"Range": f"bytes={len(whole.content) - 10}-"})
    assert tail.status_code == 206 and tail.content == whole.content[-10:]
    beyond = api.get(mp4_url, headers={"Range": f"bytes={len(whole.content) + 10}-"})
    assert beyond.status_code == 416
    download = api.get(f"/videos/download/{body['file_id']}/{body['job_id']}/180p.mp4")
    assert download.headers["content-disposition"].startswith("attachment")
    (tmp_path / "got.mp4").write_bytes(download.content)
    assert read_video(tmp_path / "got.mp4").width == 320
    for name, kind in (("thumbnail_2.jpg", "image/jpeg"), ("audio.mp3", "audio/mpeg")):
        got = api.get(f"/videos/stream/{body['file_id']}/{body['job_id']}/{name}")
        assert got.headers["content-type"] == kind


def test_transcode_one_resolution_and_format(
    api: Api, make_media: MakeMedia, tmp_path: Path
) -> None:
    source = make_media("fhd-short.mp4", *video_args("1920x1080", 25, 1.0))
    file_id = api.upload(source).json()["file_id"]
    response = api.post(
        f"/videos/transcode/{file_id}", json={"resolution": "1280:720", "format": "mp4"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body == {
        "message": "Transcoding started",
        "task_id": body["task_id"],
        "file_id": file_id,
        "output_name": f"{file_id}_transcoded.mp4",
        "resolution": "1280:720",
        "format": "mp4",
        "status": "processing",
    }
    task = api.wait_task(body["task_id"])
    assert task["state"] == "SUCCESS", task
    mp4 = api.get(f"/videos/stream/{file_id}_transcoded.mp4", follow_redirects=True)
    (tmp_path / "t.mp4").write_bytes(mp4.content)
    track = read_video(tmp_path / "t.mp4")
    assert (track.width, track.height) == (1280, 720)
    assert track.duration == pytest.approx(1.0, abs=0.05)
    detail = api.get(f"/api/v1/videos/{file_id}").json()
    assert detail["probe"]["video"][0]["width"] == 1920


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ({"format": "webm"}, "'hls', 'mp4' or 'dash'"),
        ({"resolution": "big"}, "resolution"),
        ({"resolution": "0:0"}, "invalid resolution"),
        ({"format": "hls", "color": "red"}, "color"),
        ({"profile": "nope"}, "unknown profile 'nope'"),
    ],
)
def test_bad_transcode_requests_are_422_with_one_line(
    api: Api, small_clip: Path, payload: dict[str, Any], fragment: str
) -> None:
    file_id = api.upload(small_clip).json()["file_id"]
    response = api.post(f"/videos/transcode/{file_id}", json=payload)
    assert response.status_code == 422
    assert fragment in response.json()["detail"] and "\n" not in response.json()["detail"]


@pytest.mark.parametrize(
    "url",
    [
        "/videos/task/0123456789abcdef0123456789abcdef",
        "/videos/status/0123456789abcdef0123456789abcdef",
        "/videos/stream/0123456789abcdef0123456789abcdef.mp4",
        "/videos/stream/0123456789abcdef0123456789abcdef_transcoded.m3u8",
        "/api/v1/videos/0123456789abcdef0123456789abcdef",
        "/api/v1/jobs/nope",
    ],
)
def test_unknown_ids_are_404(api: Api, url: str) -> None:
    response = api.get(url)
    assert response.status_code == 404 and response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "..%2F..%2Fvidfarm.db",
        "%2E%2E/%2E%2E/vidfarm.db",
        "a/b/..%2F..%2F..%2Fvidfarm.db",
        "x/y/.hidden",
        "..",
        "a%5C..%5Cvidfarm.db",
        "sources%2Fx",
    ],
)
def test_path_tricks_are_refused(api: Api, path: str) -> None:
    response = api.client.get(f"/videos/stream/{path}", headers=api.headers())
    assert response.status_code in (400, 404, 422), response.text
    assert b"SQLite" not in response.content


def test_not_media_is_refused_and_nothing_is_kept(
    api: Api, tmp_path: Path, local_settings: Settings
) -> None:
    junk = tmp_path / "slides.mp4"
    junk.write_text("not a video at all\n" * 500)
    response = api.upload(junk)
    assert response.status_code == 415
    assert response.json()["detail"] == (
        "slides.mp4: not a media file (Invalid data found when processing input)"
    )
    assert_nothing_stored(api, local_settings)


def test_oversized_upload_is_413_and_nothing_is_kept(
    tmp_path: Path, small_clip: Path, pg_database: str
) -> None:
    settings = make_settings(
        tmp_path, database_url=pg_database, max_upload_bytes=small_clip.stat().st_size - 1
    )
    client, api = start_api(settings)
    with client:
        response = api.upload(small_clip)
        assert response.status_code == 413
        assert "larger than the limit" in response.json()["detail"]
        assert_nothing_stored(api, settings)
        big = tmp_path / "big.mp4"
        big.write_bytes(os.urandom(settings.max_upload_bytes * 4))
        assert api.upload(big).status_code == 413  # refused from Content-Length alone
        assert_nothing_stored(api, settings)
    api.runtime.engine.dispose()


def test_upload_that_is_not_multipart_is_415(api: Api) -> None:
    response = api.post("/videos/upload", content=b"raw", headers={"Content-Type": "video/mp4"})
    assert response.status_code == 415


def test_upload_without_its_closing_boundary_is_refused(
    local_settings: Settings, small_clip: Path
) -> None:
    """A body cut short (the client stopped sending, the length says it is all) holds only a
    prefix of the file: refused, nothing stored, nothing encoded."""
    client, api = start_api(local_settings)
    with client:
        boundary = "vidfarmboundary"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="cut.mp4"\r\nContent-Type: video/mp4\r\n\r\n'
        ).encode()
        content = small_clip.read_bytes()
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        for cut in (head + content[: len(content) // 2], head + content + b"\r\n--" + b"vidf"):
            answer = api.post("/videos/upload", content=cut, headers=headers)
            assert answer.status_code == 400, answer.text
            assert answer.json()["detail"] == "the multipart body ends before its closing boundary"
            assert_nothing_stored(api, local_settings)
        whole = head + content + f"\r\n--{boundary}--\r\n".encode()
        assert api.post("/videos/upload", content=whole, headers=headers).status_code == 200
    api.runtime.engine.dispose()


def assert_nothing_stored(api: Api, settings: Settings) -> None:
    uploads = settings.data_dir / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())
    sources = settings.media_dir / "sources"
    assert not sources.exists() or not any(sources.iterdir())
    with api.runtime.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Video)) == 0


def test_tokens_and_roles(api: Api, small_clip: Path) -> None:
    assert api.client.get("/api/v1/jobs").status_code == 401
    bad = api.client.get("/api/v1/jobs", headers={"Authorization": "Bearer vf_nope_nope"})
    assert bad.status_code == 401
    with small_clip.open("rb") as handle:
        as_worker = api.post("/videos/upload", "worker", files={"file": ("a.mp4", handle)})
    assert as_worker.status_code == 403
    body = api.upload(small_clip).json()
    api.wait_task(body["job_id"])
    assert api.post(f"/api/v1/jobs/{body['job_id']}/restart", "user").status_code == 403
    assert api.post(f"/api/v1/jobs/{body['job_id']}/restart", "admin").status_code == 200
    # Media need a token unless public_media is set.
    assert api.client.get(f"/videos/stream/{body['filename']}").status_code == 401
    with_query = api.client.get(
        f"/videos/stream/{body['filename']}", params={"token": api.tokens["user"]}
    )
    assert with_query.status_code == 200


def test_videos_and_jobs_api(any_api: Api, small_clip: Path) -> None:
    api = any_api
    body = api.upload(small_clip).json()
    api.wait_task(body["job_id"])
    listing = api.get("/api/v1/videos").json()
    assert listing["total"] == 1 and listing["items"][0]["id"] == body["file_id"]
    detail = api.get(f"/api/v1/videos/{body['file_id']}").json()
    kinds = {o["kind"] for o in detail["outputs"]}
    assert {"hls_master", "hls_variant", "mp4", "thumbnail"} <= kinds
    for output in detail["outputs"]:
        fetched = api.fetch(output["url"])
        assert fetched.status_code == 200 and len(fetched.content) == output["size"]
    jobs = api.get("/api/v1/jobs", params={"status": "completed"}).json()["items"]
    assert [j["id"] for j in jobs] == [body["job_id"]]
    assert api.get("/api/v1/jobs", params={"status": "lost"}).status_code == 422
    job = api.get(f"/api/v1/jobs/{body['job_id']}").json()
    assert job["rank"] is None and job["waiting"] == 0 and job["attempts"] == 1
    assert "log_tail" in job and job["result"]["prefix"].endswith("/a1")
    # A second encode can be queued, followed live and cancelled.
    queued = api.post(f"/api/v1/videos/{body['file_id']}/encode", json={"formats": ["dash"]})
    assert queued.status_code == 202, queued.text
    with api.client.stream(
        "GET", "/api/v1/jobs/events", headers=api.headers(), params={"job_id": queued.json()["id"]}
    ) as stream:
        events = [
            json.loads(line[5:])
            for line in stream.iter_lines()
            if line.startswith("data:") and line != "data: {}"
        ]
    assert events[-1]["status"] == "completed"
    assert [e["progress"] for e in events] == sorted(e["progress"] for e in events)
    # Delete removes the media too.
    assert (
        api.client.delete(f"/api/v1/videos/{body['file_id']}", headers=api.headers()).status_code
        == 204
    )
    assert api.get(f"/api/v1/videos/{body['file_id']}").status_code == 404
    storage = api.runtime.storage
    assert not storage.exists(f"sources/{body['file_id']}/{body['filename']}")
    assert not any(
        storage.exists(f"{job['result']['prefix']}/{o['path']}") for o in detail["outputs"]
    )


def test_health_ready_and_metrics(api: Api, small_clip: Path) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    ready = api.client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["checks"]["database"] == "ok"
    body = api.upload(small_clip).json()
    api.wait_task(body["job_id"])
    assert api.client.get("/metrics").status_code == 401  # a token, unless metrics_public
    metrics = api.get("/metrics", "worker").text
    assert 'vidfarm_jobs{status="completed",type="encode"} 1.0' in metrics


def test_interrupted_upload_leaves_nothing(
    tmp_path: Path, small_clip: Path, pg_database: str
) -> None:
    """A client that goes away mid-upload: the partial file is removed, nothing recorded."""
    import socket
    import threading

    import uvicorn

    settings = make_settings(tmp_path, database_url=pg_database)
    client, api = start_api(settings)
    server = uvicorn.Server(
        uvicorn.Config(client.app, host="127.0.0.1", port=0, log_level="error", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    boundary = "vidfarmboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="cut.mp4"\r\nContent-Type: video/mp4\r\n\r\n'
    ).encode()
    declared = len(head) + 10_000_000
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(
            f"POST /videos/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
            f"{api.tokens['user']}\r\nContent-Type: multipart/form-data; boundary={boundary}"
            f"\r\nContent-Length: {declared}\r\n\r\n".encode()
            + head
        )
        sock.sendall(small_clip.read_bytes()[:50_000])  # then the client vanishes
        uploads = settings.data_dir / "uploads"
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not (uploads.exists() and any(uploads.iterdir())):
            time.sleep(0.02)
        assert any(uploads.iterdir()), "the upload never started"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(uploads.iterdir()):
        time.sleep(0.05)
    server.should_exit = True
    thread.join(timeout=10)
    assert_nothing_stored(api, settings)
    api.runtime.engine.dispose()


@pytest.fixture
def speech_api(tmp_path: Path, pg_database: str) -> Iterator[Api]:
    """Loading the speech model holds the GIL for seconds; on a loaded machine (two test
    processes) the 5 s lease of the other tests lapsed under it. The default lease is 60 s."""
    client, api = start_api(make_settings(tmp_path, database_url=pg_database, lease_seconds=30))
    with client:
        yield api
    api.runtime.engine.dispose()


def test_upload_with_a_language_gets_subtitles_in_its_master_playlist(
    speech_api: Api, speech_clip: Path
) -> None:
    api = speech_api
    with speech_clip.open("rb") as handle:
        response = api.post(
            "/videos/upload", params={"language": "en"}, files={"file": ("talk.mkv", handle)}
        )
    assert response.status_code == 200, response.text
    body = response.json()
    assert api.wait_task(body["job_id"])["state"] == "SUCCESS"
    deadline = time.monotonic() + 120
    transcription: dict[str, Any] = {}
    while time.monotonic() < deadline:
        found = api.get(
            "/api/v1/jobs", params={"video_id": body["file_id"], "type": "transcription"}
        ).json()["items"]
        if found and found[0]["status"] in ("completed", "failed"):
            transcription = found[0]
            break
        time.sleep(0.2)
    assert transcription.get("status") == "completed", transcription
    master_url = api.get(
        f"/videos/stream/{body['file_id']}_transcoded.m3u8", follow_redirects=False
    ).headers["location"]
    master = m3u8.loads(api.fetch(master_url).text)
    [subtitles] = [m for m in master.media if m.type == "SUBTITLES"]
    assert subtitles.language == "en" and subtitles.group_id == "subs"
    assert all(p.stream_info.subtitles == "subs" for p in master.playlists)
    playlist_url = urljoin(master_url, subtitles.uri)
    assert f"/{transcription['id']}/" in playlist_url
    playlist = m3u8.loads(api.fetch(playlist_url).text)
    vtt = api.fetch(urljoin(playlist_url, playlist.segments[0].uri))
    assert vtt.headers["content-type"].startswith("text/vtt")
    assert vtt.text.startswith("WEBVTT") and " --> " in vtt.text
    detail = api.get(f"/api/v1/videos/{body['file_id']}").json()
    subtitle = [o for o in detail["outputs"] if o["kind"] == "subtitle"]
    assert len(subtitle) == 1 and subtitle[0]["job_id"] == transcription["id"]
    assert api.fetch(subtitle[0]["url"]).text == vtt.text
    # A language nobody configured is refused before anything is stored.
    with speech_clip.open("rb") as handle:
        refused = api.post(
            "/videos/upload", params={"language": "xx"}, files={"file": ("talk.mkv", handle)}
        )
    assert refused.status_code == 422 and "xx" in refused.json()["detail"]

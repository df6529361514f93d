"""The embedded farm as a user runs it: `vidfarm serve` in one process, the CLI in another.

Stopping the server, gracefully or with kill -9, must lose no job: a job handed back or whose
lease expired runs again, and exactly one attempt's outputs are published.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fixtures_media import MakeMedia, video_args
from processes import encoders_in, held_at_work
from services import free_port
from waiting import wait_until

VIDFARM = [sys.executable, "-m", "vidfarm"]


class Farm:
    def __init__(self, data_dir: Path, database_url: str) -> None:
        self.data_dir = data_dir
        self.port = free_port()
        self.env = {
            **os.environ,
            "VIDFARM_DATA_DIR": str(data_dir),
            "VIDFARM_DATABASE_URL": database_url,
            "VIDFARM_PORT": str(self.port),
            "VIDFARM_LEASE_SECONDS": "3",
            "VIDFARM_POLL_SECONDS": "0.2",
            "VIDFARM_RETRY_BASE_SECONDS": "0.1",
            "VIDFARM_RETRY_MAX_SECONDS": "0.5",
        }
        self.server: subprocess.Popen[bytes] | None = None
        self._token: str | None = None

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*VIDFARM, *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(f"vidfarm {args} failed: {result.stderr}")
        return result

    @property
    def headers(self) -> dict[str, str]:
        if self._token is None:
            self._token = self.cli("token", "create", "--role", "admin").stdout.strip()
        return {"Authorization": f"Bearer {self._token}"}

    def start(self) -> None:
        log = (self.data_dir / "serve.log").open("ab")
        self.server = subprocess.Popen(
            [*VIDFARM, "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("vidfarm serve did not start")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.server and self.server.poll() is None:
            self.server.send_signal(sig)
            self.server.wait(timeout=60)
        self.server = None

    def job(self, job_id: str) -> dict[str, Any]:
        response = httpx.get(
            f"http://127.0.0.1:{self.port}/api/v1/jobs/{job_id}", headers=self.headers
        )
        response.raise_for_status()
        return dict(response.json())

    def wait_for(self, job_id: str, predicate: Any, timeout: float = 120) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.job(job_id)
            if predicate(job):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} never got there: {self.job(job_id)}")

    def submit(self, source: Path) -> str:
        out = self.cli("submit", str(source)).stdout
        return out.split()[1]


@pytest.fixture
def farm(tmp_path: Path, pg_database: str) -> Iterator[Farm]:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    # A fast encode: the tests that stop the farm mid-encode hold its encoder still first.
    (profiles / "default.toml").write_text(
        'preset = "veryfast"\nkeyframe_interval = 2\nsegment_duration = 4\n'
        '[[renditions]]\nheight = 360\nmin_video_bitrate = "500k"\nvideo_bitrate = "750k"\n'
        'max_video_bitrate = "1000k"\naudio_bitrate = "96k"\nmp4 = true\n'
    )
    farm = Farm(tmp_path, pg_database)
    yield farm
    farm.stop(signal.SIGKILL)


@pytest.fixture
def long_clip(make_media: MakeMedia) -> Path:
    """20 s of 640x360: about 1 s of encoding at veryfast, enough to catch its encoder."""
    return make_media("farm-20s.mp4", *video_args("640x360", 25, 20.0))


def first_attempt(farm: Farm, job_id: str) -> Path:
    """Its staging folder; the tests stopping the farm mid-encode hold its encoder still in
    it first (processes.held_at_work), whatever this machine's speed."""
    return farm.data_dir / "work" / f"{job_id}-a1"


def published(farm: Farm, job_id: str) -> list[Path]:
    root = farm.data_dir / "media" / "videos"
    return sorted(p for p in root.glob(f"*/{job_id}/*") if p.is_dir())


def test_submit_runs_on_the_server_and_publishes(farm: Farm, small_clip: Path) -> None:
    farm.start()
    job_id = farm.submit(small_clip)
    job = farm.wait_for(job_id, lambda j: j["status"] == "completed")
    assert job["attempts"] == 1 and job["progress"] == 100
    [folder] = published(farm, job_id)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert {o["kind"] for o in manifest["outputs"]} >= {"hls_master", "hls_variant", "mp4"}
    shown = farm.cli("job", job_id).stdout
    assert "completed" in shown and "master.m3u8" in shown
    listed = farm.cli("jobs", "--status", "completed").stdout
    assert job_id in listed


def test_kill_nine_mid_encode_loses_nothing(farm: Farm, long_clip: Path) -> None:
    farm.start()
    job_id = farm.submit(long_clip)
    with held_at_work(first_attempt(farm, job_id)):
        assert farm.job(job_id)["status"] == "running"
        farm.stop(signal.SIGKILL)  # the worker dies with its lease held
    farm.start()
    job = farm.wait_for(job_id, lambda j: j["status"] == "completed", timeout=180)
    assert job["attempts"] == 2
    [folder] = published(farm, job_id)  # only the accepted attempt's outputs exist
    assert folder.name == "a2"
    assert not list((farm.data_dir / "work").glob(f"{job_id}-a2"))


def test_kill_nine_mid_encode_leaves_no_encoder_behind(farm: Farm, long_clip: Path) -> None:
    farm.start()
    job_id = farm.submit(long_clip)
    attempt = first_attempt(farm, job_id)
    with held_at_work(attempt):  # a stopped process dies of SIGKILL too; a survivor goes on
        farm.stop(signal.SIGKILL)
    deadline = time.monotonic() + 60
    while encoders_in(attempt) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not encoders_in(attempt)
    # It died with its worker, it did not run to the end: no playlist was ever finished.
    playlists = list(attempt.rglob("*.m3u8"))
    assert not any("#EXT-X-ENDLIST" in p.read_text() for p in playlists), playlists


def start_upload(farm: Farm, size: int) -> socket.socket:
    """Begin uploading `size` bytes and send only the first megabyte (a client mid-upload)."""
    boundary = "vidfarmboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    request = (
        f"POST /videos/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: {farm.headers['Authorization']}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(head) + size}\r\n\r\n"
    ).encode()
    client = socket.create_connection(("127.0.0.1", farm.port))
    client.sendall(request + head + b"\0" * 1_000_000)
    return client


def test_leftovers_of_a_kill_nine_are_swept_at_the_next_start(farm: Farm, long_clip: Path) -> None:
    farm.start()
    job_id = farm.submit(long_clip)
    attempt = first_attempt(farm, job_id)
    with held_at_work(attempt, ready=lambda: list(attempt.glob("**/.out.partial-*"))):
        client = start_upload(farm, 50_000_000)
        uploads = farm.data_dir / "uploads"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(
            p.stat().st_size > 0 for p in uploads.glob("upload-*")
        ):
            time.sleep(0.05)
        assert list(attempt.glob("**/.out.partial-*")) and list(uploads.glob("upload-*"))
        farm.stop(signal.SIGKILL)
    client.close()
    assert attempt.exists() and list(uploads.glob("upload-*"))  # nobody cleaned up: kill -9
    farm.start()
    assert not attempt.exists()  # swept before the farm takes new work
    assert not list(uploads.glob("upload-*"))
    assert "leftovers swept" in (farm.data_dir / "serve.log").read_text()
    farm.wait_for(job_id, lambda j: j["status"] == "completed", timeout=180)


def test_graceful_stop_hands_the_job_back(farm: Farm, long_clip: Path) -> None:
    farm.start()
    job_id = farm.submit(long_clip)
    with held_at_work(first_attempt(farm, job_id)):  # the stop kills it (SIGKILL) all the same
        farm.stop(signal.SIGTERM)
    shown = farm.cli("job", job_id).stdout
    assert "queued" in shown, shown  # handed back at once, not left to its lease
    farm.start()
    job = farm.wait_for(job_id, lambda j: j["status"] == "completed", timeout=180)
    assert job["error"] is None
    assert len(published(farm, job_id)) == 1


def test_cancel_a_running_job(farm: Farm, long_clip: Path) -> None:
    farm.start()
    job_id = farm.submit(long_clip)
    attempt = first_attempt(farm, job_id)
    # Hold the encoder while the CLI starts: on a busy machine it could otherwise finish first.
    with held_at_work(attempt):
        assert "cancelled" in farm.cli("cancel", job_id).stdout
    # The worker notices within a second (a progress line, or asked between lines) and
    # kills it.
    wait_until(lambda: not encoders_in(attempt), 60, "the cancelled encoder gone")
    wait_until(lambda: not list((farm.data_dir / "work").iterdir()), 60, "the attempt cleaned")
    assert farm.job(job_id)["status"] == "cancelled"
    assert published(farm, job_id) == []


def test_bad_input_is_refused_before_anything_is_stored(farm: Farm, tmp_path: Path) -> None:
    junk = tmp_path / "holiday.mp4"
    junk.write_bytes(os.urandom(10_000))
    result = farm.cli("submit", str(junk), check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "vidfarm: error: holiday.mp4: not a media file (Invalid data found when processing input)"
    ]
    assert "Traceback" not in result.stderr
    sources = farm.data_dir / "media" / "sources"
    assert not sources.exists() or not any(sources.iterdir())
    assert "holiday" not in farm.cli("jobs").stdout

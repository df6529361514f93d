"""What the drills share: a farm of real processes and the counts an operator checks.

A `Farm` is `vidfarm serve` (SQLite in its own folder), optionally Celery workers on a private
`redis-server` (never the machine's shared Redis: the drills flush and restart theirs), a
stand-in LRS, and the jobs submitted to it. `Outcome` is one row of the drills' table.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from vidfarm.media.tools import ffmpeg_executable

VIDFARM = [sys.executable, "-m", "vidfarm"]
FINAL = {"completed", "failed", "cancelled"}
# Slow enough to be interrupted mid-encode on purpose, small enough for a drill.
PROFILE = (
    'preset = "slower"\nkeyframe_interval = 2\nsegment_duration = 4\n'
    '[[renditions]]\nheight = 360\nmin_video_bitrate = "500k"\nvideo_bitrate = "750k"\n'
    'max_video_bitrate = "1000k"\naudio_bitrate = "96k"\nmp4 = true\n'
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")


def make_clip(path: Path, seconds: float) -> Path:
    """A lavfi test pattern with a tone (640x360, 25 fps), encoded fast."""
    if not path.exists():
        subprocess.run(
            [ffmpeg_executable(), "-hide_banner", "-loglevel", "error", "-y",
             "-f", "lavfi", "-i", f"testsrc2=s=640x360:r=25:d={seconds}",
             "-f", "lavfi", "-i", f"sine=f=440:sample_rate=44100:d={seconds}",
             "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
             "-c:a", "aac", str(path)],
            check=True,
        )  # fmt: skip
    return path


@dataclass
class Outcome:
    """One drill's row: jobs (or statements) submitted, how they ended, how long recovery took."""

    drill: str
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    doubled: int = 0
    recovery_seconds: float | None = None
    notes: list[str] = field(default_factory=list)
    skipped: str = ""
    unit: str = "jobs"  # or "statements": sent twice with the same id, the LRS keeps one


class PrivateRedis:
    """A redis-server of the drill's own, on a free port, without persistence."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.folder)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait(lambda: self.cli("PING") == "PONG", 10, "the private redis-server")

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            ["redis-cli", "-p", str(self.port), *args], capture_output=True, text=True
        )
        return done.stdout.strip()

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)
        self.process = None


class StandInLrs:
    """POST /xapi/statements: records every statement id it receives (duplicates too)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received: Counter[str] = Counter()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/xapi"

    def start(self) -> None:
        received = self.received
        lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"[]")
                statements = body if isinstance(body, list) else [body]
                ids = [s.get("id") for s in statements]
                with lock:
                    received.update(i for i in ids if i)
                data = json.dumps(ids).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class Farm:
    """`vidfarm serve` on SQLite in `root`, its admin and worker tokens, and its workers."""

    def __init__(self, root: Path, **settings: str) -> None:
        self.root = root
        self.data_dir = root / "data"
        (self.data_dir / "profiles").mkdir(parents=True, exist_ok=True)
        (self.data_dir / "profiles" / "default.toml").write_text(PROFILE)
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("VIDFARM_")}
        self.env |= {
            "VIDFARM_DATA_DIR": str(self.data_dir),
            "VIDFARM_PORT": str(self.port),
            "VIDFARM_LEASE_SECONDS": "3",
            "VIDFARM_POLL_SECONDS": "0.2",
            "VIDFARM_RETRY_BASE_SECONDS": "0.2",
            "VIDFARM_RETRY_MAX_SECONDS": "1",
            "VIDFARM_REPUBLISH_AFTER_SECONDS": "1",
            **settings,
        }
        self.server: subprocess.Popen[bytes] | None = None
        self.workers: dict[str, subprocess.Popen[bytes]] = {}
        self.admin = self._cli("token", "create", "--role", "admin", "--name", "drill")
        self.worker_token = self._cli("token", "create", "--role", "worker", "--name", "drill")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _cli(self, *args: str) -> str:
        done = subprocess.run(
            [*VIDFARM, *args], env=self.env, capture_output=True, text=True, timeout=120
        )
        if done.returncode != 0:
            raise RuntimeError(f"vidfarm {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout.strip()

    # -- processes ------------------------------------------------------------------------------

    def start(self) -> None:
        log = (self.root / "serve.log").open("ab")
        self.server = subprocess.Popen(
            [*VIDFARM, "serve"], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        wait(lambda: self._answers("/healthz"), 60, "vidfarm serve")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(sig)
            try:
                self.server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.server = None

    def start_worker(self, name: str) -> None:
        env = {**self.env, "VIDFARM_API_URL": self.url, "VIDFARM_WORKER_TOKEN": self.worker_token}
        log = (self.root / f"worker-{name}.log").open("ab")
        process = subprocess.Popen(
            [*VIDFARM, "worker", "--name", name, "--concurrency", "1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.workers[name] = process
        wait(lambda: " ready." in self.log(f"worker-{name}.log"), 60, f"worker {name}")

    def stop_worker(self, name: str, sig: int = signal.SIGTERM) -> None:
        process = self.workers.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
            process.wait(timeout=60)

    def close(self) -> None:
        for name in list(self.workers):
            self.stop_worker(name, signal.SIGKILL)
        self.stop(signal.SIGKILL)

    def log(self, name: str) -> str:
        path = self.root / name
        return path.read_text(errors="replace") if path.exists() else ""

    def _answers(self, path: str) -> bool:
        try:
            return httpx.get(f"{self.url}{path}", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    # -- jobs ---------------------------------------------------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin}"}
        return httpx.request(method, f"{self.url}{path}", headers=headers, timeout=60, **kwargs)

    def upload(self, source: Path) -> str:
        with source.open("rb") as handle:
            response = self.api("POST", "/videos/upload", files={"file": (source.name, handle)})
        response.raise_for_status()
        return str(response.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        response = self.api("GET", f"/api/v1/jobs/{job_id}")
        response.raise_for_status()
        return dict(response.json())

    def wait_running(self, job_id: str, timeout: float = 120) -> None:
        def running() -> bool:
            job = self.job(job_id)
            return bool(job["status"] == "running" and (job.get("progress") or 0) > 5)

        wait(running, timeout, f"job {job_id} running")

    def wait_final(self, job_ids: list[str], timeout: float) -> float:
        """Seconds until every job is final (TimeoutError after `timeout`)."""
        started = time.monotonic()

        def final() -> bool:
            try:
                return all(self.job(j)["status"] in FINAL for j in job_ids)
            except httpx.HTTPError:
                return False

        wait(final, timeout, "every job to end", interval=0.2)
        return time.monotonic() - started

    def published(self, job_id: str) -> int:
        """Attempt folders of this job kept in storage (more than one: done twice)."""
        return sum(1 for p in (self.data_dir / "media" / "videos").glob(f"*/{job_id}/a*"))

    def count(self, outcome: Outcome, job_ids: list[str]) -> Outcome:
        outcome.submitted += len(job_ids)
        for job_id in job_ids:
            try:
                status = self.job(job_id)["status"]
            except httpx.HTTPError:
                status = "missing"
            if status == "completed":
                outcome.completed += 1
            elif status in ("failed", "cancelled"):
                outcome.failed += 1
            else:
                outcome.lost += 1
            if self.published(job_id) > 1:
                outcome.doubled += 1
        return outcome

    def encoders(self) -> list[int]:
        """Live processes working in the farm's work folder (ffmpeg's cwd is its staging)."""
        work = f"{self.data_dir / 'work'}/"
        found = []
        for proc in Path("/proc").iterdir():
            try:
                cwd = os.readlink(proc / "cwd")
                state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if cwd.startswith(work) and state not in ("Z", "X"):
                found.append(int(proc.name))
        return found


@dataclass
class Workspace:
    """A temporary folder for one drill, removed afterwards (unless kept for a post-mortem)."""

    keep: bool = False
    path: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="vidfarm-drill-")))

    def cleanup(self) -> None:
        if not self.keep:
            shutil.rmtree(self.path, ignore_errors=True)


def folders(root: Path) -> Iterator[Path]:
    yield from (p for p in root.iterdir() if p.is_dir())

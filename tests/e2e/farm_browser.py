"""Helpers of the dashboard tests: `vidfarm serve` in a process, a stub LRS, Chromium.

Chromium is the system's (`apt-get install chromium`; .ci/run does it): Playwright's own
browser download is never used. Without /usr/bin/chromium the tests skip with the reason
locally and fail when CI is set, like tests that need a service.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from services import free_port
from vidfarm.api.web.assets import HLS_JS, VENDOR_DIR

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
    "--mute-audio",
]
VIDFARM = [sys.executable, "-m", "vidfarm"]
#: Screenshots of every page: test artefacts, gitignored, never committed.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
#: One rendition ladder as cheap as it gets: tests check the pages, not the encoder.
TINY_PROFILE = """\
preset = "ultrafast"
keyframe_interval = 2
segment_duration = 2
[[renditions]]
height = 144
min_video_bitrate = "100k"
video_bitrate = "150k"
max_video_bitrate = "200k"
audio_bitrate = "64k"
mp4 = true
[[renditions]]
height = 180
min_video_bitrate = "150k"
video_bitrate = "200k"
max_video_bitrate = "300k"
audio_bitrate = "64k"
mp4 = true
"""
#: The stub LRS refuses statements with this verb (they become dead letters), takes the rest.
SUBTITLE_TEXT = "Hello from the subtitle track"
SRT = (
    f"1\n00:00:00,500 --> 00:00:05,000\n{SUBTITLE_TEXT}\n\n"
    "2\n00:00:05,500 --> 00:00:11,000\nSecond cue of the clip\n"
)
REFUSED_VERB = "paused"
REFUSAL = "stub LRS: paused statements are not accepted here"


def require_chromium() -> None:
    if CHROMIUM.exists():
        return
    reason = f"{CHROMIUM} is not installed (apt-get install -y chromium)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set: the dashboard tests are required")
    pytest.skip(reason)


def require_hls_js() -> None:
    if (VENDOR_DIR / HLS_JS).is_file():
        return
    reason = "hls.js is not fetched (python -m vidfarm.api.web.assets; make test does it)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set: the HLS player test is required")
    pytest.skip(reason)


class StubLrs(BaseHTTPRequestHandler):
    """POST /xAPI/statements: 400 for a batch holding a refused verb, else 200 with the ids."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"[]")
        statements = body if isinstance(body, list) else [body]
        if any(s["verb"]["id"].endswith(f"/{REFUSED_VERB}") for s in statements):
            self._answer(400, {"detail": REFUSAL})
        else:
            self._answer(200, [s["id"] for s in statements])

    def do_GET(self) -> None:
        self._answer(200, {"statements": [], "more": ""})

    def _answer(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        pass


@dataclass
class Server:
    """`vidfarm serve` in its own process and data folder, with an admin and a user token."""

    data_dir: Path
    env: dict[str, str]
    base: str = ""
    admin: str = ""
    user: str = ""
    process: subprocess.Popen[bytes] | None = None
    routes: set[str] = field(default_factory=set)
    serve_args: list[str] = field(default_factory=list)  # e.g. ["--no-workers"]

    def cli(self, *args: str) -> str:
        result = subprocess.run(
            [*VIDFARM, *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if result.returncode != 0:
            raise AssertionError(f"vidfarm {' '.join(args)} failed: {result.stderr}")
        return result.stdout.strip()

    @staticmethod
    def cli_command() -> list[str]:
        return list(VIDFARM)

    def start(self) -> None:
        port = free_port()
        self.env["VIDFARM_PORT"] = str(port)
        self.base = f"http://127.0.0.1:{port}"
        self.admin = self.cli("token", "create", "--role", "admin", "--name", "e2e-admin")
        self.user = self.cli("token", "create", "--role", "user", "--name", "e2e-user")
        log = (self.data_dir / "serve.log").open("ab")
        self.process = subprocess.Popen(
            [*VIDFARM, "serve", *self.serve_args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.base}/healthz").status_code == 200:
                    self.routes = set(httpx.get(f"{self.base}/openapi.json").json()["paths"])
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError(f"vidfarm serve did not start: {self.log_tail()}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self) -> str:
        path = self.data_dir / "serve.log"
        return path.read_text(errors="replace")[-3000:] if path.exists() else ""

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(
            method,
            f"{self.base}{path}",
            headers={"Authorization": f"Bearer {self.admin}"},
            timeout=30,
            **kwargs,
        )
        assert response.status_code < 300, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    def wait(self, what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}\n{self.log_tail()}")

    def wait_job(self, job_id: str, statuses: set[str], timeout: float = 60) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            job: dict[str, Any] = self.api("GET", f"/api/v1/jobs/{job_id}")
            return job if job["status"] in statuses else None

        return dict(self.wait(f"job {job_id} to be {statuses}", check, timeout))


def login(page: Any, server: Server, token: str, *, hash: str = "") -> None:
    page.goto(f"{server.base}/{hash}")
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#nav:not([hidden])")


def screenshot(page: Any, name: str) -> None:
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def wait_until(page: Any, expression: str, timeout: float = 20) -> Any:
    """Poll a JavaScript expression until it is truthy.

    Playwright's wait_for_function evaluates its predicate with eval(), which the dashboard's
    Content-Security-Policy (script-src 'self') rightly forbids; page.evaluate is not eval.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = page.evaluate(expression)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout} s: {expression}")
        time.sleep(0.1)


class Origin:
    """A page server on its own port: an origin other than vidfarm's."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.body = b""
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(origin.body)))
                self.end_headers()
                self.wfile.write(origin.body)

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_server(data_dir: Path, **settings: str) -> Server:
    """`vidfarm serve` on its embedded defaults in `data_dir`, with the tiny ladder.

    The machine's own VIDFARM_* settings (a PostgreSQL URL, a broker) stay out: this farm is
    the embedded one, in its own folder; `settings` add to it (VIDFARM_* names)."""
    require_chromium()
    (data_dir / "profiles").mkdir()
    (data_dir / "profiles" / "default.toml").write_text(TINY_PROFILE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDFARM_")}
    env |= {"VIDFARM_DATA_DIR": str(data_dir), "VIDFARM_POLL_SECONDS": "0.2", **settings}
    running = Server(data_dir=data_dir, env=env)
    running.start()
    return running

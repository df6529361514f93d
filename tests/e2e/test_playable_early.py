"""Playable early in a browser: hls.js plays a chunked encode's EVENT playlist while it runs,
on another origin's page and in the dashboard's player.

`vidfarm serve` with one pool slot (chunks in order) and 4 s chunks of the 12 s 1080p clip.
As soon as the first chunk is in, every ffmpeg of the server is held (SIGSTOP, then SIGCONT):
the encode is then surely still running while Chromium starts playing; released, it completes
and the page plays on past the first chunk.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from farm_browser import Origin, Server, login, start_server, wait_until
from test_cross_origin import PAGE


@pytest.fixture(scope="module")
def origin() -> Iterator[Origin]:
    platform = Origin()
    yield platform
    platform.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, origin: Origin) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("playable-early"),
        VIDFARM_CORS_ORIGINS=origin.url,
        VIDFARM_WORKER_CONCURRENCY="1",
        VIDFARM_CHUNK_SECONDS="4",
        VIDFARM_CHUNK_MIN_SECONDS="10",
    )
    origin.body = PAGE.format(vidfarm=running.base).encode()
    yield running
    running.stop()


def ffmpeg_children(root: int) -> list[int]:
    """The ffmpeg processes under `root` (the server this test started)."""
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat[stat.index("(") + 1 : stat.rindex(")")], stat[stat.rindex(")") + 2 :]
        parents[int(entry.name)], names[int(entry.name)] = int(rest.split()[1]), name
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid:
                frontier.append(child)
                if names[child].startswith("ffmpeg"):
                    found.append(child)
    return found


class Hold:
    """SIGSTOP every ffmpeg of the server until released (then SIGCONT them)."""

    def __init__(self, root: int) -> None:
        self.root, self.held, self.done = root, set[int](), threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.done.wait(0.02):
            for pid in ffmpeg_children(self.root):
                if pid not in self.held:
                    os.kill(pid, signal.SIGSTOP)
                    self.held.add(pid)

    def release(self) -> None:
        self.done.set()
        self.thread.join()
        for pid in self.held:
            with contextlib.suppress(ProcessLookupError):  # already ended
                os.kill(pid, signal.SIGCONT)


def test_hls_js_plays_while_the_encode_still_runs(
    page: Any, server: Server, origin: Origin, hd_clip: Path
) -> None:
    headers = {"Authorization": f"Bearer {server.user}"}
    with hd_clip.open("rb") as handle:
        answer = httpx.post(
            f"{server.base}/videos/upload", headers=headers, files={"file": handle}, timeout=60
        ).json()
    video, job_id = answer["file_id"], answer["job_id"]

    def links() -> dict[str, Any]:
        url = f"{server.base}/api/v1/videos/{video}/playback"
        return dict(httpx.get(url, headers=headers).json())

    assert server.process is not None
    first = server.wait("the EVENT master", lambda: links()["event"] and links(), timeout=90)
    hold = Hold(server.process.pid)
    try:
        page.goto(origin.url)
        page.evaluate("(src) => window.play(src)", first["master"])
        wait_until(page, "document.getElementById('v').currentTime > 0.5", timeout=30)
        assert page.evaluate("window.state.fatal") is None
        dashboard = page.context.new_page()  # the dashboard's own player, on the video's page
        login(dashboard, server, server.user, hash=f"#/videos/{video}")
        dashboard.wait_for_selector("#video")
        dashboard.evaluate("document.getElementById('video').play()")
        wait_until(dashboard, "document.getElementById('video').currentTime > 0.5", timeout=30)
        assert server.api("GET", f"/api/v1/jobs/{job_id}")["status"] == "running"
        assert links()["event"]
    finally:
        hold.release()
    server.wait_job(job_id, {"completed"}, timeout=90)
    assert not links()["event"]
    wait_until(page, "document.getElementById('v').currentTime > 5", timeout=30)  # chunk 2 on
    assert page.evaluate("window.state.fatal") is None

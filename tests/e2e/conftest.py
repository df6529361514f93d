"""Fixtures of the dashboard tests: a real `vidfarm serve`, a stub LRS, Debian's Chromium."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from farm_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    SCREENSHOTS,
    SRT,
    Server,
    StubLrs,
    start_server,
)

from fixtures_media import run_ffmpeg_cli


@pytest.fixture(scope="module")
def lrs_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), StubLrs)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/xAPI"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, lrs_url: str) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("dashboard"),
        VIDFARM_RETRY_BASE_SECONDS="0.1",
        VIDFARM_RETRY_MAX_SECONDS="0.5",
        VIDFARM_XAPI_ENABLED="true",
        VIDFARM_XAPI_LRS_URL=lrs_url,
        VIDFARM_XAPI_RETRY_BASE_SECONDS="0.1",
        VIDFARM_XAPI_RETRY_MAX_SECONDS="0.5",
        VIDFARM_RUNNERS_ALLOW_PRIVATE_URLS="true",
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test item: the page fixture screenshots failures."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


@pytest.fixture
def page(browser: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh tab (its own sessionStorage: logged out); uncaught page errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(20_000)
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    yield tab
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        tab.screenshot(path=str(SCREENSHOTS / f"FAILED-{request.node.name}.png"), full_page=True)
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
def subtitled_clip(media_dir: Path) -> Path:
    """12 s of 320x180 with audio and an English text subtitle stream (long enough for the
    overview sprite, which needs 10 s)."""
    target = media_dir / "dashboard-subtitled.mkv"
    if not target.exists():
        srt = media_dir / "dashboard.srt"
        srt.write_text(SRT)
        run_ffmpeg_cli(
            "-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=12",
            "-f", "lavfi", "-i", "sine=f=440:sample_rate=44100:d=12",
            "-i", str(srt),
            "-map", "0", "-map", "1", "-map", "2",
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-c:s", "srt", "-metadata:s:s:0", "language=eng",
            str(target),
        )  # fmt: skip
    return target

"""The dashboard as people use it every day, at 390x844 (a phone) and 1440x900.

Every page fits the screen (no horizontal scrolling), passes axe-core's WCAG A/AA checks and is
screenshotted at both sizes into test-artifacts/screenshots/; the phone's seek bar is usable.
Then: titles, thumbnails, search and sort in the list; a playable badge that a later cancelled
encode does not hide; the player's speed, volume, keys and current level; a neutral "being
encoded" state; quiet workers, queue wait, speed and ETA on the jobs page; the upload queue,
its cancel and refusal; "remember me", "log out everywhere" and a menu fitted to the role.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from axe import axe_script, violations
from farm_browser import (
    SCREENSHOTS,
    Server,
    free_port,
    login,
    require_hls_js,
    screenshot,
    wait_until,
)

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1440, "height": 900}
TITLE = "Thermodynamics, lecture 1: the first law and a title long enough to wrap on a phone"
OVERFLOW = "document.documentElement.scrollWidth - window.innerWidth"


@contextmanager
def tab(browser: Any, viewport: dict[str, int], *, axe: bool = False) -> Iterator[Any]:
    """A fresh context at `viewport`; page errors fail the test; axe-core preloaded if asked."""
    context = browser.new_context(viewport=viewport, has_touch=viewport is PHONE)
    if axe:
        context.add_init_script(path=str(axe_script()))
    page = context.new_page()
    page.set_default_timeout(20_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page
    except BaseException:
        name = f"FAILED-daily-{viewport['width']}-{len(errors)}"
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        if errors:
            raise AssertionError(f"JavaScript errors on the page: {errors}") from None
        raise
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture(scope="module")
def farm(server: Server, subtitled_clip: Path) -> dict[str, Any]:
    """One encoded video with a long title, a later encode cancelled, a dead letter and a
    runner manager nobody answers for."""
    with subtitled_clip.open("rb") as handle:
        answer = server.api("POST", "/videos/upload", files={"file": ("lecture.mkv", handle)})
    video_id, job_id = answer["file_id"], answer["job_id"]
    server.wait_job(job_id, {"completed"})
    server.api("PATCH", f"/api/v1/videos/{video_id}", json={"title": TITLE})
    later = server.api("POST", f"/api/v1/videos/{video_id}/encode", json={"priority": -100})
    server.api("POST", f"/api/v1/jobs/{later['id']}/cancel")
    server.api(
        "POST",
        "/xapi/video/",
        json=[{"video_id": video_id, "verb": "paused", "time": 1.5}],
    )
    server.wait("a dead letter", lambda: server.api("GET", "/api/v1/xapi/status")["dead"])
    runner = server.api(
        "POST",
        "/api/v1/runners",
        json={"name": "silent", "url": f"http://127.0.0.1:{free_port()}", "token": "t" * 20},
    )
    return {"video_id": video_id, "job_id": job_id, "cancelled": later["id"], "runner": runner}


def fits(page: Any, name: str) -> None:
    """No horizontal scrolling, then a screenshot."""
    excess = page.evaluate(OVERFLOW)
    assert excess <= 0, f"{name}: the page is {excess} px wider than the window"
    screenshot(page, name)


PAGES = [
    ("videos", "#/videos", "#video-list tbody tr[data-video-id]"),
    ("video", "#/videos/{video_id}", '#player[data-mode="hls"]'),
    ("jobs", "#/jobs?job={job_id}", ".job-detail"),
    ("workers", "#/workers", "#runner-list .health .badge"),
    ("xapi", "#/xapi", "#dead-list tr.dead"),
]


@pytest.mark.parametrize("viewport", [PHONE, DESKTOP], ids=["390x844", "1440x900"])
def test_every_page_fits_the_screen_and_passes_axe(
    browser: Any, server: Server, farm: dict[str, Any], viewport: dict[str, int]
) -> None:
    require_hls_js()
    size = f"{viewport['width']}x{viewport['height']}"
    with tab(browser, viewport, axe=True) as page:
        page.goto(f"{server.base}/")
        page.wait_for_selector("#login-form")
        fits(page, f"daily-{size}-login")
        assert violations(page) == []
        # Focus order follows the form: token, "remember me", the button.
        assert page.evaluate("document.activeElement.id") == "token"
        order = []
        for _ in range(2):
            page.keyboard.press("Tab")
            order.append(
                page.evaluate("document.activeElement.id || document.activeElement.textContent")
            )
        assert order == ["remember", "Log in"]
        login(page, server, server.admin)
        problems: dict[str, list[str]] = {}
        for name, route, ready in PAGES:
            page.goto(f"{server.base}/{route.format(**farm)}")
            page.wait_for_selector(ready)
            if name == "xapi":  # an opened statement must not widen the page
                page.click("#dead-list details summary")
            fits(page, f"daily-{size}-{name}")
            problems[name] = violations(page)
            for control in ("#logout", "#nav a[data-page=jobs]"):
                box = page.locator(control).bounding_box()
                assert box and box["x"] + box["width"] <= viewport["width"], control
            if name == "video":
                seek = page.locator("#seek").bounding_box()
                assert seek and seek["width"] >= (200 if viewport is PHONE else 400), seek
                for control in ("#play", "#mute", "#fullscreen", "#speed", "#volume"):
                    box = page.locator(control).bounding_box()
                    assert box and box["x"] >= 0 and box["x"] + box["width"] <= viewport["width"]
                    if viewport is PHONE:  # touch-sized
                        assert box["height"] >= 40, (control, box)
        assert problems == {name: [] for name, _, _ in PAGES}


def test_list_titles_thumbnails_search_sort_and_edit(
    browser: Any, server: Server, farm: dict[str, Any]
) -> None:
    video = farm["video_id"]
    row = f'#video-list tr[data-video-id="{video}"]'
    with tab(browser, DESKTOP) as page:
        login(page, server, server.admin, hash="#/videos")
        page.wait_for_selector(row)
        assert page.locator(f"{row} .video-link").text_content() == TITLE
        assert page.locator(f"{row} .file").text_content() == "lecture.mkv"
        wait_until(page, f"document.querySelector('{row} img')?.naturalWidth > 0")
        # The newest encode was cancelled, an older one completed: it plays.
        assert page.locator(f"{row} [data-state=playable]").is_visible()
        assert page.locator(f"{row} .state").text_content().count("cancelled") == 0

        page.fill("#video-search", "first LAW")
        page.press("#video-search", "Enter")
        page.wait_for_url("**#/videos?q=first+LAW")
        page.wait_for_selector(row)
        page.fill("#video-search", "no such words")
        page.press("#video-search", "Enter")
        page.wait_for_selector("#video-list td.empty-cell:has-text('no such words')")
        page.select_option("#video-sort", "longest")
        page.wait_for_url("**sort=longest**")

        page.goto(f"{server.base}/#/jobs?type=encode")
        job_row = f'#job-list tr[data-job-id="{farm["job_id"]}"]'
        page.wait_for_selector(job_row)
        assert page.locator(f"{job_row} .video-cell").text_content() == TITLE
        assert page.locator(f"{job_row} td.step").text_content() == "done"
        assert "x real time" in page.locator(f"{job_row} td.figures").text_content()
        # Read in one evaluation: the list re-renders as it refreshes, and a badge replaced
        # between a locator's lookup and its evaluation has no computed style ('').
        cancelled = f'#job-list tr[data-job-id="{farm["cancelled"]}"] .badge'
        nowrap = "b => b !== null && getComputedStyle(b).whiteSpace === 'nowrap'"
        wait_until(page, f"({nowrap})(document.querySelector('{cancelled}'))")

        page.goto(f"{server.base}/#/videos/{video}")
        page.click("#edit-meta")
        page.fill("#edit-title", "Thermodynamics 1")
        page.fill("#edit-description", "The first law, with examples.")
        page.click("#edit-form button[type=submit]")
        page.wait_for_selector("#video-title:has-text('Thermodynamics 1')")
        assert page.locator("#video-description").text_content() == "The first law, with examples."
        page.click("#edit-meta")
        page.fill("#edit-title", "   ")
        page.click("#edit-form button[type=submit]")
        page.wait_for_selector("#edit-result .notice.error")
        assert "HTTP 422" in page.locator("#edit-result").text_content()
    server.api("PATCH", f"/api/v1/videos/{video}", json={"title": TITLE})


def test_player_speed_volume_keys_buffering_and_level(
    browser: Any, server: Server, farm: dict[str, Any]
) -> None:
    require_hls_js()
    with tab(browser, DESKTOP) as page:
        login(page, server, server.admin, hash=f"#/videos/{farm['video_id']}")
        page.wait_for_selector('#player[data-mode="hls"]')
        video = "document.getElementById('video')"
        page.select_option("#speed", "1.5")
        assert page.evaluate(f"{video}.playbackRate") == 1.5
        page.locator("#volume").fill("0.3")
        assert page.evaluate(f"{video}.volume") == pytest.approx(0.3)
        page.locator("#player").focus()
        page.keyboard.press("m")
        assert page.evaluate(f"{video}.muted") is True
        page.wait_for_selector("#mute[aria-pressed=true]:has-text('Unmute')")
        page.keyboard.press("m")
        assert page.evaluate(f"{video}.muted") is False
        page.keyboard.press("c")  # subtitles on: the first track
        wait_until(page, "document.getElementById('player').dataset.subtitles === 'eng'")
        page.keyboard.press("Space")
        wait_until(page, f"!{video}.paused && {video}.currentTime > 0.3")
        # Under "Auto", the level playing now is named.
        wait_until(
            page, "/^Auto \\(\\d+p\\)$/.test(document.querySelector('#quality option').text)"
        )
        page.keyboard.press("Space")
        wait_until(page, f"{video}.paused")
        before = page.evaluate(f"{video}.currentTime")
        page.keyboard.press("ArrowRight")
        wait_until(page, f"{video}.currentTime >= {before} + 4")
        # Typing in a field is not a shortcut.
        page.focus("#transcribe-language")
        page.keyboard.press("m")
        assert page.evaluate(f"{video}.muted") is False
        # Buffering: shown on "waiting", gone on "playing".
        page.evaluate(f"{video}.dispatchEvent(new Event('waiting'))")
        assert page.locator("#buffering").is_visible()
        page.evaluate(f"{video}.dispatchEvent(new Event('playing'))")
        assert page.locator("#buffering").is_hidden()


def _fake_running(job: dict[str, Any]) -> dict[str, Any]:
    """A job as the API shows it while its worker is quiet: running at 42 %, no news for 40 s."""
    return {
        **job,
        "status": "running",
        "progress": 42.0,
        "step": "encoding",
        "started_at": job["created_at"],
        "finished_at": None,
        "heartbeat_age_seconds": 40.0,
        "news": "no news for 40 s",
    }


def test_being_encoded_state_quiet_worker_and_figures(
    browser: Any, server: Server, farm: dict[str, Any]
) -> None:
    """The API's answers while an encode runs, replayed: the page's states, not the encoder."""
    video = server.api("GET", f"/api/v1/videos/{farm['video_id']}")
    playback = server.api("GET", f"/api/v1/videos/{farm['video_id']}/playback")
    running = _fake_running(next(j for j in video["jobs"] if j["id"] == farm["job_id"]))
    first_encode = {**video, "jobs": [running], "outputs": []}
    nothing = {**playback, "outputs": [], "master": None, "mp4": []}
    jobs = server.api("GET", "/api/v1/jobs?limit=100")
    jobs["items"] = [_fake_running(j) if j["id"] == farm["job_id"] else j for j in jobs["items"]]

    def answer(body: dict[str, Any]) -> Any:
        return lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps(body)
        )

    with tab(browser, PHONE) as page:
        login(page, server, server.admin)
        page.route(f"**/api/v1/videos/{farm['video_id']}", answer(first_encode))
        page.route(f"**/api/v1/videos/{farm['video_id']}/playback", answer(nothing))
        page.route("**/api/v1/jobs?limit=100*", answer(jobs))
        page.route("**/api/v1/jobs/events*", lambda route: route.abort())
        page.goto(f"{server.base}/#/videos/{farm['video_id']}")
        page.wait_for_selector("#encoding-state")
        assert page.locator("#encoding-state").text_content().startswith("Being encoded — 42 %")
        assert page.locator("#player-error").count() == 0
        assert "no news for 40 s" in page.locator("#video-jobs").text_content()
        fits(page, "daily-390x844-video-encoding")

        page.goto(f"{server.base}/#/jobs")
        row = f'#job-list tr[data-job-id="{farm["job_id"]}"]'
        page.wait_for_selector(f"{row} .quiet")
        assert page.locator(f"{row} .quiet").text_content() == "no news for 40 s"
        figures = page.locator(f"{row} td.figures").text_content()
        assert "x real time" in figures and "left" in figures and "waited" in figures
        fits(page, "daily-390x844-jobs-quiet")


def test_upload_queue_language_cancel_and_refusal(
    browser: Any, server: Server, tmp_path: Path, subtitled_clip: Path
) -> None:
    one, two = tmp_path / "one.mkv", tmp_path / "two.mkv"
    one.write_bytes(subtitled_clip.read_bytes())
    two.write_bytes(subtitled_clip.read_bytes())
    with tab(browser, PHONE) as page:
        login(page, server, server.user, hash="#/videos")
        sent: list[str] = []
        page.on("request", lambda r: sent.append(r.url) if "/videos/upload" in r.url else None)
        # A bad language is refused on the page (Chromium's `v`-flag pattern parser too).
        page.set_input_files("#upload-file", [str(one)])
        page.fill("#upload-language", "e")
        page.click("#upload-submit")
        page.wait_for_selector("#upload-result .notice.error:has-text('not a language code')")
        assert sent == []
        assert page.evaluate("document.getElementById('upload-language').validity.valid") is False
        page.fill("#upload-language", "pt-BR")
        assert page.evaluate("document.getElementById('upload-language').validity.valid") is True
        page.fill("#upload-language", "")

        # Two files, one after the other, each with its own line and outcome.
        page.set_input_files("#upload-file", [str(one), str(two)])
        page.click("#upload-submit")
        wait_until(
            page, "document.querySelectorAll('#upload-queue li[data-state=done]').length === 2", 60
        )
        assert page.locator("#upload-queue .outcome .notice.ok").count() == 2
        assert page.locator("#upload-result").text_content() == "Uploaded 2 of 2 files."
        fits(page, "daily-390x844-upload-queue")

        # Cancelled: said as such, the bar stays where it stopped.
        page.route("**/videos/upload*", lambda route: None)  # the server never answers
        page.set_input_files("#upload-file", [str(one)])
        page.click("#upload-submit")
        page.click("#upload-cancel")
        page.wait_for_selector("#upload-result .notice:has-text('cancelled: nothing was kept')")
        assert "refused" not in page.locator("#upload-result").text_content()
        assert "status-cancelled" in page.get_attribute("#upload-status .progress", "class")
        page.unroute("**/videos/upload*")

        # Refused: the bar turns red where it stopped instead of a grey 0 %.
        page.route(
            "**/videos/upload*",
            lambda route: route.fulfill(
                status=413,
                content_type="application/json",
                body=json.dumps({"detail": "the file is larger than 1 MiB"}),
            ),
        )
        page.set_input_files("#upload-file", [str(one)])
        page.click("#upload-submit")
        page.wait_for_selector("#upload-result .notice.error:has-text('larger than 1 MiB')")
        assert "HTTP 413" in page.locator("#upload-result").text_content()
        assert "status-failed" in page.get_attribute("#upload-status .progress", "class")


def test_remember_me_log_out_everywhere_and_role_menu(browser: Any, server: Server) -> None:
    # `vidfarm serve` said where the dashboard is when it started.
    started = (server.data_dir / "serve.log").read_text(errors="replace")
    assert f"Dashboard at {server.base}/" in started
    token = server.cli("token", "create", "--role", "user", "--name", "e2e-remembered")
    with tab(browser, DESKTOP) as page:
        page.goto(f"{server.base}/")
        page.fill("#token", token)
        page.check("#remember")
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#nav:not([hidden])")
        # A user token sees no menu entry it cannot use.
        assert page.locator("#nav a[data-page=workers]").is_hidden()
        assert page.locator("#nav a[data-page=jobs]").is_visible()
        # A new tab of the same browser is logged in already.
        other = page.context.new_page()
        other.goto(f"{server.base}/#/jobs")
        other.wait_for_selector("#job-list")
        assert other.locator("#who").text_content() == "e2e-remembered user"
        other.close()

        page.once("dialog", lambda dialog: dialog.accept())
        page.click("#logout-everywhere")
        page.wait_for_selector("#login-error:has-text('revoked')")
        assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    with tab(browser, DESKTOP) as page:  # the token is dead everywhere
        page.goto(f"{server.base}/")
        page.fill("#token", token)
        page.click("#login-form button[type=submit]")
        page.wait_for_selector("#login-error:has-text('not accepted')")


def test_a_chunked_encode_lists_its_chunks(
    browser: Any, server: Server, farm: dict[str, Any]
) -> None:
    """The API's answers for a chunked encode, replayed: its parts in the detail, the parent
    named on a chunk's row (the API side is tests/integration/test_chunked_farm.py)."""
    parent = server.api("GET", f"/api/v1/jobs/{farm['job_id']}")
    first, second = uuid.uuid4().hex, uuid.uuid4().hex
    chunk = {"type": "encode_chunk", "attempts": 1}
    chunked = {
        **_fake_running(parent),
        "step": "chunks",
        "chunks": [
            {**chunk, "id": first, "status": "completed", "progress": 100.0, "start": 0, "end": 60},
            {
                **chunk,
                "id": second,
                "status": "running",
                "progress": 20.0,
                "start": 60,
                "end": 120,
                "attempts": 2,
            },
        ],
    }
    jobs = server.api("GET", "/api/v1/jobs?limit=100")
    child = {**parent, "id": second, "type": "encode_chunk", "parent_id": parent["id"]}
    jobs["items"] = [child, *jobs["items"]]

    def answer(body: dict[str, Any]) -> Any:
        return lambda route: route.fulfill(
            status=200, content_type="application/json", body=json.dumps(body)
        )

    with tab(browser, DESKTOP) as page:
        login(page, server, server.admin)
        page.route(f"**/api/v1/jobs/{parent['id']}", answer(chunked))
        page.route("**/api/v1/jobs?limit=100*", answer(jobs))
        page.route("**/api/v1/jobs/events*", lambda route: route.abort())
        page.goto(f"{server.base}/#/jobs?job={parent['id']}")
        page.wait_for_selector(".job-detail ol.chunks li")
        parts = page.locator(".job-detail ol.chunks li").all_text_contents()
        assert len(parts) == 2
        assert parts[0].startswith("0 s\u201360 s") and "completed" in parts[0]
        assert "60 s\u2013120 s" in parts[1] and "20 %" in parts[1] and "attempt 2" in parts[1]
        link = page.locator(f'#job-list tr[data-job-id="{second}"] a.parent-link')
        assert link.text_content() == f"of {parent['id'][:8]}"
        assert page.evaluate(OVERFLOW) <= 0
        page.click(f'.job-detail ol.chunks li[data-job-id="{second}"] a')
        page.wait_for_url(f"**#/jobs?job={second}")

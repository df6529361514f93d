"""The dashboard at `/` in Debian's Chromium, against a real `vidfarm serve`.

Upload through the page and watch the job complete live, play the HLS rendition (hls.js),
turn subtitles on, hover the seek bar for sprite thumbnails, fall back to MP4 without hls.js,
restart a job that really failed, read the xAPI outbox and its dead letters, and test a runner
manager's connection. Screenshots of each page go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
import pytest
from farm_browser import (
    REFUSAL,
    SUBTITLE_TEXT,
    TINY_PROFILE,
    Server,
    free_port,
    login,
    require_hls_js,
    screenshot,
    wait_until,
)

from fixtures_media import POD_LADDER_PROFILE, run_ffmpeg_cli, video_args
from processes import held_at_work


@pytest.fixture(scope="module")
def encoded(server: Server, subtitled_clip: Path) -> dict[str, str]:
    """The subtitled clip uploaded and encoded (through the page in the upload test; here
    through the API when that test did not run first)."""
    if "video_id" not in _uploaded:
        with subtitled_clip.open("rb") as handle:
            answer = server.api("POST", "/videos/upload", files={"file": handle})
        _uploaded.update(video_id=answer["file_id"], job_id=answer["job_id"])
    server.wait_job(_uploaded["job_id"], {"completed"})
    return _uploaded


_uploaded: dict[str, str] = {}


def test_login_upload_and_watch_the_job_complete(
    page: Any, server: Server, subtitled_clip: Path
) -> None:
    page.goto(f"{server.base}/")
    page.wait_for_selector("#login-form")
    screenshot(page, "01-login")
    page.fill("#token", "vf_aaaaaaaaaaaa_not-a-token")
    page.click("#login-form button[type=submit]")
    page.wait_for_selector("#login-error:has-text('not accepted')")

    login(page, server, server.admin)
    assert page.locator("#who").text_content() == "e2e-admin admin"
    page.set_input_files("#upload-file", str(subtitled_clip))
    page.click("#upload-submit")
    page.wait_for_selector("#upload-result .notice.ok")
    assert page.get_attribute("#upload-status .progress", "aria-valuenow") == "100"
    link = page.locator("#upload-result a").first.get_attribute("href")
    job_link = page.locator("#upload-result a").nth(1).get_attribute("href")
    video_id = link.rsplit("/", 1)[-1]
    job_id = job_link.rsplit("=", 1)[-1]
    _uploaded.update(video_id=video_id, job_id=job_id)
    page.wait_for_selector(f'#video-list tr[data-video-id="{video_id}"]')

    page.goto(f"{server.base}/#/jobs?type=encode")
    page.wait_for_selector('#live-state[data-state="live"]')
    row = f'#job-list tr[data-job-id="{job_id}"]'
    page.wait_for_selector(f'{row}[data-status="completed"]', timeout=60_000)
    assert page.get_attribute(f"{row} .progress", "aria-valuenow") == "100"
    assert page.locator(f"{row} td.attempts").text_content() == "1/3"
    page.click(f"{row} button.job-id")
    page.wait_for_selector(f'.job-detail[data-job-id="{job_id}"]')
    screenshot(page, "02-jobs")

    page.goto(f"{server.base}/#/videos")
    page.wait_for_selector(f'#video-list tr[data-video-id="{video_id}"] .badge.status-completed')
    screenshot(page, "03-videos")


def test_video_page_plays_hls_with_subtitles_and_sprite_thumbnails(
    page: Any, server: Server, encoded: dict[str, str]
) -> None:
    require_hls_js()
    login(page, server, server.admin, hash=f"#/videos/{encoded['video_id']}")
    page.wait_for_selector('#player[data-mode="hls"]')
    page.click("#play")
    wait_until(page, "document.getElementById('video').currentTime > 1.5")
    state = page.evaluate(
        "() => ({error: window.vidfarmPlayer.error, hls: Boolean(window.vidfarmPlayer.hls),"
        " src: document.getElementById('video').currentSrc})"
    )
    assert state["error"] is None and state["hls"], state
    assert state["src"].startswith("blob:"), state  # media source extensions: hls.js plays
    assert page.locator("#player-error").is_hidden()
    # "Auto" names the level playing once hls.js picked one: "Auto (144p)".
    options = page.locator("#quality option").all_text_contents()
    assert options[0].startswith("Auto") and options[1:] == ["144p", "180p"]

    page.select_option("#subtitles", label="eng")
    wait_until(
        page,
        "(() => { const t = document.querySelector('#video track').track;"
        " return t.mode === 'showing' && t.cues && t.cues.length === 2; })()",
    )
    cue = page.evaluate("document.querySelector('#video track').track.cues[0].text")
    assert cue == SUBTITLE_TEXT

    page.wait_for_selector('#player[data-sprite="10"]')
    box = page.locator("#seek").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] / 2)
    page.wait_for_selector("#seek-preview:not([hidden])")
    image = page.evaluate("document.getElementById('seek-thumb').style.backgroundImage")
    assert "overview.png" in image
    loaded = page.evaluate(
        """async () => {
            const url = document.getElementById('seek-thumb').style.backgroundImage
                .replace(/^url\\("?/, '').replace(/"?\\)$/, '');
            const img = new Image(); img.src = url; await img.decode();
            return [img.naturalWidth, img.naturalHeight];
        }"""
    )
    assert loaded[0] > 0 and loaded[1] > 0
    screenshot(page, "04-video-hls")

    page.click("#play")  # pause: the stub LRS refuses "paused" statements (dead letters)
    wait_until(page, "Number(document.getElementById('xapi-status').dataset.sent) >= 3")
    downloads = page.locator("#outputs a.download")
    assert downloads.count() >= 8
    href = page.locator('#outputs tr[data-kind="mp4"] a.download').first.get_attribute("href")
    assert href is not None and "/media/s/" in href and "token=" not in href  # signed, no token
    answer = httpx.get(urljoin(server.base + "/", href))
    assert answer.status_code == 200 and "attachment" in answer.headers["content-disposition"]


@pytest.fixture(scope="module")
def clip_1080p(media_dir: Path) -> Path:
    """14 s of 1920x1080 with sound: the height lecture platforms live at."""
    target = media_dir / "dashboard-1080p.mp4"
    if not target.exists():
        run_ffmpeg_cli(*video_args("1920x1080", 24, 14.0), str(target))
    return target


def test_quality_switches_up_to_1080p_and_back_while_playing_without_a_stall(
    page: Any, server: Server, clip_1080p: Path
) -> None:
    """Pod's ladder (360p and 720p as HLS + MP4, 1080p HLS only): every rendition starts and
    cuts at the same instants, so hls.js switches between them mid-play with no rebuffering
    (the 1080p variant, the only one muxed without the tee, once started 1.4 s late)."""
    require_hls_js()
    (server.data_dir / "profiles" / "ladder1080.toml").write_text(POD_LADDER_PROFILE)
    with clip_1080p.open("rb") as handle:
        video_id = server.api("POST", "/videos/upload", files={"file": handle})["file_id"]
    job = server.api("POST", f"/api/v1/videos/{video_id}/encode", json={"profile": "ladder1080"})
    server.wait_job(job["id"], {"completed"}, timeout=240)

    login(page, server, server.admin, hash=f"#/videos/{video_id}")
    page.wait_for_selector('#player[data-mode="hls"]')
    wait_until(page, "document.querySelectorAll('#quality option').length === 4")  # manifest read
    options = page.locator("#quality option").all_text_contents()
    assert options[0].startswith("Auto") and options[1:] == ["360p", "720p", "1080p"]
    # Where hls.js finds each fragment on its timeline, per rendition (its own PTS reading).
    page.evaluate(
        """() => {
            window.fragments = [];
            window.vidfarmPlayer.hls.on('hlsLevelPtsUpdated', (_event, data) => {
                const frag = data.frag;
                window.fragments.push({level: frag.level, sn: frag.sn, start: data.start});
            });
        }"""
    )
    page.select_option("#quality", label="360p")  # start low, as a phone on 4G would
    page.click("#play")
    wait_until(page, "document.getElementById('video').currentTime > 0.5")
    page.evaluate(
        """() => {
            const video = document.getElementById('video');
            window.stalls = [];
            const note = (what) => window.stalls.push(what);
            video.addEventListener('waiting', () => note(`waiting at ${video.currentTime}`));
            window.vidfarmPlayer.hls.on('hlsError', (_event, data) => note(data.details));
        }"""
    )
    height = "document.getElementById('video').videoHeight"
    wait_until(page, f"{height} === 360")
    page.select_option("#quality", label="1080p")
    wait_until(page, f"{height} === 1080", timeout=30)
    wait_until(page, "window.vidfarmPlayer.quality === '1080p'")
    up_at = page.evaluate("document.getElementById('video').currentTime")
    page.select_option("#quality", label="360p")
    wait_until(page, f"{height} === 360", timeout=30)
    down_at = page.evaluate("document.getElementById('video').currentTime")
    wait_until(page, f"document.getElementById('video').currentTime > {down_at + 1}")
    assert down_at > up_at, (up_at, down_at)
    assert page.evaluate("window.stalls") == []  # no rebuffering, no hls.js error
    # The same fragment number starts at the same instant in every rendition hls.js loaded it
    # from (within one frame at 24 fps): what makes a switch seamless in every player.
    starts: dict[int, dict[int, float]] = {}
    for fragment in page.evaluate("window.fragments"):
        starts.setdefault(fragment["sn"], {})[fragment["level"]] = fragment["start"]
    shared = {sn: by_level for sn, by_level in starts.items() if len(by_level) > 1}
    levels = {level for by_level in shared.values() for level in by_level}
    assert {0, 2} <= levels, starts  # 360p and 1080p fragments of the same numbers
    for sn, by_level in shared.items():
        assert max(by_level.values()) - min(by_level.values()) <= 1 / 24 + 0.005, (sn, by_level)
    assert page.evaluate("window.vidfarmPlayer.error") is None
    screenshot(page, "05-video-1080p-switch")


def test_single_file_hls_plays_with_hls_js(page: Any, server: Server, subtitled_clip: Path) -> None:
    """Pod's layout (one `<h>p.ts` per rendition, byte-range playlists) plays in hls.js."""
    require_hls_js()
    profile = server.data_dir / "profiles" / "single.toml"
    profile.write_text("hls_single_file = true\n" + TINY_PROFILE)
    with subtitled_clip.open("rb") as handle:
        video_id = server.api("POST", "/videos/upload", files={"file": handle})["file_id"]
    job = server.api("POST", f"/api/v1/videos/{video_id}/encode", json={"profile": "single"})
    server.wait_job(job["id"], {"completed"}, timeout=120)
    outputs = server.api("GET", f"/api/v1/videos/{video_id}")["outputs"]
    variants = [o for o in outputs if o["kind"] == "hls_variant"]
    assert sorted(o["path"] for o in variants) == ["144p.m3u8", "180p.m3u8"]
    for variant in variants:
        auth = {"Authorization": f"Bearer {server.admin}"}
        playlist = httpx.get(urljoin(server.base + "/", variant["url"]), headers=auth).text
        uris = {line for line in playlist.splitlines() if line and not line.startswith("#")}
        assert uris == {variant["path"].replace(".m3u8", ".ts")}, playlist  # one file
        assert playlist.count("#EXT-X-BYTERANGE:") >= 5, playlist  # 12 s in 2 s ranges

    login(page, server, server.admin, hash=f"#/videos/{video_id}")
    page.wait_for_selector('#player[data-mode="hls"]')
    wait_until(page, "document.querySelectorAll('#quality option').length === 3")
    page.select_option("#quality", label="144p")
    page.click("#play")
    wait_until(page, "document.getElementById('video').currentTime > 2.5")
    page.select_option("#quality", label="180p")
    wait_until(page, "document.getElementById('video').videoHeight === 180", timeout=30)
    assert page.evaluate("window.vidfarmPlayer.error") is None


def test_player_falls_back_to_mp4_without_hls_js(
    page: Any, server: Server, encoded: dict[str, str]
) -> None:
    page.route(
        "**/ui/vendor/hls.min.js",
        lambda route: route.fulfill(status=404, body="hls.js is not installed"),
    )
    login(page, server, server.admin, hash=f"#/videos/{encoded['video_id']}")
    page.wait_for_selector('#player[data-mode="mp4"]')
    assert "HLS is unavailable" in page.locator("#player-notice").text_content()
    page.click("#play")
    wait_until(page, "document.getElementById('video').currentTime > 0.5")
    source = page.evaluate("document.getElementById('video').currentSrc")
    # The largest MP4, through a signed URL: a <video> cannot send headers, and no token
    # goes in a URL any more.
    assert source.endswith("/180p.mp4") and "/media/s/" in source and "token" not in source
    assert page.evaluate("window.vidfarmPlayer.error") is None
    screenshot(page, "05-video-mp4-fallback")


def test_restart_a_failed_job(page: Any, server: Server, small_clip: Path) -> None:
    login(page, server, server.admin)
    # Upload by drag and drop: a File dropped on the zone, as a browser makes it.
    data = base64.b64encode(small_clip.read_bytes()).decode()
    page.evaluate(
        """([data, name]) => {
            const bytes = Uint8Array.from(atob(data), c => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], name, {type: 'video/mp4'}));
            document.getElementById('dropzone')
                .dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true}));
        }""",
        [data, "dropped.mp4"],
    )
    page.click("#upload-submit")
    page.wait_for_selector("#upload-result .notice.ok")
    video_id = page.locator("#upload-result a").first.get_attribute("href").rsplit("/", 1)[-1]
    first = page.locator("#upload-result a").nth(1).get_attribute("href").rsplit("=", 1)[-1]
    server.wait_job(first, {"completed"})

    # A real failure: the source disappears from storage, then an encode is asked for.
    [source] = (server.data_dir / "media" / "sources" / video_id).iterdir()
    kept = source.with_name("kept")
    shutil.move(source, kept)
    job = server.api("POST", f"/api/v1/videos/{video_id}/encode", json={})
    failed = server.wait_job(job["id"], {"failed"})
    assert failed["error"]
    shutil.move(kept, source)  # the operator puts the file back, then restarts the job

    page.goto(f"{server.base}/#/jobs?status=failed")
    row = f'#job-list tr[data-job-id="{job["id"]}"]'
    page.wait_for_selector(f'{row}[data-status="failed"]')
    assert page.locator(f"{row} td.error-text").text_content() == failed["error"]
    page.click(f"{row} button.job-id")
    page.wait_for_selector(".job-detail .job-error")
    screenshot(page, "06-jobs-failed")
    page.check(f"{row} input.select")
    page.click("#restart-selected")
    page.wait_for_selector("#flash:has-text('Restarted 1 job.')")
    assert page.locator("#action-result").text_content() == "Restarted 1 job."
    # Under the "failed" filter, a job that left that state leaves the list.
    page.wait_for_selector(row, state="detached")
    server.wait_job(job["id"], {"completed"})
    page.select_option("#filter-status", "completed")
    page.wait_for_selector(f'{row}[data-status="completed"]')


def test_user_token_sees_no_admin_actions(page: Any, server: Server) -> None:
    login(page, server, server.user, hash="#/jobs")
    page.wait_for_selector("#job-list")
    assert page.locator("#restart-selected").is_hidden()
    assert page.locator("#cancel-selected").is_visible()
    page.goto(f"{server.base}/#/workers")
    page.wait_for_selector("#workers .notice")
    assert "only admins" in page.locator("#workers").text_content()
    page.goto(f"{server.base}/#/xapi")
    page.wait_for_selector("#dead-letters .notice")
    assert "admins only" in page.locator("#dead-letters").text_content()


def test_xapi_page_shows_the_outbox_and_redelivers_dead_letters(
    page: Any, server: Server, encoded: dict[str, str]
) -> None:
    # Events of the player (or of this request, when the player test did not run).
    server.api(
        "POST",
        "/xapi/video/",
        json=[
            {"video_id": encoded["video_id"], "verb": "played", "time": 0},
            {"video_id": encoded["video_id"], "verb": "paused", "time": 1.5},
        ],
    )
    server.wait(
        "a dead letter and a delivered statement",
        lambda: (s := server.api("GET", "/api/v1/xapi/status"))["dead"] and s["delivered"],
    )
    login(page, server, server.admin, hash="#/xapi")
    page.wait_for_selector("#dead-list tr.dead")
    assert int(page.locator('[data-stat="dead"] .value').text_content()) >= 1
    assert int(page.locator('[data-stat="delivered"] .value').text_content()) >= 1
    assert REFUSAL in page.locator("#dead-list td.reason").first.text_content()
    screenshot(page, "07-xapi")
    dead = server.api("GET", "/api/v1/xapi/status")["dead"]
    page.click("#redeliver-all")
    page.wait_for_selector(f"#flash:has-text('{dead} statement')")
    assert "back in the queue" in page.locator("#flash").text_content()


@pytest.fixture
def runner_manager(server: Server, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real runner manager (`vidfarm runner`) on loopback: (URL, its token)."""
    token = "e2e-runner-token-" + "x" * 16
    port = free_port()
    env = {
        **server.env,
        "VIDFARM_DATA_DIR": str(tmp_path / "runner"),
        "VIDFARM_PORT": str(port),
        "VIDFARM_RUNNER_TOKENS": token,
    }
    process = subprocess.Popen(
        [*server.cli_command(), "runner"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        server.wait("the runner manager", lambda: _answers(f"{url}/api/health"), timeout=30)
        yield url, token
    finally:
        process.terminate()
        process.wait(timeout=30)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url).status_code == 200
    except httpx.TransportError:
        return False


def test_workers_page_and_runner_connection(page: Any, server: Server, request: Any) -> None:
    login(page, server, server.admin, hash="#/workers")
    page.wait_for_selector("#transport")
    assert page.locator("#transport strong").text_content() == "local"
    assert page.locator('#worker-list tr[data-worker="embedded pool"]').is_visible()
    url, token = request.getfixturevalue("runner_manager")

    page.fill("#runner-add #runner-name", "e2e runner")
    page.fill("#runner-add #runner-url", url)
    page.fill("#runner-add #runner-priority", "1")
    page.fill("#runner-add #runner-token", token)
    page.click("#runner-add button[type=submit]")
    row = '#runner-list tr.runner[data-name="e2e runner"]'
    page.wait_for_selector(row)
    page.click(f"{row} button.test-connection")
    result = page.wait_for_selector(f"{row} .test-result")
    assert result.get_attribute("data-ok") == "true", result.text_content()
    assert "Connection OK" in result.text_content()
    # A vidfarm runner announces chunks in its health answer (a foreign Esup-Runner does not).
    assert page.locator(f"{row} .health .takes-chunks").text_content() == " · takes chunks"
    # This farm gives managers http://127.0.0.1:port: Esup-Runner would refuse it (422).
    assert "Warning: the URL managers are given" in result.text_content()
    screenshot(page, "08-workers")

    # A wrong token: the test says so explicitly.
    page.click(f"{row} button:has-text('Edit')")
    page.fill("form[id^=runner-edit] #runner-token", "wrong-token-" + "y" * 16)
    page.click("form[id^=runner-edit] button[type=submit]")
    # Saved: the list is drawn again, without the edit form or the first test's result.
    page.wait_for_selector("form[id^=runner-edit]", state="detached")
    page.wait_for_selector(f"{row} .test-result", state="detached")
    page.click(f"{row} button.test-connection")
    result = page.wait_for_selector(f"{row} .test-result")
    assert result.get_attribute("data-ok") == "false"
    assert "Connection failed" in result.text_content()

    page.click(f"{row} button.toggle-active")
    page.wait_for_selector(f"{row} .badge:has-text('disabled')")


def test_workers_page_shows_celery_workers_and_their_running_job(
    page: Any, tmp_path: Path, make_media: Any
) -> None:
    """With a broker, the page lists the Celery workers that answer, with the job each runs."""
    from services import require_service

    require_service("Redis", "127.0.0.1", 6379)
    data_dir = tmp_path / "celery-farm"
    (data_dir / "profiles").mkdir(parents=True)
    (data_dir / "profiles" / "default.toml").write_text(
        'preset = "veryfast"\n[[renditions]]\nheight = 360\nmin_video_bitrate = "500k"\n'
        'video_bitrate = "750k"\nmax_video_bitrate = "1000k"\naudio_bitrate = "96k"\n'
    )
    prefix = f"e2e{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDFARM_")}
    env |= {
        "VIDFARM_DATA_DIR": str(data_dir),
        "VIDFARM_BROKER_URL": "redis://127.0.0.1:6379/13",
        "VIDFARM_QUEUE_ENCODING": f"{prefix}-encoding",
        "VIDFARM_QUEUE_TRANSCRIPTION": f"{prefix}-transcription",
        "VIDFARM_QUEUE_XAPI": f"{prefix}-xapi",
        "VIDFARM_POLL_SECONDS": "0.3",
    }
    server = Server(data_dir=data_dir, env=env)
    server.start()
    log = (data_dir / "worker.log").open("ab")
    worker = subprocess.Popen(
        [*Server.cli_command(), "worker", "--name", "e2e-encode"],
        env=env
        | {
            "VIDFARM_API_URL": server.base,
            "VIDFARM_WORKER_TOKEN": server.cli("token", "create", "--role", "worker"),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        clip = make_media("e2e-celery.mp4", *video_args("640x360", 25, 6.0))
        with clip.open("rb") as handle:
            job_id = server.api("POST", "/videos/upload", files={"file": (clip.name, handle)})[
                "job_id"
            ]
        # Its encoder is held still while the page looks: the job is running, however fast.
        with held_at_work(data_dir / "work" / f"{job_id}-a1", timeout=90):
            login(page, server, server.admin, hash="#/workers")
            page.wait_for_selector("#transport")
            assert page.locator("#transport strong").text_content() == "celery"
            row = page.locator('#worker-list tr[data-worker^="e2e-encode@"]')
            row.wait_for()
            assert f"{prefix}-encoding" in row.text_content()
            assert row.locator(f'a[href="#/jobs?job={job_id}"]').count() == 1  # its job
            assert "e2e-celery.mp4" in row.text_content()  # named by its video's title
            screenshot(page, "09-workers-celery")
        assert server.wait_job(job_id, {"completed"})["attempts"] == 1
    finally:
        worker.terminate()
        worker.wait(30)
        server.stop()

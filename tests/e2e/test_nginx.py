"""The machine's nginx with the configuration `vidfarm deploy nginx` prints, in front of serve.

A signed playback URL plays through nginx (master, variant, a segment by Range, with the
content types, cache headers and CORS a player needs), goes on playing once `vidfarm serve`
is stopped, and a bad or expired signature is refused; hls.js plays the embed page through
it. nginx runs in the foreground with a temporary prefix on a free port; without nginx the
test skips (fails when CI is set).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import av
import httpx
import m3u8
import pytest
from farm_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    TINY_PROFILE,
    Server,
    require_chromium,
    require_hls_js,
)
from farm_browser import wait_until as play_until

from services import free_port
from waiting import wait_until

NGINX = Path("/usr/sbin/nginx")


def require_nginx() -> None:
    if NGINX.exists():
        return
    reason = f"{NGINX} is not installed (apt-get install -y nginx)"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI is set: the nginx test is required")
    pytest.skip(reason)


@contextmanager
def nginx_scheme_server(tmp_path: Path, **settings: str) -> Iterator[Server]:
    """`vidfarm serve` signing media links nginx's way; `settings` add VIDFARM_* values."""
    require_nginx()
    data = tmp_path / "farm"
    (data / "profiles").mkdir(parents=True)
    (data / "profiles" / "default.toml").write_text(TINY_PROFILE)
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDFARM_")}
    env |= {
        "VIDFARM_DATA_DIR": str(data),
        "VIDFARM_POLL_SECONDS": "0.2",
        "VIDFARM_MEDIA_URL_SCHEME": "nginx",
        "VIDFARM_CORS_ORIGINS": "*",
        **settings,
    }
    running = Server(data_dir=data, env=env)
    running.start()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    with nginx_scheme_server(tmp_path) as running:
        yield running


@pytest.fixture
def nginx(tmp_path: Path, server: Server) -> Iterator[str]:
    with nginx_in_front(tmp_path, server) as base:
        yield base


@contextmanager
def nginx_in_front(tmp_path: Path, server: Server) -> Iterator[str]:
    """The machine's nginx, with `vidfarm deploy nginx`'s configuration, before `server`."""
    port = free_port()
    config = server.cli(
        "deploy", "nginx", "--listen", str(port), "--upstream", server.base, "--access-log", "off"
    )
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    (prefix / "nginx.conf").write_text(config + "\n")
    globals_ = f"daemon off; pid {prefix}/nginx.pid; error_log {prefix}/error.log; user root;"
    process = subprocess.Popen(
        [str(NGINX), "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", globals_],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code in (200, 502)
        except httpx.TransportError:
            return False

    wait_until(answers, 15, "nginx to listen")
    try:
        yield base
    finally:
        process.terminate()
        process.wait(timeout=10)


def _signed(key: bytes, expires: int, video: str) -> str:
    digest = hashlib.md5(f"{expires}/{video}/ ".encode() + key, usedforsecurity=False).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def test_signed_media_through_nginx_without_vidfarm(
    server: Server, nginx: str, small_clip: Path
) -> None:
    with small_clip.open("rb") as handle:  # through nginx: uploads are proxied, streamed
        answer = httpx.post(
            f"{nginx}/videos/upload",
            headers={"Authorization": f"Bearer {server.admin}"},
            files={"file": handle},
            timeout=60,
        ).json()
    server.wait_job(answer["job_id"], {"completed"})
    playback = httpx.get(
        f"{nginx}/api/v1/videos/{answer['file_id']}/playback",
        headers={"Authorization": f"Bearer {server.admin}"},
    ).json()
    master = playback["master"]
    assert master.startswith(f"{nginx}/media/n/"), master  # links name nginx's address

    def fetch(url: str, **headers: str) -> httpx.Response:
        response = httpx.get(url, headers={"Origin": "https://lms.example", **headers})
        assert response.status_code in (200, 206), (url, response.status_code, response.text)
        return response

    def play() -> bytes:
        top = fetch(master)
        assert top.headers["content-type"] == "application/vnd.apple.mpegurl"
        assert top.headers["cache-control"] == "public, max-age=2"
        assert top.headers["access-control-allow-origin"] == "*"
        variant_uri = next(x for x in top.text.splitlines() if x.endswith(".m3u8"))
        variant = fetch(str(httpx.URL(master).join(variant_uri)))
        segment_uri = next(x for x in variant.text.splitlines() if x and not x.startswith("#"))
        segment = fetch(str(httpx.URL(master).join(segment_uri)), Range="bytes=0-187")
        assert segment.status_code == 206 and len(segment.content) == 188
        assert "immutable" in segment.headers["cache-control"]
        assert segment.headers["content-type"] in ("video/mp2t", "video/iso.segment", "video/mp4")
        return segment.content

    first = play()
    # vidfarm checks the same URL itself, and serves the same bytes.
    direct = httpx.get(master.replace(nginx, server.base)).text
    assert direct == fetch(master).text

    match = re.match(r".*/media/n/(\d+)/([^/]+)/([0-9a-f]{32})/(.*)$", master)
    assert match is not None
    expires, signature, video, rest = match.groups()
    key = (server.data_dir / "media-signing-key").read_text().strip().encode()
    assert signature == _signed(key, int(expires), video)  # nginx's secure_link_md5 format
    altered = ("B" if signature[0] == "A" else "A") + signature[1:]  # not the padding bits
    past = int(expires) - 10 * 365 * 86400
    refused = [
        f"{nginx}/media/n/{expires}/{altered}/{video}/{rest}",
        f"{nginx}/media/n/{past}/{_signed(key, past, video)}/{video}/{rest}",
        f"{nginx}/media/n/{expires}/{signature}/{'0' * 32}/{rest}",
    ]
    for url in refused:
        assert httpx.get(url).status_code == 403, url
    # Nothing of the media folder but published files: a marker, the key file stay hidden.
    job = rest.split("/")[0]
    for path in (f"{video}/{job}/.attempt", f"{video}/{job}/..%2f..%2fmedia-signing-key"):
        response = httpx.get(f"{nginx}/media/n/{expires}/{signature}/{path}")
        assert response.status_code in (400, 403, 404, 422), (path, response.status_code)

    # A signed file missing from the view (links minted before it was made): vidfarm answers.
    view = server.data_dir / "media" / "published" / video / job
    master_link = view / "master.m3u8"
    saved = master_link.readlink()  # no subtitles here: the master is a link
    master_link.unlink()
    assert fetch(master).text == direct
    master_link.symlink_to(saved)

    server.stop()
    assert httpx.get(f"{nginx}/healthz").status_code == 502  # vidfarm is gone
    assert play() == first  # the video still plays
    assert httpx.get(refused[0]).status_code == 403


def test_hls_js_plays_the_embed_through_nginx(server: Server, nginx: str, small_clip: Path) -> None:
    """The embed page (proxied) plays with hls.js; every media request is nginx's /media/n/."""
    require_chromium()
    require_hls_js()
    from playwright.sync_api import sync_playwright

    headers = {"Authorization": f"Bearer {server.admin}"}
    with small_clip.open("rb") as handle:
        answer = httpx.post(
            f"{nginx}/videos/upload", headers=headers, files={"file": handle}, timeout=60
        ).json()
    server.wait_job(answer["job_id"], {"completed"})
    video = answer["file_id"]
    changed = httpx.patch(
        f"{nginx}/api/v1/videos/{video}", headers=headers, json={"visibility": "unlisted"}
    )
    assert changed.status_code == 200, changed.text
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(20_000)
            requests: list[str] = []
            page.on("request", lambda request: requests.append(request.url))
            page.goto(f"{nginx}/embed/{video}")
            page.locator('#player[data-mode="hls"]').wait_for()
            page.locator("#play").click()
            play_until(page, "document.getElementById('video').currentTime > 1")
            assert page.evaluate("window.vidfarmPlayer.error") is None
        finally:
            browser.close()
    media = [url for url in requests if "/media/" in url]
    assert any(url.endswith(".ts") for url in media), media
    assert all(url.startswith(f"{nginx}/media/n/") for url in media), media


def test_a_lecture_plays_early_through_nginx(tmp_path: Path, hd_clip: Path) -> None:
    """Playable early with VIDFARM_MEDIA_URL_SCHEME=nginx: the growing EVENT playlist and the
    chunks' preview segments are in no published view, so nginx hands them to vidfarm (its
    404 fallback); once stitched, the same URL answers the final playlist."""
    chunked = {
        "VIDFARM_WORKER_CONCURRENCY": "1",  # chunks in order: the first one plays first
        "VIDFARM_CHUNK_SECONDS": "4",
        "VIDFARM_CHUNK_MIN_SECONDS": "10",
    }
    with (
        nginx_scheme_server(tmp_path, **chunked) as server,
        nginx_in_front(tmp_path, server) as base,
    ):
        auth = {"Authorization": f"Bearer {server.admin}"}
        with hd_clip.open("rb") as handle:
            answer = httpx.post(
                f"{base}/videos/upload", headers=auth, files={"file": handle}, timeout=60
            ).json()
        video, job_id = answer["file_id"], answer["job_id"]
        early: list[tuple[str, m3u8.M3U8, httpx.Response]] = []

        def fetch(url: str) -> httpx.Response:
            response = httpx.get(url, headers={"Origin": "https://lms.example"}, timeout=30)
            assert response.status_code == 200, (url, response.status_code, response.text)
            assert response.headers["access-control-allow-origin"] == "*"
            return response

        def played_early_or_done() -> bool:
            links: dict[str, Any] = httpx.get(
                f"{base}/api/v1/videos/{video}/playback", headers=auth
            ).json()
            if links["event"] and not early:
                assert links["master"].startswith(f"{base}/media/n/")
                master = m3u8.loads(fetch(links["master"]).text)
                variant_url = str(httpx.URL(links["master"]).join(master.playlists[0].uri))
                variant = m3u8.loads(fetch(variant_url).text)
                if variant.segments and not variant.is_endlist:  # not stitched meanwhile
                    segment_url = str(httpx.URL(variant_url).join(variant.segments[0].uri))
                    early.append((variant_url, variant, fetch(segment_url)))
            return bool(server.api("GET", f"/api/v1/jobs/{job_id}")["status"] == "completed")

        wait_until(played_early_or_done, 180, "the chunked encode", interval=0.05)
        ((variant_url, variant, segment),) = early
        assert variant.playlist_type == "event" and not variant.is_endlist
        assert variant.segments[0].uri.startswith("../") and "preview_" in variant.segments[0].uri
        (tmp_path / "early.ts").write_bytes(segment.content)
        with av.open(str(tmp_path / "early.ts")) as container:
            assert sorted(s.type for s in container.streams) == ["audio", "video"]
            assert next(container.decode(video=0)).height == 144
        final = m3u8.loads(fetch(variant_url).text)  # the same URL, now the final VOD
        assert final.is_endlist and final.playlist_type == "vod"
        links = httpx.get(f"{base}/api/v1/videos/{video}/playback", headers=auth).json()
        assert not links["event"] and links["master"].endswith(f"/{job_id}/master.m3u8")
        served = fetch(links["master"])  # the stitched encode: from nginx's view, cached
        assert served.headers["cache-control"] == "public, max-age=2"

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
from pathlib import Path

import httpx
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


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
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
    }
    running = Server(data_dir=data, env=env)
    running.start()
    yield running
    running.stop()


@pytest.fixture
def nginx(tmp_path: Path, server: Server) -> Iterator[str]:
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
    yield base
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

"""Playback anywhere: a page on another origin plays a private video through hls.js with only
a signed URL (every variant), gets 403 once it expires, and an origin not listed gets nothing.

"Another origin" is another loopback port: a tiny HTTP server serves the platform's page.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from farm_browser import Origin, Server, start_server, wait_until

from vidfarm.api.signing import MediaSigner, load_key

PAGE = """<!doctype html><meta charset="utf-8"><title>A platform's page</title>
<video id="v" muted playsinline width="320"></video>
<script src="{vidfarm}/ui/vendor/hls.min.js"></script>
<script>
window.state = {{ fatal: null, levels: 0, fragLevels: [], requests: [] }};
window.play = (src) => {{
  window.hls?.destroy();
  window.state = {{ fatal: null, levels: 0, fragLevels: [], requests: [] }};
  const hls = new Hls({{ xhrSetup(xhr, url) {{ window.state.requests.push(url); }} }});
  window.hls = hls;
  hls.on(Hls.Events.MANIFEST_PARSED, (_e, data) => {{ window.state.levels = data.levels.length; }});
  hls.on(Hls.Events.FRAG_LOADED, (_e, d) => {{ window.state.fragLevels.push(d.frag.level); }});
  hls.on(Hls.Events.ERROR, (_e, data) => {{
    if (data.fatal) window.state.fatal = `${{data.details}} ${{data.response?.code ?? 0}}`;
  }});
  hls.loadSource(src);
  hls.attachMedia(document.getElementById("v"));
  document.getElementById("v").play().catch(() => {{}});
}};
</script>
"""


@pytest.fixture(scope="module")
def origins() -> Iterator[tuple[Origin, Origin]]:
    """The platform's origin (listed in VIDFARM_CORS_ORIGINS) and a stranger's (not listed)."""
    platform, stranger = Origin(), Origin()
    yield platform, stranger
    platform.close()
    stranger.close()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, origins: tuple[Origin, Origin]
) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("cross-origin"), VIDFARM_CORS_ORIGINS=origins[0].url
    )
    for origin in origins:
        origin.body = PAGE.format(vidfarm=running.base).encode()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def private_video(server: Server, small_clip: Path) -> str:
    """A video uploaded with the user token (private: nobody else may list or play it)."""
    with small_clip.open("rb") as handle:
        answer = httpx.post(
            f"{server.base}/videos/upload",
            headers={"Authorization": f"Bearer {server.user}"},
            files={"file": handle},
            timeout=60,
        ).json()
    server.wait_job(answer["job_id"], {"completed"})
    return str(answer["file_id"])


def playback(server: Server, video_id: str) -> dict[str, Any]:
    response = httpx.get(
        f"{server.base}/api/v1/videos/{video_id}/playback",
        headers={"Authorization": f"Bearer {server.user}"},
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_page_on_another_origin_plays_every_variant_with_a_signed_url(
    page: Any, server: Server, origins: tuple[Origin, Origin], private_video: str
) -> None:
    master = playback(server, private_video)["master"]
    assert master.startswith(f"{server.base}/media/s/")
    page.goto(origins[0].url)
    page.evaluate("(src) => window.play(src)", master)
    wait_until(page, "window.state.levels > 0 && window.state.fragLevels.length > 0")
    levels = page.evaluate("window.state.levels")
    assert levels == 2  # the tiny profile's 144p and 180p
    for level in range(levels):  # switch quality: each variant's playlist and segments load
        page.evaluate(f"window.hls.currentLevel = {level}")
        wait_until(page, f"window.state.fragLevels.includes({level})")
    wait_until(page, "document.getElementById('v').currentTime > 0.3")
    assert page.evaluate("window.state.fatal") is None
    requests = page.evaluate("window.state.requests")
    assert all(urlsplit(url).path.startswith("/media/s/") for url in requests)
    assert not any("token" in url for url in requests)


def test_a_signed_url_is_refused_once_it_has_expired(
    page: Any, server: Server, origins: tuple[Origin, Origin], private_video: str
) -> None:
    master = urlsplit(playback(server, private_video)["master"]).path
    job_and_file = master.split("/", 6)[-1]  # /media/s/<expires>/<signature>/<video>/<rest>
    signer = MediaSigner(load_key("", server.data_dir))
    short = signer.sign(private_video, 2)
    page.goto(origins[0].url)
    page.evaluate("(src) => window.play(src)", server.base + short.url(job_and_file))
    wait_until(page, "window.state.levels > 0")
    while time.time() <= short.expires:  # the clock passes the signed expiry
        time.sleep(0.1)
    page.evaluate("(src) => window.play(src)", server.base + short.url(job_and_file))
    wait_until(page, "window.state.fatal !== null")
    assert page.evaluate("window.state.fatal") == "manifestLoadError 403"


def test_an_origin_not_listed_cannot_read_the_media(
    page: Any, server: Server, origins: tuple[Origin, Origin], private_video: str
) -> None:
    master = playback(server, private_video)["master"]
    page.goto(origins[1].url)
    page.evaluate("(src) => window.play(src)", master)
    wait_until(page, "window.state.fatal !== null")
    assert page.evaluate("window.state.fatal") == "manifestLoadError 0"  # blocked by CORS


def test_no_token_or_signature_in_any_log_line(server: Server, private_video: str) -> None:
    """The access log sees ?token=, bearer tokens and signed paths: none may be written."""
    links = playback(server, private_video)
    signatures = {urlsplit(links["master"]).path.split("/")[4]}
    legacy = httpx.get(
        f"{server.base}/videos/stream/{private_video}_transcoded.m3u8",
        params={"token": server.user},
    )
    assert legacy.status_code == 307
    signatures.add(legacy.headers["location"].split("/")[4])
    signed = httpx.get(server.base + legacy.headers["location"], follow_redirects=True)
    assert signed.status_code == 200
    bad = "vf_abcdefghijkl_" + "s3cr3t" * 6
    assert httpx.get(f"{server.base}/api/v1/me", params={"token": bad}).status_code == 401
    # vf_<id>_<secret>: the id has no "_", the secret may (rsplit once picked a 1-letter tail).
    secrets = {t.split("_", 2)[2] for t in (server.user, server.admin)} | {"s3cr3t" * 6}
    secrets |= signatures

    def logged() -> str:
        text = (server.data_dir / "serve.log").read_text(errors="replace")
        return text if f"/videos/stream/{private_video}_transcoded.m3u8?token=" in text else ""

    log = server.wait("the access log line of the ?token= request", logged, timeout=10)
    assert "_transcoded.m3u8?token=[redacted]" in log
    assert "/media/s/" in log and "/[redacted]/" in log
    leaks = [line for line in log.splitlines() if any(secret in line for secret in secrets)]
    assert not leaks, leaks

"""Embeds: an unlisted video plays in an <iframe> on a third origin (neither vidfarm nor the
dashboard's) through hls.js, with its subtitles and sprite thumbnails and no token; a site
not in VIDFARM_EMBED_FRAME_ANCESTORS cannot frame it; the video page shows the embed code.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from farm_browser import (
    SUBTITLE_TEXT,
    Origin,
    Server,
    login,
    require_hls_js,
    screenshot,
    start_server,
    wait_until,
)

FRAMING = """<!doctype html><meta charset="utf-8"><title>A course page</title>
<h1>Week 1</h1>
<iframe id="embed" src="{src}" width="640" height="400" allow="fullscreen; autoplay"></iframe>
"""


@pytest.fixture(scope="module")
def sites() -> Iterator[tuple[Origin, Origin]]:
    """A site allowed to frame the embeds, and one that is not."""
    allowed, stranger = Origin(), Origin()
    yield allowed, stranger
    allowed.close()
    stranger.close()


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, sites: tuple[Origin, Origin]
) -> Iterator[Server]:
    running = start_server(
        tmp_path_factory.mktemp("embed"), VIDFARM_EMBED_FRAME_ANCESTORS=sites[0].url
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def unlisted(server: Server, subtitled_clip: Path) -> str:
    """The subtitled clip, uploaded and encoded with the user token, then made unlisted."""
    headers = {"Authorization": f"Bearer {server.user}"}
    with subtitled_clip.open("rb") as handle:
        answer = httpx.post(
            f"{server.base}/videos/upload", headers=headers, files={"file": handle}, timeout=60
        ).json()
    server.wait_job(answer["job_id"], {"completed"})
    video = str(answer["file_id"])
    changed = httpx.patch(
        f"{server.base}/api/v1/videos/{video}", headers=headers, json={"visibility": "unlisted"}
    )
    assert changed.status_code == 200, changed.text
    return video


def test_an_unlisted_video_plays_in_an_iframe_on_a_third_origin(
    page: Any, server: Server, sites: tuple[Origin, Origin], unlisted: str
) -> None:
    require_hls_js()
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    sites[0].body = FRAMING.format(src=f"{server.base}/embed/{unlisted}").encode()
    page.goto(sites[0].url)
    frame = page.frame_locator("#embed")
    frame.locator('#player[data-mode="hls"]').wait_for()
    embedded = next(f for f in page.frames if f.url.startswith(f"{server.base}/embed/"))
    assert embedded.evaluate("location.origin") != page.evaluate("location.origin")

    frame.locator("#play").click()
    wait_until(embedded, "document.getElementById('video').currentTime > 1")
    assert embedded.evaluate("window.vidfarmPlayer.error") is None
    assert embedded.evaluate("document.getElementById('video').currentSrc").startswith("blob:")

    frame.locator("#subtitles").select_option(index=1)
    wait_until(
        embedded,
        "(() => { const t = document.querySelector('#video track').track;"
        " return t.mode === 'showing' && t.cues && t.cues.length === 2; })()",
    )
    assert embedded.evaluate("document.querySelector('#video track').track.cues[0].text") == (
        SUBTITLE_TEXT
    )
    frame.locator('#player[data-sprite="10"]').wait_for()
    box = frame.locator("#seek").bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.55, box["y"] + box["height"] / 2)
    frame.locator("#seek-preview:not([hidden])").wait_for()
    thumb = embedded.evaluate("document.getElementById('seek-thumb').style.backgroundImage")
    assert "overview.png" in thumb and "/media/s/" in thumb
    screenshot(page, "10-embed-third-origin")

    media = [url for url in requests if url.startswith(server.base + "/media/")]
    assert any(url.endswith(".ts") for url in media) and any(".vtt" in url for url in media)
    assert not any("token" in url for url in requests)


def test_a_site_not_allowed_cannot_frame_the_embed(
    page: Any, server: Server, sites: tuple[Origin, Origin], unlisted: str
) -> None:
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    sites[1].body = FRAMING.format(src=f"{server.base}/embed/{unlisted}").encode()
    refused = "chrome-error://"  # Chromium's error page takes the frame's place
    with page.expect_event("framenavigated", lambda f: f.url.startswith(refused)):
        page.goto(sites[1].url)
    assert [f.url.split("/")[0] for f in page.frames[1:]] == ["chrome-error:"]
    assert any(
        "violates the following Content Security Policy directive" in text
        and f'"frame-ancestors {sites[0].url}"' in text
        for text in console
    ), console


def test_the_video_page_shows_the_share_link_and_embed_code(
    page: Any, server: Server, unlisted: str
) -> None:
    login(page, server, server.admin, hash=f"#/videos/{unlisted}")
    page.wait_for_selector('#sharing[data-visibility="unlisted"]')
    link = page.input_value("#share-link")
    assert link == f"{server.base}/embed/{unlisted}"
    code = page.input_value("#embed-code")
    assert code.startswith(f'<iframe src="{link}"') and code.endswith("></iframe>")
    screenshot(page, "11-video-sharing")

    page.select_option("#visibility", "private")
    page.wait_for_selector('#sharing[data-visibility="private"]')
    assert page.locator("#share-link").count() == 0
    assert httpx.get(link).status_code == 404  # the embed is gone with the link
    page.select_option("#visibility", "unlisted")
    page.wait_for_selector('#sharing[data-visibility="unlisted"] #embed-code')
    assert httpx.get(link).status_code == 200

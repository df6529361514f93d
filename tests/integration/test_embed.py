"""Visibility and embeds: private plays for its owner only, unlisted from its embed URL, public
is listed too; /embed/<video> may be framed where VIDFARM_EMBED_FRAME_ANCESTORS says."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import m3u8
import pytest
from test_api import Api, make_settings, start_api

from vidfarm.config import Settings

ANCESTORS = "'self' https://pod.example.org"


@pytest.fixture
def shared(tmp_path: Path, pg_database: str, small_clip: Path) -> Iterator[tuple[Api, str]]:
    """The API with one encoded (private) video of the user token."""
    settings = make_settings(tmp_path, database_url=pg_database, embed_frame_ancestors=ANCESTORS)
    client, api = start_api(settings)
    with client:
        body = api.upload(small_clip).json()
        assert api.wait_task(body["job_id"])["state"] == "SUCCESS"
        yield api, str(body["file_id"])
    api.runtime.engine.dispose()


def set_visibility(api: Api, video: str, visibility: str, role: str = "user") -> Any:
    return api.client.patch(
        f"/api/v1/videos/{video}", headers=api.headers(role), json={"visibility": visibility}
    )


def anonymous(api: Api, url: str) -> Any:
    parts = urlsplit(url)
    return api.client.get(parts.path + (f"?{parts.query}" if parts.query else ""))


def test_private_video_has_no_embed(shared: tuple[Api, str]) -> None:
    api, video = shared
    assert api.get(f"/api/v1/videos/{video}").json()["visibility"] == "private"
    assert api.get(f"/api/v1/videos/{video}/playback").json()["embed"] is None
    for path in (f"/embed/{video}", f"/embed/{video}/playback"):
        answer = api.client.get(path)
        assert (answer.status_code, answer.json()) == (404, {"detail": f"no video {video}"})
    assert api.client.get("/embed/../etc/passwd").status_code == 404
    assert api.client.get("/api/v1/public/videos").json()["items"] == []


def test_unlisted_video_plays_from_its_embed_url_only(shared: tuple[Api, str]) -> None:
    api, video = shared
    answer = set_visibility(api, video, "unlisted")
    assert answer.status_code == 200 and answer.json()["visibility"] == "unlisted"
    embed = api.get(f"/api/v1/videos/{video}/playback").json()["embed"]
    assert urlsplit(embed).path == f"/embed/{video}"

    page = anonymous(api, embed)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert f"frame-ancestors {ANCESTORS};" in csp and "script-src 'self';" in csp
    assert "x-frame-options" not in page.headers
    assert '<script type="module" src="/ui/static/embed.js">' in page.text
    # The dashboard itself still refuses every frame.
    assert "frame-ancestors 'none'" in api.client.get("/").headers["content-security-policy"]

    links = api.client.get(f"/embed/{video}/playback").json()  # no token at all
    assert "source" not in links
    assert links["subtitles"] == [] and links["sprite"] is None  # the tiny clip has neither
    master = links["master"]
    assert urlsplit(master).path.startswith("/media/s/")
    playlist = anonymous(api, master)
    assert playlist.status_code == 200
    variant = urljoin(master, m3u8.loads(playlist.text).playlists[0].uri)
    assert anonymous(api, variant).status_code == 200
    # Unlisted is not public: the unsigned stream still needs a token, and it is not listed.
    assert api.client.get(f"/videos/stream/{video}_transcoded.m3u8").status_code == 401
    assert api.client.get("/api/v1/public/videos").json()["total"] == 0

    assert set_visibility(api, video, "private").status_code == 200
    assert api.client.get(f"/embed/{video}/playback").status_code == 404


def test_public_video_is_listed_and_plays_without_a_token(shared: tuple[Api, str]) -> None:
    api, video = shared
    assert set_visibility(api, video, "public").status_code == 200
    listed = api.client.get("/api/v1/public/videos").json()
    assert listed["total"] == 1
    assert [(item["id"], urlsplit(item["embed"]).path) for item in listed["items"]] == [
        (video, f"/embed/{video}")
    ]
    assert api.client.get(f"/videos/stream/{video}_transcoded.m3u8").status_code in (200, 307)
    assert api.client.get(f"/embed/{video}").status_code == 200


def test_only_the_owner_or_an_admin_changes_the_visibility(shared: tuple[Api, str]) -> None:
    api, video = shared
    assert set_visibility(api, video, "public", role="worker").status_code == 403
    assert set_visibility(api, video, "public", role="admin").status_code == 200
    bad = set_visibility(api, video, "everyone")
    assert bad.status_code == 422 and isinstance(bad.json()["detail"], str)
    extra = api.client.patch(
        f"/api/v1/videos/{video}",
        headers=api.headers(),
        json={"visibility": "public", "owner_token_id": "x"},
    )
    assert extra.status_code == 422
    anonymous_patch = api.client.patch(f"/api/v1/videos/{video}", json={"visibility": "public"})
    assert anonymous_patch.status_code == 401


@pytest.mark.parametrize(
    "value", ["'self'; script-src *", "https://a.example\nX-Evil: 1", "'unsafe-inline'", "", "a,b"]
)
def test_a_frame_ancestors_setting_that_is_not_a_source_list_fails_at_start(value: str) -> None:
    with pytest.raises(ValueError, match="is not a frame-ancestors list"):
        Settings(embed_frame_ancestors=value)


def test_frame_ancestors_keeps_a_valid_source_list() -> None:
    value = "'self'  https://pod.example.org *.example.org:443 http://127.0.0.1:8080"
    assert Settings(embed_frame_ancestors=value).embed_frame_ancestors == " ".join(value.split())

"""Signed media URLs: /playback mints them, every playlist URI inherits them, no token needed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import m3u8
import pytest
from test_api import Api, make_settings, start_api

from vidfarm.api.signing import MediaSigner
from vidfarm.config import Settings


@pytest.fixture
def played(
    tmp_path: Path, pg_database: str, small_clip: Path
) -> Iterator[tuple[Api, dict[str, Any]]]:
    """The API with one encoded video of the user token, and its upload answer."""
    client, api = start_api(make_settings(tmp_path, database_url=pg_database))
    with client:
        body = api.upload(small_clip).json()
        assert api.wait_task(body["job_id"])["state"] == "SUCCESS"
        yield api, body
    api.runtime.engine.dispose()


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def anonymous(api: Api, url: str, **kwargs: Any) -> Any:
    """A GET without any token, as a player on another site does."""
    return api.client.get(path_of(url), follow_redirects=False, **kwargs)


def test_signed_urls_play_every_variant_without_a_token(played: tuple[Api, dict[str, Any]]) -> None:
    api, body = played
    links = api.get(f"/api/v1/videos/{body['file_id']}/playback").json()
    master_url = path_of(links["master"])
    assert master_url.startswith("/media/s/") and "token" not in master_url
    master = anonymous(api, master_url)
    assert master.status_code == 200, master.text
    assert master.headers["content-type"] == "application/vnd.apple.mpegurl"
    playlists = m3u8.loads(master.text).playlists
    assert playlists
    for playlist in playlists:  # relative URIs resolve under the same signature
        variant_url = urljoin(master_url, playlist.uri)
        variant = anonymous(api, variant_url)
        assert variant.status_code == 200, variant_url
        segments = m3u8.loads(variant.text).segments
        segment = anonymous(api, urljoin(variant_url, segments[0].uri))
        assert segment.status_code == 200 and segment.headers["content-type"] == "video/mp2t"
    mp4 = links["mp4"][0]["url"]
    whole = anonymous(api, mp4)
    part = anonymous(api, mp4, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == whole.content[10:20]
    head = api.client.head(path_of(mp4))
    assert head.status_code == 200 and head.headers["content-length"] == str(len(whole.content))
    assert head.content == b""
    download = anonymous(api, mp4 + "?download=true")
    assert download.headers["content-disposition"].startswith("attachment")
    source = anonymous(api, links["source"])
    assert source.status_code == 200 and source.content == small_clip_bytes(api, body)
    assert {o["url"] for o in links["outputs"]} >= {links["master"], mp4}


def small_clip_bytes(api: Api, body: dict[str, Any]) -> bytes:
    with api.runtime.storage.open(f"sources/{body['file_id']}/{body['filename']}") as reader:
        return reader.read()


def test_altered_expired_or_misused_signatures_are_403(played: tuple[Api, dict[str, Any]]) -> None:
    api, body = played
    master = path_of(api.get(f"/api/v1/videos/{body['file_id']}/playback").json()["master"])
    expires, signature, rest = master.removeprefix("/media/s/").split("/", 2)
    altered = f"/media/s/{expires}/{signature[:-1]}{'A' if signature[-1] != 'A' else 'B'}/{rest}"
    refused = anonymous(api, altered)
    assert (refused.status_code, refused.json()) == (403, {"detail": "invalid media URL signature"})
    later = f"/media/s/{int(expires) + 60}/{signature}/{rest}"
    assert anonymous(api, later).status_code == 403  # the expiry is signed too
    signer: MediaSigner = api.client.app.state.media_signer  # type: ignore[attr-defined]
    old = signer.sign(body["file_id"], 60, now=time.time() - 3600)
    expired = anonymous(api, old.url(rest.split("/", 1)[1]))
    assert (expired.status_code, expired.json()["detail"]) == (
        403,
        "this signed media URL has expired",
    )
    # A signature covers one video: another video's path under it is refused.
    fake_video = "0" * 32
    misused = anonymous(api, f"/media/s/{expires}/{signature}/{fake_video}/{rest.split('/', 1)[1]}")
    assert misused.status_code == 403


def test_a_token_in_the_query_redirects_to_a_signed_url(
    played: tuple[Api, dict[str, Any]],
) -> None:
    api, body = played
    alias = api.client.get(
        f"/videos/stream/{body['file_id']}_transcoded.m3u8",
        params={"token": api.tokens["user"]},
        follow_redirects=False,
    )
    assert alias.status_code == 307
    signed = alias.headers["location"]
    assert signed.startswith("/media/s/") and "token" not in signed
    master = api.client.get(signed, follow_redirects=False)
    assert master.status_code == 307  # the alias, now signed, names the newest encode
    final = master.headers["location"]
    assert final.endswith(f"/{body['file_id']}/{body['job_id']}/master.m3u8")
    playlist = anonymous(api, final)
    variant = m3u8.loads(playlist.text).playlists[0].uri
    assert anonymous(api, urljoin(final, variant)).status_code == 200


def test_cors_media_for_any_listed_origin_api_never_for_star(
    tmp_path: Path, pg_database: str
) -> None:
    settings = make_settings(
        tmp_path, database_url=pg_database, cors_origins=["*", "https://pod.example.org"]
    )
    client, api = start_api(settings)
    with client:
        media = "/media/s/1/x/0/master.m3u8"
        preflight = client.options(
            media,
            headers={
                "Origin": "https://elsewhere.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Headers": "range",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "*"
        assert "range" in preflight.headers["access-control-allow-headers"].lower()
        got = client.get(media, headers={"Origin": "https://elsewhere.example"})
        assert got.status_code == 403  # a malformed signature, answered with CORS headers
        assert got.headers["access-control-allow-origin"] == "*"
        assert "Content-Range" in got.headers["access-control-expose-headers"]
        # The API: listed origins only; `*` does not open it.
        me = {"Authorization": f"Bearer {api.tokens['user']}"}
        stranger = client.get("/api/v1/me", headers={**me, "Origin": "https://elsewhere.example"})
        assert stranger.status_code == 200
        assert "access-control-allow-origin" not in stranger.headers
        pod = client.get("/api/v1/me", headers={**me, "Origin": "https://pod.example.org"})
        assert pod.headers["access-control-allow-origin"] == "https://pod.example.org"
    api.runtime.engine.dispose()


def test_bad_cors_origins_fail_at_start() -> None:
    with pytest.raises(ValueError, match="is not an origin"):
        Settings(cors_origins="https://pod.example.org/path")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ('{"start": Infinity}', "body.start"),
        ('{"start": 1e309}', "body.start"),
        ('{"start": 5, "end": 2}', "start must be before end"),
        ('{"start": true}', "body.start"),
        ('{"formats": [' + ", ".join(['"hls"'] * 10_000) + "]}", "body.formats"),
    ],
)
def test_bad_encode_parameters_are_422_at_submission(
    played: tuple[Api, dict[str, Any]], payload: str, message: str
) -> None:
    api, body = played
    response = api.post(
        f"/api/v1/videos/{body['file_id']}/encode",
        content=payload,
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"] and "\n" not in response.json()["detail"]

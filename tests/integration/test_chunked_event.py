"""Playable early: a chunked encode's growing HLS EVENT playlist, read back while it runs.

The 12 s 1080p clip, 4 s chunks on a 2 s grid, two pool slots: the playback answer offers an
EVENT master as soon as the first chunk is in; its variant lists the leading chunks' preview
segments (each decodes with audio and video at its place on the grid); once the stitch is in,
the same URL answers the final VOD playlist and old preview links lead to the final segments.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin

import av
import m3u8
import pytest
from test_api import Api, make_settings, start_api
from test_chunked_farm import TINY_PROFILE

from vidfarm import jobs
from waiting import wait_until

FRAME = 1 / 30


@pytest.fixture
def api(tmp_path: Path, pg_database: str) -> Iterator[Api]:
    settings = make_settings(
        tmp_path, database_url=pg_database, worker_concurrency=2, chunk_seconds=4.0,
        chunk_min_seconds=10.0, default_profile="ladder",
    )  # fmt: skip
    assert settings.profiles_dir is not None
    (settings.profiles_dir / "ladder.toml").write_text(TINY_PROFILE.replace("tiny", "ladder"))
    client, api = start_api(settings)
    with client:
        yield api
    api.runtime.engine.dispose()


def first_times(data: bytes, path: Path) -> dict[str, float]:
    """The first presentation time of each stream type in a segment, decoded with PyAV."""
    path.write_bytes(data)
    found: dict[str, float] = {}
    with av.open(str(path)) as media:
        assert {s.type for s in media.streams} == {"video", "audio"}
        for frame in media.decode(*media.streams):
            kind = "video" if isinstance(frame, av.VideoFrame) else "audio"
            if kind not in found and frame.pts is not None and frame.time_base is not None:
                found[kind] = float(frame.pts * frame.time_base)
    return found


def test_the_playlist_grows_as_chunks_complete_then_ends(
    api: Api, hd_clip: Path, tmp_path: Path
) -> None:
    uploaded = api.upload(hd_clip).json()
    video, job_id = uploaded["file_id"], uploaded["job_id"]
    states: list[m3u8.M3U8] = []
    times: dict[str, dict[str, float]] = {}  # segment URL -> first times
    event_url = ""

    def completed() -> bool:
        return bool(api.get(f"/api/v1/jobs/{job_id}").json()["status"] == "completed")

    def look() -> bool:
        nonlocal event_url
        links = api.get(f"/api/v1/videos/{video}/playback").json()
        if not links["event"]:
            return completed()
        event_url = urljoin(links["master"], "event_144p.m3u8")
        master = m3u8.loads(api.get(links["master"]).text)
        variants = [p.uri for p in master.playlists]
        if variants == ["144p.m3u8", "240p.m3u8"]:  # the stitch ended since the answer above
            return completed()
        assert variants == ["event_144p.m3u8", "event_240p.m3u8"]
        response = api.get(event_url)
        assert response.headers["content-type"] == "application/vnd.apple.mpegurl"
        playlist = m3u8.loads(response.text)
        if playlist.is_endlist:  # likewise: the same URL already answers the final playlist
            return completed()
        if not states or len(playlist.segments) != len(states[-1].segments):
            states.append(playlist)
        for segment in playlist.segments:
            url = urljoin(event_url, segment.uri)
            if url not in times:
                data = api.fetch(url).content
                times[url] = first_times(data, tmp_path / "segment.ts")
        return completed()

    wait_until(look, timeout=120, interval=0.05, what="the chunked encode")
    counts = [len(state.segments) for state in states]
    assert counts and counts == sorted(set(counts)) and counts[0] < 6, counts  # it grew
    for state in states:
        assert state.playlist_type == "event" and not state.is_endlist
        assert state.media_sequence == 0 and state.target_duration == 2
        assert [s.duration for s in state.segments] == [2.0] * len(state.segments)
        for n, segment in enumerate(state.segments):
            assert segment.uri.startswith("../") and segment.uri.endswith(f"_144p_{n:05d}.ts")
    for url, first in times.items():
        n = int(url[-8:-3])
        # On the grid: the single pass's 2-frame B-frame delay. The audio starts with the
        # packets muxed before the video's keyframe (as in the final segments): near it.
        assert abs(first["video"] - (2 * n + 2 * FRAME)) < 0.01, (url, first)
        assert abs(first["audio"] - first["video"]) < 0.1, (url, first)

    final = m3u8.loads(api.get(event_url).text)  # the same URL, now the final VOD
    assert final.is_endlist and final.playlist_type == "vod" and final.media_sequence == 0
    assert [s.uri for s in final.segments] == [f"144p_{n:05d}.ts" for n in range(6)]
    links = api.get(f"/api/v1/videos/{video}/playback").json()
    assert not links["event"] and links["master"].endswith(f"/{job_id}/master.m3u8")
    with api.runtime.sessions() as session:
        chunks = [jobs.get_job(session, c["id"]) for c in jobs.summary(session, job_id)]
    folders = [api.runtime.storage.local_path(c.result["prefix"]) for c in chunks[:3]]
    wait_until(
        lambda: not any(folder and folder.exists() for folder in folders), timeout=30,
        what="the chunks' files to go",
    )  # fmt: skip
    for url, first in times.items():  # an old preview link: the final segment, same place
        again = first_times(api.fetch(url).content, tmp_path / "final.ts")
        assert abs(again["video"] - first["video"]) < FRAME / 2, (url, again, first)

"""The EVENT playlist's rules without media: chunks claimed in order, only leading ones listed.

The chunks are claimed and completed by hand with the result a chunk reports (`preview`).
"""

from __future__ import annotations

from typing import Any

import m3u8
import pytest
from test_job_family import Factory, finish, make_family

from vidfarm import jobs
from vidfarm.api.event import event_playlist, running_encode
from vidfarm.errors import NotFound
from vidfarm.storage.local import LocalStorage


def preview(first: int) -> dict[str, Any]:
    segments = [[f"preview_144p_{n:05d}.ts", 2.0] for n in (first, first + 1)]
    rendition = {"name": "144p", "width": 256, "height": 144, "bandwidth": 464000}
    return {"first": first, "renditions": [{**rendition, "segments": segments}]}


def test_chunks_are_claimed_in_order_and_only_leading_ones_are_listed(
    session_factory: Factory, tmp_path: Any
) -> None:
    parent_id, children = make_family(session_factory, [(0, 4), (4, 8), (8, 12)])
    storage = LocalStorage(tmp_path)
    with session_factory() as session:
        jobs.mark_queued(session, children)
        claims = [jobs.claim_next(session, worker_id="w", lease_seconds=60) for _ in children]
        video_id = jobs.get_job(session, parent_id).video_id
    assert [c.job_id for c in claims if c] == children  # the start is encoded first

    def playlist(name: str = "event_144p.m3u8") -> m3u8.M3U8:
        with session_factory() as session:
            return m3u8.loads(event_playlist(session, storage, video_id, parent_id, name))

    assert claims[1] is not None
    finish(session_factory, claims[1], {"prefix": "p1", "files": [], "preview": preview(2)})
    with session_factory() as session:  # chunk 1 alone: nothing plays from the start yet
        assert running_encode(session, video_id) is None
    with pytest.raises(NotFound):
        playlist()
    assert claims[0] is not None
    finish(session_factory, claims[0], {"prefix": "p0", "files": [], "preview": preview(0)})
    with session_factory() as session:
        encode = running_encode(session, video_id)
        assert encode is not None and encode.id == parent_id
    variant = playlist()
    assert variant.playlist_type == "event" and not variant.is_endlist
    assert variant.media_sequence == 0 and variant.target_duration == 2
    assert [s.uri for s in variant.segments] == [
        f"../{children[n // 2]}/preview_144p_{n:05d}.ts" for n in range(4)
    ]
    master = playlist("event.m3u8")
    assert [(p.uri, p.stream_info.resolution) for p in master.playlists] == [
        ("event_144p.m3u8", (256, 144))
    ]
    with pytest.raises(NotFound):
        playlist("event_1080p.m3u8")

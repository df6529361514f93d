"""Playable early: a chunked encode served as a growing HLS EVENT playlist (docs/chunked.md).

While the encode runs, `<video>/<encode>/event.m3u8` and its `event_<rendition>.m3u8` list the
preview segments (media/preview.py) of the chunks completed in order from the start, as
relative links to each chunk's files (`../<chunk>/preview_...ts`, served like any published
file). Once the stitch completed the encode, the same URLs answer its final playlists (same
segment grid and numbers, `#EXT-X-ENDLIST`). Written from SQL on each request, never stored:
a chunk's result already says which segments it published and how long they are.
"""

from __future__ import annotations

import math
import re
from typing import Any

from sqlalchemy.orm import Session

from vidfarm import jobs
from vidfarm.errors import JobNotFound, NotFound
from vidfarm.media.outputs import MASTER_PLAYLIST
from vidfarm.models import Job, JobStatus, JobType
from vidfarm.storage import Storage

EVENT_MASTER = "event.m3u8"
_VARIANT = re.compile(r"^event_(?P<rendition>[A-Za-z0-9_-]+)\.m3u8$")


def is_event(name: str) -> bool:
    return name == EVENT_MASTER or _VARIANT.match(name) is not None


def running_encode(session: Session, video_id: str) -> Job | None:
    """The video's newest running chunked encode that has something to play, or None."""
    running = jobs.list_jobs(
        session, status=JobStatus.RUNNING.value, video_id=video_id, job_type=JobType.ENCODE.value
    )
    for job in running:
        if job.join_type and leading_chunks(session, job):
            return job
    return None


def leading_chunks(session: Session, encode: Job) -> list[dict[str, Any]]:
    """The previews of the chunks completed in order from the start (stops at the first gap)."""
    chunks = [c for c in jobs.children_of(session, encode.id) if c.type == JobType.ENCODE_CHUNK]
    chunks.sort(key=lambda c: int(str(c.params.get("index", 0))))
    found: list[dict[str, Any]] = []
    for chunk in chunks:
        preview = (chunk.result or {}).get("preview")
        if chunk.status != JobStatus.COMPLETED or not preview:
            break
        found.append({"id": chunk.id, **preview})
    return found


def event_playlist(
    session: Session, storage: Storage, video_id: str, job_id: str, name: str
) -> str:
    """The text of `event.m3u8` or `event_<rendition>.m3u8` of encode `job_id`, as it is now."""
    try:
        encode = jobs.get_job(session, job_id)
    except JobNotFound:
        raise NotFound(f"no playlist {video_id}/{job_id}/{name}") from None
    if encode.video_id != video_id or encode.type != JobType.ENCODE or not encode.join_type:
        raise NotFound(f"no playlist {video_id}/{job_id}/{name}")
    variant = _VARIANT.match(name)
    if encode.status == JobStatus.COMPLETED and encode.result:
        final = f"{variant.group('rendition')}.m3u8" if variant else MASTER_PLAYLIST
        with storage.open(f"{encode.result['prefix']}/{final}") as reader:
            return reader.read().decode("utf-8")
    chunks = leading_chunks(session, encode) if encode.status == JobStatus.RUNNING else []
    if not chunks:
        raise NotFound(f"no playlist {video_id}/{job_id}/{name} yet")
    if variant is None:
        return _master(chunks[0]["renditions"])
    return _variant(chunks, variant.group("rendition"))


def _master(renditions: list[dict[str, Any]]) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for r in renditions:
        lines.append(
            f"#EXT-X-STREAM-INF:BANDWIDTH={r['bandwidth']},RESOLUTION={r['width']}x{r['height']}"
        )
        lines.append(f"event_{r['name']}.m3u8")
    return "\n".join(lines) + "\n"


def _variant(chunks: list[dict[str, Any]], rendition: str) -> str:
    """EVENT: media sequence 0, the leading chunks' segments, no ENDLIST (it grows)."""
    segments: list[tuple[str, float]] = []
    for chunk in chunks:
        listed = [r for r in chunk["renditions"] if r["name"] == rendition]
        if not listed:
            raise NotFound(f"no rendition {rendition}")
        segments += [(f"../{chunk['id']}/{file}", float(d)) for file, d in listed[0]["segments"]]
    target = max(math.ceil(d - 1e-3) for _, d in segments)
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        f"#EXT-X-TARGETDURATION:{target}",
        "#EXT-X-MEDIA-SEQUENCE:0",
        "#EXT-X-PLAYLIST-TYPE:EVENT",
        "#EXT-X-INDEPENDENT-SEGMENTS",
    ]
    for uri, duration in segments:
        lines += [f"#EXTINF:{duration:.6f},", uri]
    return "\n".join(lines) + "\n"

"""Finding and serving published files: local files with HTTP Range, S3 by redirect."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy.orm import Session

from vidfarm import jobs
from vidfarm.errors import InvalidParameters, JobNotFound, NotFound
from vidfarm.media.outputs import MASTER_PLAYLIST
from vidfarm.media.preview import PREFIX as PREVIEW_PREFIX
from vidfarm.media.subtitles import add_subtitles
from vidfarm.models import JobStatus, JobType
from vidfarm.storage import Storage
from vidfarm.storage.base import content_disposition, content_type_for
from vidfarm.transcribe.job import SUBTITLE_PLAYLIST
from vidfarm.videos import find_video, latest_completed, outputs_of

_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}"
_PART = re.compile(rf"^{_NAME}$")
#: What a media path may be, for the OpenAPI schema: one to three plain names.
PATH_PATTERN = rf"^{_NAME}(/{_NAME}){{0,2}}$"
_ALIAS = re.compile(r"^(?P<video>[0-9a-f]{32})_transcoded\.(?P<ext>m3u8|mp4|mpd)$")
_ALIAS_FORMAT = {"m3u8": "hls", "mp4": "mp4", "mpd": "dash"}


@dataclass(frozen=True)
class Found:
    key: str | None = None  # a stored object to serve
    redirect: str | None = None  # or a canonical path to go to (relative to /videos/stream/)
    name: str = ""
    subtitles: tuple[tuple[str, str], ...] = ()  # (relative playlist URI, language) to add


def resolve(session: Session, path: str) -> Found:
    """Map a /videos/stream path to a stored object; refuse anything but plain names."""
    parts = path.split("/")
    if not all(_PART.match(part) and ".." not in part for part in parts):
        raise InvalidParameters(f"invalid file name {path!r}")
    if len(parts) == 3:
        return _published(session, *parts)
    if len(parts) == 1 and (alias := _ALIAS.match(parts[0])):
        return _alias(session, alias.group("video"), alias.group("ext"))
    if len(parts) == 1:
        video_id, _, _ = parts[0].partition(".")
        video = find_video(session, video_id)
        if video.source_key.rsplit("/", 1)[-1] != parts[0]:
            raise NotFound(f"no file {path}")
        return Found(key=video.source_key, name=video.filename)
    raise NotFound(f"no file {path}")


def published_prefix(session: Session, video_id: str, job_id: str, name: str = "") -> str:
    """The storage prefix of a completed job's accepted attempt (where its files are)."""
    try:
        job = jobs.get_job(session, job_id)
    except JobNotFound:
        raise NotFound(f"no output {video_id}/{job_id}/{name}") from None
    prefix = (job.result or {}).get("prefix")
    if job.video_id != video_id or job.status != JobStatus.COMPLETED or not prefix:
        raise NotFound(f"no output {video_id}/{job_id}/{name}")
    return str(prefix)


def _published(session: Session, video_id: str, job_id: str, name: str) -> Found:
    prefix = published_prefix(session, video_id, job_id, name)
    job = jobs.get_job(session, job_id)
    if job.type == JobType.ENCODE_CHUNK and name.startswith(PREVIEW_PREFIX) and job.parent_id:
        parent = jobs.get_job(session, job.parent_id)
        if parent.status == JobStatus.COMPLETED:  # the chunk's files go once the stitch is in:
            final = name.removeprefix(PREVIEW_PREFIX)  # the final segment of the same number
            return Found(redirect=f"{video_id}/{parent.id}/{final}")
    subtitles: tuple[tuple[str, str], ...] = ()
    if name == MASTER_PLAYLIST and job.type == JobType.ENCODE:
        subtitles = _subtitle_renditions(session, video_id)
    return Found(key=f"{prefix}/{name}", name=name, subtitles=subtitles)


def _subtitle_renditions(session: Session, video_id: str) -> tuple[tuple[str, str], ...]:
    """The video's finished transcriptions, as SUBTITLES renditions of its master playlist.

    Added when the master is served (not written into it): transcriptions usually finish
    after the encode, and a new one must not need the encode published again.
    """
    found: dict[str, tuple[str, str]] = {}
    done = jobs.list_jobs(
        session,
        status=JobStatus.COMPLETED.value,
        video_id=video_id,
        job_type=JobType.TRANSCRIPTION.value,
    )
    for transcription in reversed(done):  # oldest first: the newest per language wins
        for output in outputs_of(session, transcription):
            if output.kind == SUBTITLE_PLAYLIST:
                language = str(transcription.params.get("language") or "und")
                name = output.key.rsplit("/", 1)[-1]
                found[language] = (f"../{transcription.id}/{name}", language)
    return tuple(found.values())


def _alias(session: Session, video_id: str, ext: str) -> Found:
    """The seed API's `<file_id>_transcoded.<ext>` names the newest encode of that format."""
    find_video(session, video_id)
    fmt = _ALIAS_FORMAT[ext]
    job = latest_completed(session, video_id, fmt)
    if job is None:
        raise NotFound(f"video {video_id} has no completed {fmt} encode yet")
    kinds = {"hls": "hls_master", "mp4": "mp4", "dash": "dash_manifest"}
    candidates = [o for o in outputs_of(session, job) if o.kind == kinds[fmt]]
    if not candidates:
        raise NotFound(f"video {video_id} has no {fmt} output")
    best = max(candidates, key=lambda o: o.height or 0)  # the largest MP4
    return Found(redirect=f"{video_id}/{job.id}/{best.key.rsplit('/', 1)[-1]}")


#: Small text files whose relative links must resolve against the API, not the object store:
#: a presigned playlist's segment links would carry no signature.
PROXIED_SUFFIXES = (".m3u8", ".mpd", ".vtt", ".json")


def serve(storage: Storage, found: Found, *, base: str, download: bool) -> Response:
    if found.redirect is not None:
        return RedirectResponse(f"{base}/{found.redirect}", status_code=307)
    assert found.key is not None
    if not found.key.endswith(PROXIED_SUFFIXES):
        url = storage.url_for(found.key, filename=found.name, attachment=download)
        if url is not None:
            return RedirectResponse(url, status_code=307)
    if found.subtitles:
        return Response(master_text(storage, found), media_type=content_type_for(found.key))
    path = storage.local_path(found.key)
    if path is None:  # a playlist in an object store: stream it through
        reader = storage.open(found.key)
        headers = {"Content-Disposition": content_disposition(found.name, attachment=download)}
        return StreamingResponse(
            _chunks(reader), media_type=content_type_for(found.key), headers=headers
        )
    if not path.is_file():
        raise NotFound(f"no file {found.name}")
    return FileResponse(
        path,
        media_type=content_type_for(found.key),
        filename=found.name if download else None,
        content_disposition_type="attachment" if download else "inline",
    )


def master_text(storage: Storage, found: Found) -> str:
    """The master playlist as published, plus the video's subtitle renditions."""
    assert found.key is not None
    with storage.open(found.key) as reader:
        master = reader.read().decode("utf-8")
    for uri, language in found.subtitles:
        master = add_subtitles(master, uri, language)
    return master


def _chunks(reader: BinaryIO) -> Iterator[bytes]:
    with reader:
        while block := reader.read(64 * 1024):
            yield block

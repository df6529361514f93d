"""The published view nginx serves: media/published/<video>/<job>/<file>, with no SQL.

An nginx-scheme signed URL names `<video>/<job>/<file>`, but a job's files live under its
accepted attempt's prefix (videos/<video>/<job>/a<token>/), which only SQL knows. So when
vidfarm mints playback links (scheme `nginx`, local storage), it links every file of each
playable job into published/<video>/<job>/ (one relative symlink per file) and writes the
encode's master playlist there with its subtitle renditions. nginx then serves that folder as
static files, also while every replica is down. A `.attempt` marker written last says the
links are complete; the master is rewritten when a new transcription adds a language. Deleting
a video removes its view (videos.delete_video). Object stores have no view: their files are
served by presigned URLs.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy.orm import Session

from vidfarm.api.media import master_text, published_prefix, resolve
from vidfarm.errors import VidfarmError
from vidfarm.media.outputs import MASTER_PLAYLIST
from vidfarm.storage import Storage

log = logging.getLogger(__name__)

PUBLISHED = "published"
MARKER = ".attempt"


def publish_view(
    session: Session, storage: Storage, video_id: str, job_ids: Iterable[str]
) -> Path | None:
    """Make published/<video>/<job>/ mirror each job's files; None for object stores."""
    root = storage.local_path(PUBLISHED)
    if root is None:
        return None
    try:
        _publish(session, storage, root, video_id, job_ids)
    except OSError as error:  # nginx then passes these URLs to vidfarm, which serves them
        log.warning("published view of video %s not updated: %s", video_id, error)
    return root


def _publish(
    session: Session, storage: Storage, root: Path, video_id: str, job_ids: Iterable[str]
) -> None:
    for job_id in sorted(set(job_ids)):
        try:
            master = resolve(session, f"{video_id}/{job_id}/{MASTER_PLAYLIST}")
        except VidfarmError:  # not an HLS encode (a transcription) or not completed
            master = None
        folder = root / video_id / job_id
        _link_job(session, storage, folder, video_id, job_id)
        if master is not None and master.subtitles and (folder / MASTER_PLAYLIST).exists():
            _write(folder / MASTER_PLAYLIST, master_text(storage, master))


def _link_job(session: Session, storage: Storage, folder: Path, video_id: str, job_id: str) -> None:
    prefix = published_prefix(session, video_id, job_id)
    marker = folder / MARKER
    if marker.is_file() and marker.read_text() == prefix:
        return
    source = storage.local_path(prefix)
    assert source is not None
    folder.mkdir(parents=True, exist_ok=True)
    for entry in sorted(source.iterdir()):
        if entry.name.startswith(".") or not entry.is_file():
            continue
        _symlink(os.path.relpath(entry, folder), folder / entry.name)
    _write(marker, prefix)


def _symlink(target: str, link: Path) -> None:
    """Point `link` at `target`, replacing what was there at once (no missing moment)."""
    temporary = link.with_name(f".{link.name}.{uuid.uuid4().hex[:8]}")
    os.symlink(target, temporary)
    os.replace(temporary, link)


def _write(path: Path, text: str) -> None:
    if path.is_file() and not path.is_symlink() and path.read_text() == text:
        return
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    temporary.write_text(text)
    os.replace(temporary, path)

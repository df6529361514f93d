"""Taking a source file in: probe it first, store it, record the video and its first job."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from vidfarm import jobs
from vidfarm.config import Settings
from vidfarm.media.probe import MediaInfo, probe
from vidfarm.models import Job, JobType, Video, new_id
from vidfarm.storage import Storage

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_filename(name: str) -> str:
    """A display name reduced to a harmless file name (no folders, no hidden files)."""
    base = Path(name.replace("\\", "/")).name
    cleaned = _UNSAFE.sub("_", base).lstrip("._-")[:120]
    return cleaned or "source"


def add_video(
    session: Session, storage: Storage, source: Path, *, filename: str | None = None
) -> tuple[Video, MediaInfo]:
    """Probe (refusing bad input before anything is stored), then store and record it."""
    info = probe(source)
    video_id = new_id()
    name = safe_filename(filename or source.name)
    key = f"sources/{video_id}/{name}"
    storage.put_file(source, key)
    probe_data = info.to_dict()
    probe_data["path"] = name
    video = Video(
        id=video_id,
        filename=name,
        source_key=key,
        size=info.size,
        duration=info.duration,
        probe=probe_data,
    )
    session.add(video)
    session.commit()
    return video, info


def submit_encode(
    session: Session,
    settings: Settings,
    video: Video,
    *,
    params: dict[str, Any] | None = None,
    priority: int = 0,
) -> Job:
    return jobs.create_job(
        session,
        job_type=JobType.ENCODE.value,
        video_id=video.id,
        params=params or {},
        priority=priority,
        max_attempts=settings.max_attempts,
    )

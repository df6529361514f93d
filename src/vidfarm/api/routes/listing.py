"""The video list's search, sort orders and items (playable flag, signed thumbnail)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from fastapi import Request
from sqlalchemy import ColumnElement, Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from vidfarm.api.routes.media import sign
from vidfarm.api.views import video_view
from vidfarm.models import Job, JobStatus, JobType, Output, Video
from vidfarm.runtime import Runtime
from vidfarm.videos import latest_completed

_FINAL = [s.value for s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)]


class VideoSort(StrEnum):
    """How the list is ordered. `state`: videos that do not play yet first, those with a job
    under way before those without, newest first within each."""

    NEWEST = "newest"
    OLDEST = "oldest"
    LONGEST = "longest"
    SHORTEST = "shortest"
    TITLE = "title"
    STATE = "state"


def search(stmt: Select[Video], words: str | None) -> Select[Video]:
    """Videos whose title or file name contains every word (case-insensitive, no wildcards)."""
    for word in (words or "").lower().split():
        stmt = stmt.where(
            or_(
                func.lower(func.coalesce(Video.title, "")).contains(word, autoescape=True),
                func.lower(Video.filename).contains(word, autoescape=True),
            )
        )
    return stmt


def _playable() -> ColumnElement[bool]:
    return exists().where(
        and_(
            Job.video_id == Video.id,
            Job.type == JobType.ENCODE.value,
            Job.status == JobStatus.COMPLETED.value,
        )
    )


def _busy() -> ColumnElement[bool]:
    final = [*_FINAL, JobStatus.TIMEOUT.value]
    return exists().where(and_(Job.video_id == Video.id, Job.status.not_in(final)))


def order(sort: VideoSort) -> list[Any]:
    """ORDER BY terms; the id last so that pages never overlap."""
    newest = [Video.created_at.desc(), Video.id]
    terms: dict[VideoSort, list[Any]] = {
        VideoSort.NEWEST: newest,
        VideoSort.OLDEST: [Video.created_at.asc(), Video.id],
        VideoSort.LONGEST: [func.coalesce(Video.duration, 0).desc(), *newest],
        VideoSort.SHORTEST: [func.coalesce(Video.duration, 0).asc(), *newest],
        VideoSort.TITLE: [func.lower(func.coalesce(Video.title, Video.filename)), *newest],
        VideoSort.STATE: [_playable().asc(), _busy().desc(), *newest],
    }
    return terms[sort]


def listed(request: Request, runtime: Runtime, session: Session, video: Video) -> dict[str, Any]:
    """A list item: whether it plays (a completed encode), and its thumbnail's signed URL."""
    encode = latest_completed(session, video.id)
    thumbnail = None
    if encode is not None:
        key = session.scalar(
            select(Output.key).where(Output.job_id == encode.id, Output.kind == "thumbnail")
        )
        if key is not None:
            path = f"{encode.id}/{key.rsplit('/', 1)[-1]}"
            thumbnail = str(request.base_url).rstrip("/") + sign(request, runtime, video.id).url(
                path
            )
    return {**video_view(video), "playable": encode is not None, "thumbnail": thumbnail}

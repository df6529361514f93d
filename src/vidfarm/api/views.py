"""How jobs, videos and outputs look in JSON, shared by every route."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vidfarm import jobs
from vidfarm.models import Job, JobStatus, JobType, Output, Video
from vidfarm.videos import latest_completed, outputs_of


def job_view(session: Session, job: Job, *, detail: bool = False) -> dict[str, Any]:
    return job_views(session, [job], detail=detail)[0]


def job_views(
    session: Session, found: Sequence[Job], *, detail: bool = False
) -> list[dict[str, Any]]:
    """Jobs as the API shows them, in a few queries for the whole list: ranks, videos and
    chunk summaries are read once for all (42 jobs cost 126 queries before, 5 now)."""
    places, waiting = jobs.ranks(session, found)
    video_ids = {job.video_id for job in found if job.video_id}
    videos = (
        {v.id: v for v in session.scalars(select(Video).where(Video.id.in_(video_ids)))}
        if video_ids
        else {}
    )
    families = jobs.summaries(session, [job.id for job in found if job.join_type is not None])
    views = []
    for job in found:
        video = videos.get(job.video_id) if job.video_id else None
        view: dict[str, Any] = {
            "id": job.id,
            "type": job.type,
            "video_id": job.video_id,
            # Names people know the video by (a job list of hex ids tells nothing apart), and
            # the duration the dashboard turns into an encode speed and an ETA.
            "video_title": _title(video) if video else None,
            "video_duration": video.duration if video else None,
            "status": job.status,
            "progress": round(job.progress, 1),
            "step": job.step,
            "attempts": job.attempts,
            "max_attempts": job.max_attempts,
            "priority": job.priority,
            "rank": places.get(job.id),
            "waiting": waiting,
            "params": job.params,
            "error": _named(job.error, video),
            "error_class": job.error_class,
            "created_at": _iso(job.created_at),
            "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at),
            # While a dead worker's lease runs out its job still says running: say how quiet.
            "heartbeat_age_seconds": _round(jobs.heartbeat_age(job)),
            "news": jobs.news(job),
            "parent_id": job.parent_id,
        }
        if job.join_type is not None:  # a chunked encode: its chunks and its stitch
            view["chunks"] = families.get(job.id, [])
        if detail:
            view["log_tail"] = job.log_tail
            view["result"] = job.result
        views.append(view)
    return views


def _title(video: Video) -> str:
    return video.title or video.filename


def _named(error: str | None, video: Video | None) -> str | None:
    """An error names the upload as its owner knows it, not the storage file `<id>.mp4`."""
    if error is None or video is None:
        return error
    return error.replace(video.source_key.rsplit("/", 1)[-1], video.filename)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def output_url(video_id: str, output: Output) -> str:
    """The stream URL of a published file: /videos/stream/<video>/<job>/<file>."""
    return f"/videos/stream/{video_id}/{output.job_id}/{output.key.rsplit('/', 1)[-1]}"


def output_view(video_id: str, output: Output) -> dict[str, Any]:
    return {
        "kind": output.kind,
        "path": output.key.rsplit("/", 1)[-1],
        "job_id": output.job_id,
        "url": output_url(video_id, output),
        "width": output.width,
        "height": output.height,
        "bandwidth": output.bandwidth,
        "codecs": output.codecs,
        "size": output.size,
        "sha256": output.sha256,
    }


def playable_outputs(session: Session, video: Video) -> list[Output]:
    """The outputs of the newest completed encode, plus the newest transcription per language."""
    encode = latest_completed(session, video.id)
    outputs = outputs_of(session, encode) if encode else []
    transcriptions = jobs.list_jobs(
        session,
        status=JobStatus.COMPLETED.value,
        video_id=video.id,
        job_type=JobType.TRANSCRIPTION.value,
    )
    for language in sorted({str(t.params.get("language")) for t in transcriptions}):
        newest = next(t for t in transcriptions if str(t.params.get("language")) == language)
        outputs += outputs_of(session, newest)
    return outputs


def video_view(video: Video) -> dict[str, Any]:
    return {
        "id": video.id,
        "filename": video.filename,
        "title": _title(video),
        "description": video.description,
        "size": video.size,
        "duration": video.duration,
        "language": video.language,
        "visibility": video.visibility,
        "created_at": _iso(video.created_at),
        "source_url": f"/videos/stream/{video.source_key.rsplit('/', 1)[-1]}",
    }


def _iso(value: Any) -> str | None:
    return None if value is None else str(jobs.as_utc(value).isoformat())


#: Pagination never needs more; larger numbers only overflow database integers.
MAX_OFFSET = 1_000_000_000

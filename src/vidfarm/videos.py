"""Taking a source file in: probe it first, store it, record the video and its first job.

A long encode is split into chunks at submission (`encode_split`): the control plane decides
from the probe kept at upload; a plan chunks cannot carry stays one `encode` job.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vidfarm import jobs
from vidfarm.config import Settings
from vidfarm.db import write_transaction
from vidfarm.errors import InvalidParameters, InvalidTransition, NotFound
from vidfarm.media.chunks import plan_chunks
from vidfarm.media.plan import FORMATS, check_formats
from vidfarm.media.probe import MediaInfo, probe
from vidfarm.media.profiles import load_profile, parse_resolution, profile_for_params
from vidfarm.models import (
    Job,
    JobStatus,
    JobType,
    Output,
    RunnerManager,
    Video,
    new_id,
    vidfarm_task,
)
from vidfarm.storage import Storage

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_ID = re.compile(r"^[0-9a-f]{32}$")
_EXTENSION = re.compile(r"^\.[a-z0-9]{1,8}$")


def safe_filename(name: str) -> str:
    """A display name reduced to a harmless file name (no folders, no hidden files)."""
    base = Path(name.replace("\\", "/")).name
    cleaned = _UNSAFE.sub("_", base).lstrip("._-")[:120]
    return cleaned or "source"


def stored_name(video_id: str, filename: str) -> str:
    """The source's name in storage (and in the seed API): `<video id><extension>`."""
    suffix = Path(filename).suffix.lower()
    return f"{video_id}{suffix if _EXTENSION.match(suffix) else '.bin'}"


def add_video(
    session: Session,
    storage: Storage,
    source: Path,
    *,
    filename: str | None = None,
    language: str | None = None,
    move: bool = False,
    owner: str | None = None,
) -> tuple[Video, MediaInfo]:
    """Probe (refusing bad input before anything is stored), then store and record it."""
    name = safe_filename(filename or source.name)
    info = probe(source, name=name)
    video_id = new_id()
    key = f"sources/{video_id}/{stored_name(video_id, name)}"
    storage.put_file(source, key, move=move)  # an upload's temporary file is moved in
    probe_data = info.to_dict()
    probe_data["path"] = name
    video = Video(
        id=video_id,
        filename=name,
        title=name,
        source_key=key,
        size=info.size,
        duration=info.duration,
        probe=probe_data,
        language=language.lower() if language else None,
        owner_token_id=owner,
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
    affiliation: str | None = None,
    owner: str | None = None,
) -> Job:
    """Queue an encode after refusing what its worker would refuse (one check, every caller)."""
    params = dict(params or {})
    check_encode_params(settings, params)
    if affiliation:
        params["affiliation"] = affiliation
    job = jobs.create_job(
        session,
        job_type=JobType.ENCODE.value,
        video_id=video.id,
        params=params,
        split=encode_split(session, settings, video, params),
        owner_token_id=owner,
        priority=job_priority(settings, video, priority=priority, affiliation=affiliation),
        max_attempts=settings.max_attempts,
        # A video with a spoken language gets its subtitles once it plays.
        follow_ups=[
            jobs.FollowUp(JobType.TRANSCRIPTION.value, {"language": video.language.lower()})
        ]
        if video.language
        else [],
    )
    return job


def record_owner(session: Session, job: Job, owner: str | None) -> None:
    """Remember which token submitted a job (follow-ups and CLI jobs have none)."""
    if owner is not None:
        job.owner_token_id = owner
        session.commit()


def job_priority(
    settings: Settings, video: Video, *, priority: int = 0, affiliation: str | None = None
) -> int:
    """Higher runs first: the asked priority, plus the submitter's class, plus a short-job lane.

    Pod serves staff before students; a short clip should not wait behind a two-hour lecture.
    """
    check_affiliation(settings, affiliation)
    boost = settings.priority_classes.get(affiliation, 0) if affiliation else 0
    duration = video.duration or 0.0
    if 0 < duration <= settings.short_job_seconds:
        boost += settings.short_job_boost
    return priority + boost


def check_encode_params(settings: Settings, params: dict[str, Any]) -> None:
    """Unknown profile, malformed resolution, unknown or clashing formats: InvalidParameters."""
    load_profile(str(params.get("profile") or settings.default_profile), settings.user_profiles_dir)
    if params.get("resolution"):
        parse_resolution(str(params["resolution"]))
    if params.get("formats") is not None:
        check_formats(params["formats"])


def find_video(session: Session, video_id: str) -> Video:
    video = session.get(Video, video_id) if _ID.match(video_id) else None
    if video is None:
        raise NotFound(f"no video {video_id}")
    return video


def delete_video(session: Session, storage: Storage, video_id: str) -> None:
    """Stop the video's jobs, remove its media, then its rows (outputs and jobs cascade)."""
    video = find_video(session, video_id)
    for job in list(video.jobs):
        if not JobStatus(job.status).is_final:
            with contextlib.suppress(InvalidTransition):  # it ended meanwhile: nothing to stop
                jobs.cancel(session, job.id)
    storage.delete_prefix(f"videos/{video_id}")
    storage.delete_prefix(f"sources/{video_id}")
    storage.delete_prefix(f"published/{video_id}")  # the view nginx serves (api/published.py)
    session.delete(session.get(Video, video_id))
    session.commit()


def latest_completed(session: Session, video_id: str, fmt: str | None = None) -> Job | None:
    """The newest completed encode of a video, optionally one that made `fmt`."""
    for job in jobs.list_jobs(session, status=JobStatus.COMPLETED.value, video_id=video_id):
        if job.type == JobType.ENCODE.value and (fmt is None or fmt in job_formats(job)):
            return job
    return None


def prune_encodes(session: Session, storage: Storage, video_id: str) -> tuple[int, int]:
    """Remove the media of superseded encodes: every completed encode but the newest, and
    the newest that made each format (what playback and Pod's routes serve). The jobs stay,
    as history. Returns (encodes pruned, bytes freed)."""
    kept = {job.id for fmt in (None, *FORMATS) if (job := latest_completed(session, video_id, fmt))}
    done = jobs.list_jobs(session, status=JobStatus.COMPLETED.value, video_id=video_id, limit=1000)
    superseded = [j.id for j in done if j.type == JobType.ENCODE.value and j.id not in kept]
    pruned: set[str] = set()
    freed = 0
    # Rows first, files after: a failure leaves unreferenced files, never a dangling output.
    with write_transaction(session):
        for output in session.scalars(select(Output).where(Output.job_id.in_(superseded))):
            pruned.add(output.job_id)
            freed += output.size or 0
            session.delete(output)
    for job_id in sorted(pruned):
        storage.delete_prefix(f"videos/{video_id}/{job_id}")
    return len(pruned), freed


def job_formats(job: Job) -> list[str]:
    asked = job.params.get("formats") if job.params else None
    return list(asked) if asked else ["hls", "mp4"]


def outputs_of(session: Session, job: Job) -> list[Output]:
    return list(session.scalars(select(Output).where(Output.job_id == job.id).order_by(Output.id)))


def check_affiliation(settings: Settings, affiliation: str | None) -> None:
    """A submitter class must be one of VIDFARM_PRIORITY_CLASSES (refused before storing)."""
    if affiliation is not None and affiliation not in settings.priority_classes:
        known = ", ".join(sorted(settings.priority_classes))
        raise InvalidParameters(f"unknown affiliation {affiliation!r} (known: {known})")


def chunk_params(settings: Settings, video: Video, params: dict[str, Any]) -> list[dict[str, Any]]:
    """The children's params of a chunked encode of `video`, or [] for one pass."""
    probe = video.probe or {}
    if not probe.get("video"):
        return []
    if len(probe.get("audio") or []) > 1 or probe.get("pictures"):
        return []
    if params.get("composition") or params.get("resolution"):
        return []
    formats = params.get("formats")
    if formats is not None and ("hls" not in formats or "dash" in formats):
        return []
    profile = profile_for_params(params, settings.default_profile, settings.user_profiles_dir)
    duration = float(video.duration or 0.0)
    start = float(params.get("start") or 0.0)
    end = float(params["end"]) if params.get("end") is not None else duration
    ranges = plan_chunks(
        end - start,
        profile.segment_duration,
        chunk_seconds=settings.chunk_seconds,
        min_seconds=settings.chunk_min_seconds,
    )
    return [
        {**params, "index": c.index, "start_at": c.start, "end_at": c.end, "weight": c.duration}
        for c in ranges
    ]


def restart_job(session: Session, settings: Settings, storage: Storage, job_id: str) -> Job:
    """Run a finished job again from scratch. A chunked encode starts over in chunks: its old
    chunks and stitch are forgotten (the files they left deleted) and it is split again, as at
    submission. A chunk or a stitch alone is not restarted: its encode is."""
    job = jobs.get_job(session, job_id)
    if job.parent_id is not None:
        raise InvalidTransition(f"job {job_id} is a part of job {job.parent_id}: restart that one")
    if not JobStatus(job.status).is_final:
        raise InvalidTransition(f"job {job_id} is {job.status}; only a finished job restarts")
    for prefix in jobs.forget_children(session, job_id):
        storage.delete_prefix(prefix)
    video = session.get(Video, job.video_id) if job.video_id else None
    plan = None
    if job.type == JobType.ENCODE.value and video is not None:
        plan = encode_split(session, settings, video, job.params)
    jobs.restart(session, job_id, split=plan)
    return jobs.get_job(session, job_id)


def runners_take_chunks(session: Session) -> bool:
    """Whether an active runner manager announced the chunk and stitch task types."""
    needed = {vidfarm_task(JobType.ENCODE_CHUNK), vidfarm_task(JobType.STITCH)}
    announced = session.scalars(
        select(RunnerManager.task_types).where(RunnerManager.active.is_(True))
    ).all()
    return any(needed <= set(types or []) for types in announced)


def encode_split(
    session: Session, settings: Settings, video: Video, params: dict[str, Any]
) -> jobs.Split | None:
    """How a new (or restarted) encode is split into `encode_chunk` children joined by a
    `stitch`, or None when it is not worth it.

    Sent to runner managers, it is split only when an active one announced both chunk task
    types (a `vidfarm runner`): a foreign Esup-Runner takes whole videos only."""
    if settings.transport == "runners" and not runners_take_chunks(session):
        return None
    children = chunk_params(settings, video, dict(params))
    if not children:
        return None
    return jobs.Split(children, JobType.ENCODE_CHUNK.value, JobType.STITCH.value)

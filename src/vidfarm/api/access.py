"""Who may see what: a user token its own videos and jobs, an admin all, a worker none.

What a caller may not see answers 404, like what does not exist: ids of other tenants'
videos are not confirmed. A job belongs to whoever owns its video, or submitted it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from vidfarm import jobs
from vidfarm.api.deps import MISSING_DETAIL, Principal, unauthorized
from vidfarm.auth import Role
from vidfarm.errors import NotFound
from vidfarm.models import Job, JobStatus, Video, Visibility
from vidfarm.videos import find_video

_VIDEO_ID = re.compile(r"^[0-9a-f]{32}$")


def sees_all(principal: Principal) -> bool:
    return principal.role == Role.ADMIN


def owns_video(principal: Principal, video: Video) -> bool:
    return sees_all(principal) or (
        principal.role == Role.USER
        and principal.token_id is not None
        and video.owner_token_id == principal.token_id
    )


def owns_job(session: Session, principal: Principal, job: Job) -> bool:
    if sees_all(principal):
        return True
    if principal.role != Role.USER or principal.token_id is None:
        return False
    if job.owner_token_id == principal.token_id:
        return True
    video = session.get(Video, job.video_id) if job.video_id else None
    return video is not None and video.owner_token_id == principal.token_id


def own_video(session: Session, principal: Principal, video_id: str) -> Video:
    """The video if the caller owns it (or is an admin), else NotFound."""
    video = find_video(session, video_id)
    if not owns_video(principal, video):
        raise NotFound(f"no video {video_id}")
    return video


def own_job(session: Session, principal: Principal, job_id: str) -> Job:
    job = jobs.get_job(session, job_id)
    if not owns_job(session, principal, job):
        raise NotFound(f"no job {job_id}")
    return job


def videos_of(principal: Principal) -> Select[Video]:
    """The videos the caller may list."""
    stmt = select(Video)
    if not sees_all(principal):
        mine = principal.token_id if principal.role == Role.USER else None
        stmt = stmt.where(Video.owner_token_id == (mine or ""))
    return stmt


def check_media(session: Session, principal: Principal, video_id: str, *, public: bool) -> None:
    """May the caller read this video's files at /videos/stream? Else 401, or 404 (not yours).

    Public media (the setting) and public videos need no token; admins read all; a user its
    own videos; a worker the videos of running jobs (it needs a running job's media only).
    """
    if public:
        return
    video = session.get(Video, video_id) if _VIDEO_ID.match(video_id) else None
    if video is not None and video.visibility == Visibility.PUBLIC:
        return
    if principal.anonymous:
        raise unauthorized(MISSING_DETAIL)
    if video is None:
        raise NotFound(f"no video {video_id}")
    if owns_video(principal, video):
        return
    if principal.role == Role.WORKER:
        running = select(Job.id).where(Job.video_id == video.id, Job.status == JobStatus.RUNNING)
        if session.scalar(running.limit(1)) is not None:
            return
    raise NotFound(f"no video {video_id}")


def list_jobs(
    session: Session,
    principal: Principal,
    *,
    status: Sequence[str] | None = None,
    job_type: str | None = None,
    video_id: str | None = None,
    job_ids: Sequence[str] | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[Job]:
    """`jobs.list_jobs`, restricted to the jobs the caller may see."""
    owner = None
    if not sees_all(principal):  # a user's own; a worker's or an anonymous caller's: none
        owner = (principal.token_id if principal.role == Role.USER else None) or ""
    return jobs.list_jobs(
        session,
        status=list(status) if status else None,
        job_type=job_type,
        video_id=video_id,
        job_ids=job_ids,
        owner=owner,
        limit=limit,
        offset=offset,
    )

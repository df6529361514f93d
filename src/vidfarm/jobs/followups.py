"""Creating the jobs a completed job declared as its follow-ups (an encode's transcription)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from vidfarm.jobs.rows import PENDING, RUNNING, WAITING
from vidfarm.models import Job, JobStatus


def queue_follow_ups(session: Session, job: Job) -> None:
    """Create the jobs this one declared as its follow-ups (an encode's transcription, say).

    In the completion's own transaction, so it happens exactly once per accepted attempt,
    whatever carried the report; one of the same type for the video, already waiting, running
    or done, is reused rather than doubled (a restarted encode does not transcribe twice).
    """
    if not job.follow_ups or job.video_id is None:
        return
    for spec in job.follow_ups:
        existing = session.scalar(
            select(Job.id)
            .where(Job.video_id == job.video_id, Job.type == spec["type"])
            .where(Job.status.in_([*WAITING, RUNNING, JobStatus.COMPLETED.value]))
            .limit(1)
        )
        if existing is None:
            session.add(
                Job(
                    type=spec["type"],
                    video_id=job.video_id,
                    params=dict(spec.get("params") or {}),
                    status=PENDING,
                    priority=job.priority,
                    max_attempts=job.max_attempts,
                )
            )

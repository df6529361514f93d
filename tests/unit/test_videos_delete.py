"""Deleting a video whose job ends at that very moment (issue 18's bad day, found by the
roles matrix under load): the delete succeeds, it does not answer 409."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs, videos
from vidfarm.models import Job, Video
from vidfarm.storage.local import LocalStorage


def test_a_job_ending_during_the_delete_does_not_stop_it(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    storage = LocalStorage(tmp_path / "media")
    with session_factory() as deleting, session_factory() as worker:
        video = Video(filename="a.mp4", source_key="sources/x/a.mp4")
        deleting.add(video)
        deleting.commit()
        video_id = video.id
        job_id = jobs.create_job(
            deleting, job_type="encode", video_id=video_id, params={}, max_attempts=1
        ).id
        assert [j.status for j in video.jobs] == ["pending"]
        # The job ends in another session after the deleting one read it as pending.
        worker.execute(update(Job).where(Job.id == job_id).values(status="completed"))
        worker.commit()
        videos.delete_video(deleting, storage, video_id)
    with session_factory() as session:
        assert session.get(Video, video_id) is None
        assert session.get(Job, job_id) is None

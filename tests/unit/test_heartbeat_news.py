"""While a dead worker's lease runs out, its job says how long it has been quiet."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs


def test_a_quiet_running_job_says_no_news_for_so_long(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        job = jobs.create_job(session, job_type="encode", video_id=None, max_attempts=3)
        assert jobs.heartbeat_age(job) is None and jobs.news(job) is None  # not running
        jobs.mark_queued(session, [job.id])
        claim = jobs.claim_job(session, job.id, worker_id="w1", lease_seconds=60)
        assert claim is not None
        job = jobs.get_job(session, job.id)
        seen = jobs.as_utc(job.updated_at)
        assert jobs.news(job, seen + timedelta(seconds=2)) is None  # it just reported
        assert jobs.heartbeat_age(job, seen + timedelta(seconds=40)) == 40
        assert jobs.news(job, seen + timedelta(seconds=40)) == "no news for 40 s"
        jobs.heartbeat(
            session, job.id, claim.fencing_token, progress=10, step="encoding", lease_seconds=60
        )
        job = jobs.get_job(session, job.id)
        assert jobs.heartbeat_age(job, jobs.as_utc(job.updated_at)) == 0  # news again

"""The reconciler's bookkeeping: lost submissions requeued, old tasks purged, source secrets."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from vidfarm import jobs
from vidfarm.config import Settings
from vidfarm.dispatch.runners.assignments import hash_secret, secret_matches
from vidfarm.dispatch.runners.dispatcher import RunnersDispatcher
from vidfarm.models import Job, RunnerAssignment, RunnerManager, Video
from vidfarm.runtime import Runtime, open_runtime


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    settings = Settings(
        data_dir=tmp_path, dispatcher="runners", runners_tasks_deleted_after_days=30
    )
    rt = open_runtime(settings)
    yield rt
    rt.engine.dispose()


def make_job(rt: Runtime) -> str:
    with rt.sessions() as session:
        session.add(Video(id="v" * 32, filename="a.mp4", source_key="sources/v/a.mp4"))
        session.add(RunnerManager(id="m" * 32, name="rm", url="http://x", token_encrypted="-"))
        session.commit()
        return jobs.create_job(session, job_type="encode", video_id="v" * 32, max_attempts=3).id


def test_a_submission_that_died_midway_goes_back_to_pending(runtime: Runtime) -> None:
    job_id = make_job(runtime)
    long_ago = jobs.utcnow() - timedelta(hours=1)
    with runtime.sessions() as session:
        jobs.mark_queued(session, [job_id])
        session.execute(update(Job).values(queued_at=long_ago))
        session.add(
            RunnerAssignment(
                job_id=job_id, manager_id="m" * 32, task_type="encoding",
                source_secret_sha256=hash_secret("s"), state="submitting", submitted_at=long_ago,
            )
        )  # fmt: skip
        session.commit()
    dispatcher = RunnersDispatcher(runtime.sessions, runtime.settings, runtime.storage)
    dispatcher.reconcile(jobs.utcnow())
    with runtime.sessions() as session:
        assert jobs.get_job(session, job_id).status == "pending"
        assert session.scalars(select(RunnerAssignment)).all() == []
        assert jobs.rank(session, job_id) == (1, 1)


def test_old_finished_tasks_are_purged(runtime: Runtime) -> None:
    job_id = make_job(runtime)
    now = jobs.utcnow()
    ages = {"old-imported": 31, "new-imported": 29, "old-failed": 40, "old-waiting": 40}
    with runtime.sessions() as session:
        for name, days in ages.items():
            session.add(
                RunnerAssignment(
                    id=name.replace("-", "").ljust(32, "0"), job_id=job_id, manager_id="m" * 32,
                    task_id=name, task_type="encoding", source_secret_sha256="0" * 64,
                    state="failed" if "failed" in name else "completed",
                    import_state="none" if "waiting" in name else "imported",
                    submitted_at=now - timedelta(days=days),
                    finished_at=now - timedelta(days=days),
                )
            )  # fmt: skip
        session.commit()
    RunnersDispatcher(runtime.sessions, runtime.settings, runtime.storage).reconcile_now(now)
    with runtime.sessions() as session:
        left = sorted(session.scalars(select(RunnerAssignment.task_id)))
    assert left == ["new-imported", "old-waiting"]  # a result not imported yet is kept


def test_never_purged_with_zero_days(runtime: Runtime) -> None:
    settings = runtime.settings.model_copy(update={"runners_tasks_deleted_after_days": 0})
    job_id = make_job(runtime)
    long_ago = jobs.utcnow() - timedelta(days=3650)
    with runtime.sessions() as session:
        session.add(
            RunnerAssignment(
                job_id=job_id, manager_id="m" * 32, task_id="t", task_type="encoding",
                source_secret_sha256="0" * 64, state="failed", submitted_at=long_ago,
                finished_at=long_ago,
            )
        )  # fmt: skip
        session.commit()
    RunnersDispatcher(runtime.sessions, settings, runtime.storage).reconcile_now(jobs.utcnow())
    with runtime.sessions() as session:
        assert len(session.scalars(select(RunnerAssignment)).all()) == 1


def test_source_secret_compare() -> None:
    stored = hash_secret("right")
    assert secret_matches("right", stored)
    assert not secret_matches("wrong", stored)
    assert not secret_matches("right", None)


def test_a_task_that_failed_while_the_reconciler_looked_keeps_its_failure(
    runtime: Runtime,
) -> None:
    """The reconciler lists a running task; its failure arrives; the reconciler then sees the
    job failed. The task must stay `failed` (with its reason), not become `abandoned`."""
    from vidfarm.dispatch.runners.assignments import Notification, in_state

    job_id = make_job(runtime)
    with runtime.sessions() as session:
        jobs.mark_queued(session, [job_id])
        claim = jobs.claim_job(session, job_id, worker_id="runner:rm", lease_seconds=600)
        assert claim is not None
        session.add(
            RunnerAssignment(
                id="a" * 32, job_id=job_id, manager_id="m" * 32, task_type="encoding",
                task_id="t1", source_secret_sha256=hash_secret("s"), state="running",
                fencing_token=claim.fencing_token, submitted_at=jobs.utcnow(),
            )
        )  # fmt: skip
        session.commit()
    dispatcher = RunnersDispatcher(runtime.sessions, runtime.settings, runtime.storage)
    with runtime.sessions() as session:
        (seen,) = in_state(session, "running")  # the reconciler's list...
        dispatcher.record_news(seen.id, Notification(status="failed", error_message="bad media"))
        dispatcher._news.follow(session, seen, jobs.utcnow())  # ...then its look at the task
    with runtime.sessions() as session:
        assignment = session.get(RunnerAssignment, "a" * 32)
        assert assignment is not None and assignment.state == "failed"
        assert "bad media" in (assignment.error or "")
        assert jobs.get_job(session, job_id).status == "failed"

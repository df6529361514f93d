"""The embedded worker pool, its reporter and the scheduler, on real databases."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs
from vidfarm.claims import Claim, Reporter
from vidfarm.config import Settings
from vidfarm.dispatch.local import LocalDispatcher, WorkerPool
from vidfarm.errors import JobCancelled
from vidfarm.models import Job, JobStatus
from vidfarm.scheduler import Scheduler

Factory = sessionmaker[Session]
RunFunction = Callable[[Claim, Reporter], None]


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=db_url,
        worker_concurrency=3,
        lease_seconds=0.5,
        poll_seconds=0.05,
        retry_base_seconds=0.0,
        retry_max_seconds=0.0,
        max_attempts=3,
    )


@pytest.fixture
def pools(session_factory: Factory, settings: Settings) -> Iterator[Callable[..., WorkerPool]]:
    """Start pools that are always stopped at the end, even when a test fails."""
    started: list[WorkerPool] = []

    def start(run: RunFunction, *, concurrency: int | None = None) -> WorkerPool:
        pool_settings = settings
        if concurrency is not None:
            pool_settings = settings.model_copy(update={"worker_concurrency": concurrency})
        pool = WorkerPool(session_factory, pool_settings, run, f"test{len(started)}")
        pool.start()
        started.append(pool)
        return pool

    yield start
    for pool in started:
        pool.stop(graceful=True, timeout=10)


def submit(factory: Factory, count: int = 1, *, max_attempts: int = 3) -> list[str]:
    with factory() as session:
        return [
            jobs.create_job(
                session,
                job_type="encode",
                video_id=None,
                params={"n": n},
                max_attempts=max_attempts,
            ).id
            for n in range(count)
        ]


def load(factory: Factory, job_id: str) -> Job:
    with factory() as session:
        return jobs.get_job(session, job_id)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def wait_status(factory: Factory, job_id: str, *statuses: JobStatus) -> Job:
    wait_for(lambda: load(factory, job_id).status in statuses)
    return load(factory, job_id)


def test_pool_runs_jobs_concurrently(
    session_factory: Factory, pools: Callable[..., WorkerPool]
) -> None:
    together = threading.Barrier(3, timeout=5)  # passes only if 3 jobs run at the same time

    def run(claim: Claim, reporter: Reporter) -> None:
        assert reporter.progress(50.0, "encode")
        together.wait()
        reporter.complete({"n": claim.params["n"], "thread": threading.current_thread().name}, [])

    pool = pools(run)
    ids = submit(session_factory, 6)
    LocalDispatcher(session_factory, pool).dispatch(ids)
    done = [wait_status(session_factory, job_id, JobStatus.COMPLETED) for job_id in ids]
    assert [job.result["n"] for job in done if job.result] == list(range(6))
    assert {job.attempts for job in done} == {1}
    assert len({job.result["thread"] for job in done if job.result}) == 3


@pytest.mark.parametrize("core_reports", [True, False], ids=["core-reports", "core-returns"])
def test_graceful_stop_hands_the_running_job_back(
    session_factory: Factory, pools: Callable[..., WorkerPool], core_reports: bool
) -> None:
    started = threading.Event()

    def endless(claim: Claim, reporter: Reporter) -> None:
        started.set()
        while reporter.progress(10.0, "encode"):
            time.sleep(0.01)
        if core_reports:  # what the worker core does when told to stop
            reporter.fail(JobCancelled("stopped"), ["interrupted"])

    (job_id,) = submit(session_factory)
    pool = pools(endless, concurrency=1)
    LocalDispatcher(session_factory, pool).dispatch([job_id])
    assert started.wait(5)
    assert pool.running_jobs == [job_id]
    assert pool.stop(graceful=True, timeout=5)

    handed_back = load(session_factory, job_id)
    assert (handed_back.status, handed_back.attempts, handed_back.fencing_token) == (
        JobStatus.QUEUED,
        0,
        1,
    )
    assert handed_back.lease_owner is None

    def finish(claim: Claim, reporter: Reporter) -> None:
        reporter.complete({"token": claim.fencing_token}, [])

    pools(finish, concurrency=1).wake()
    done = wait_status(session_factory, job_id, JobStatus.COMPLETED)
    assert (done.result, done.attempts) == ({"token": 2}, 1)


def test_an_exception_in_run_is_a_transient_failure(
    session_factory: Factory, pools: Callable[..., WorkerPool]
) -> None:
    def crashes_once(claim: Claim, reporter: Reporter) -> None:
        if claim.attempt == 1:
            raise RuntimeError("boom")
        reporter.complete({"attempt": claim.attempt}, [])

    (job_id,) = submit(session_factory)
    pool = pools(crashes_once, concurrency=1)
    dispatcher = LocalDispatcher(session_factory, pool)
    dispatcher.dispatch([job_id])
    failed = wait_status(session_factory, job_id, JobStatus.PENDING)
    assert failed.attempts == 1
    assert failed.error_class == "UnexpectedError"
    assert failed.error == "RuntimeError: boom"
    assert failed.log_tail is not None and "Traceback" in failed.log_tail

    dispatcher.dispatch([job_id])  # the same thread is alive and runs the retry
    done = wait_status(session_factory, job_id, JobStatus.COMPLETED)
    assert (done.result, done.attempts) == ({"attempt": 2}, 2)
    assert pool.alive


def test_a_core_that_returns_without_reporting_fails_transiently(
    session_factory: Factory, pools: Callable[..., WorkerPool]
) -> None:
    (job_id,) = submit(session_factory, max_attempts=1)
    LocalDispatcher(session_factory, pools(lambda claim, reporter: None)).dispatch([job_id])
    job = wait_status(session_factory, job_id, JobStatus.FAILED)
    assert job.error_class == "TransientError"


@pytest.mark.parametrize("core_reports", [True, False], ids=["core-reports", "core-returns"])
def test_cancel_while_running_in_the_pool(
    session_factory: Factory, pools: Callable[..., WorkerPool], core_reports: bool
) -> None:
    started = threading.Event()
    stopped = threading.Event()

    def endless(claim: Claim, reporter: Reporter) -> None:
        started.set()
        while reporter.progress(10.0, "encode"):
            time.sleep(0.01)
        if core_reports:
            reporter.fail(JobCancelled("cancelled"), [])
        stopped.set()

    (job_id,) = submit(session_factory)
    pool = pools(endless, concurrency=1)
    LocalDispatcher(session_factory, pool).dispatch([job_id])
    assert started.wait(5)
    with session_factory() as session:
        jobs.cancel(session, job_id)
    assert stopped.wait(5)
    wait_for(lambda: pool.running_jobs == [])  # the pool is done with the attempt
    job = load(session_factory, job_id)
    assert (job.status, job.attempts, job.error_class) == (JobStatus.CANCELLED, 1, "JobCancelled")


def test_scheduler_reclaims_a_lost_job_and_the_pool_reruns_it(
    session_factory: Factory, pools: Callable[..., WorkerPool], settings: Settings
) -> None:
    (job_id,) = submit(session_factory)
    dispatcher = LocalDispatcher(session_factory)
    scheduler = Scheduler(session_factory, dispatcher, settings)
    assert scheduler.tick().dispatched == [job_id]
    with session_factory() as session:  # a worker claims it, then dies without a word
        lost = jobs.claim_next(session, worker_id="dead", lease_seconds=0.2)
    assert lost is not None
    time.sleep(0.25)

    tick = scheduler.tick()
    assert (tick.reclaimed, tick.dispatched) == ([job_id], [job_id])
    assert load(session_factory, job_id).status == JobStatus.QUEUED

    def finish(claim: Claim, reporter: Reporter) -> None:
        reporter.complete({"token": claim.fencing_token}, [])

    dispatcher.pool = pools(finish, concurrency=1)
    dispatcher.pool.wake()
    done = wait_status(session_factory, job_id, JobStatus.COMPLETED)
    assert (done.result, done.attempts) == ({"token": lost.fencing_token + 1}, 2)


def test_a_lease_lost_while_the_disk_was_full_is_not_counted(
    session_factory: Factory, settings: Settings
) -> None:
    """The disk was full at one tick and free again at the reclaim (the reclaim itself can only
    be written then): the attempt still waits for space uncounted."""
    (job_id,) = submit(session_factory)
    full = Scheduler(
        session_factory,
        LocalDispatcher(session_factory),
        settings.model_copy(update={"min_free_bytes": 2**62}),
    )
    assert full.tick().dispatched == [job_id]
    with session_factory() as session:  # its worker dies while the disk is full
        lost = jobs.claim_next(session, worker_id="stuck", lease_seconds=0.2)
    assert lost is not None
    time.sleep(0.25)
    full._settings = settings  # space is back at the next tick (the same scheduler)
    assert full.tick().reclaimed == [job_id]
    job = load(session_factory, job_id)
    assert (job.attempts, job.error_class) == (0, "OutOfSpace"), job.error
    assert "while out of space" in (job.error or "")


def test_scheduler_loop_dispatches_new_jobs(
    session_factory: Factory, pools: Callable[..., WorkerPool], settings: Settings
) -> None:
    def finish(claim: Claim, reporter: Reporter) -> None:
        reporter.complete({}, [])

    scheduler = Scheduler(
        session_factory, LocalDispatcher(session_factory, pools(finish)), settings
    )
    scheduler.start()
    try:
        ids = submit(session_factory, 4)
        for job_id in ids:
            wait_status(session_factory, job_id, JobStatus.COMPLETED)
    finally:
        scheduler.stop(timeout=5)


def test_keep_alive_renews_the_lease_through_a_long_silent_step(
    session_factory: Factory, settings: Settings
) -> None:
    """A step longer than the lease (a model loading, an upload) must not lose the job."""
    from vidfarm.keepalive import KeepAlive
    from vidfarm.reporting import DirectReporter

    lease = 0.6
    [job_id] = submit(session_factory)
    with session_factory() as session:
        jobs.mark_queued(session, [job_id])
        claim = jobs.claim_next(session, worker_id="w", lease_seconds=lease)
    assert claim is not None
    quick = settings.model_copy(update={"lease_seconds": lease})
    with KeepAlive(DirectReporter(session_factory, claim, quick), lease / 3) as alive:
        time.sleep(lease * 3)  # silent: no progress of its own
        with session_factory() as session:
            assert jobs.reclaim_expired(session, retry_base=0.1, retry_max=0.1) == []
        alive.complete({"ok": True}, [])
    assert load(session_factory, job_id).status == JobStatus.COMPLETED
    # Without it, the same silence costs the lease.
    [other] = submit(session_factory)
    with session_factory() as session:
        jobs.mark_queued(session, [other])
        jobs.claim_next(session, worker_id="w", lease_seconds=lease)
    time.sleep(lease * 2)
    with session_factory() as session:
        assert jobs.reclaim_expired(session, retry_base=0.1, retry_max=0.1) == [other]

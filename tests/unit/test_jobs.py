"""The job lifecycle against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import TypedDict

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs
from vidfarm.claims import Claim, OutputRecord
from vidfarm.errors import (
    InvalidMedia,
    InvalidTransition,
    JobCancelled,
    JobNotFound,
    JobTimedOut,
    StaleAttempt,
    StorageUnavailable,
)
from vidfarm.models import Job, JobStatus, Output, Video

LEASE = 0.2


class Retry(TypedDict):
    retry_base: float
    retry_max: float


NO_WAIT = Retry(retry_base=0.0, retry_max=0.0)

Factory = sessionmaker[Session]


def add_video(factory: Factory, source_key: str = "sources/a.mp4") -> str:
    with factory() as session:
        video = Video(filename="a.mp4", source_key=source_key, size=1)
        session.add(video)
        session.commit()
        return video.id


def new_job(
    factory: Factory,
    video_id: str | None = None,
    *,
    priority: int = 0,
    max_attempts: int = 3,
    job_type: str = "encode",
    queue: bool = True,
) -> str:
    with factory() as session:
        job = jobs.create_job(
            session,
            job_type=job_type,
            video_id=video_id,
            params={"profile": "default"},
            priority=priority,
            max_attempts=max_attempts,
        )
        if queue:
            assert jobs.mark_queued(session, [job.id]) == [job.id]
        return job.id


def claim(factory: Factory, worker: str = "w1", lease: float = LEASE) -> Claim | None:
    with factory() as session:
        return jobs.claim_next(session, worker_id=worker, lease_seconds=lease)


def must_claim(factory: Factory, worker: str = "w1", lease: float = LEASE) -> Claim:
    claimed = claim(factory, worker, lease)
    assert claimed is not None
    return claimed


def load(factory: Factory, job_id: str) -> Job:
    with factory() as session:
        return jobs.get_job(session, job_id)


def output(key: str = "v/a/720p.mp4") -> OutputRecord:
    return OutputRecord(kind="mp4", key=key, size=10, sha256="0" * 64, width=1280, height=720)


def test_happy_path_through_every_state(session_factory: Factory) -> None:
    video_id = add_video(session_factory)
    job_id = new_job(session_factory, video_id, queue=False)
    assert load(session_factory, job_id).status == JobStatus.PENDING
    assert claim(session_factory) is None  # pending is not claimable: it was never dispatched

    with session_factory() as session:
        assert jobs.mark_queued(session, [job_id, "nope"]) == [job_id]
        assert jobs.mark_queued(session, [job_id]) == []  # already queued
    queued = load(session_factory, job_id)
    assert queued.status == JobStatus.QUEUED
    assert queued.queued_at is not None

    # A lease long enough to outlast a loaded machine: this test is not about expiry.
    claimed = must_claim(session_factory, lease=60)
    assert claimed.job_id == job_id
    assert claimed.video_id == video_id
    assert claimed.source_key == "sources/a.mp4"
    assert claimed.params == {"profile": "default"}
    assert (claimed.attempt, claimed.fencing_token) == (1, 1)
    running = load(session_factory, job_id)
    assert running.status == JobStatus.RUNNING
    assert running.lease_owner == "w1"
    assert running.started_at is not None
    assert running.lease_expires_at is not None
    assert jobs.as_utc(running.lease_expires_at) > jobs.utcnow()
    assert claim(session_factory) is None

    with session_factory() as session:
        assert jobs.heartbeat(session, job_id, 1, progress=42.5, step="encode", lease_seconds=60)
    assert (load(session_factory, job_id).progress, load(session_factory, job_id).step) == (
        42.5,
        "encode",
    )

    with session_factory() as session:
        jobs.complete(session, job_id, 1, {"duration": 3.0}, [output(), output("v/a/hls.m3u8")])
    done = load(session_factory, job_id)
    assert done.status == JobStatus.COMPLETED
    assert done.progress == 100.0
    assert done.result == {"duration": 3.0}
    assert done.finished_at is not None
    assert done.lease_owner is None and done.lease_expires_at is None
    with session_factory() as session:
        rows = session.scalars(select(Output).where(Output.job_id == job_id)).all()
        assert sorted(row.key for row in rows) == ["v/a/720p.mp4", "v/a/hls.m3u8"]
        assert {row.video_id for row in rows} == {video_id}

    with session_factory() as session, pytest.raises(StaleAttempt):
        jobs.complete(session, job_id, 1, {}, [])  # accepted once only


def test_unknown_job_raises_not_found(session_factory: Factory) -> None:
    with session_factory() as session:
        for call in (
            lambda: jobs.get_job(session, "missing"),
            lambda: jobs.cancel(session, "missing"),
            lambda: jobs.restart(session, "missing"),
            lambda: jobs.rank(session, "missing"),
            lambda: jobs.heartbeat(session, "missing", 1, progress=1, step="x", lease_seconds=1),
            lambda: jobs.claim_job(session, "missing", worker_id="w", lease_seconds=1),
        ):
            with pytest.raises(JobNotFound):
                call()


def test_claim_order_is_priority_then_age(session_factory: Factory) -> None:
    old_low = new_job(session_factory, priority=0)
    old_high = new_job(session_factory, priority=5)
    new_low = new_job(session_factory, priority=0)
    new_high = new_job(session_factory, priority=5)
    urgent = new_job(session_factory, priority=9)
    order = [must_claim(session_factory).job_id for _ in range(5)]
    assert order == [urgent, old_high, new_high, old_low, new_low]
    assert claim(session_factory) is None


def test_claim_filters_job_types_and_claim_job_takes_a_named_job(session_factory: Factory) -> None:
    encode = new_job(session_factory, job_type="encode")
    transcribe = new_job(session_factory, job_type="transcription")
    with session_factory() as session:
        got = jobs.claim_next(session, worker_id="w", lease_seconds=1, job_types=["transcription"])
        assert got is not None and got.job_id == transcribe
        assert jobs.claim_next(session, worker_id="w", lease_seconds=1, job_types=["x"]) is None
        named = jobs.claim_job(session, encode, worker_id="w", lease_seconds=1)
        assert named is not None and named.job_id == encode
        assert jobs.claim_job(session, encode, worker_id="w2", lease_seconds=1) is None


def test_eight_threads_claim_each_job_exactly_once(session_factory: Factory) -> None:
    job_ids = {new_job(session_factory) for _ in range(40)}
    claimed: list[tuple[str, str]] = []
    lock = threading.Lock()
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def worker(name: str) -> None:
        try:
            start.wait()
            while (got := claim(session_factory, name, lease=30)) is not None:
                with lock:
                    claimed.append((got.job_id, name))
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    counts = Counter(job_id for job_id, _ in claimed)
    assert set(counts) == job_ids
    assert set(counts.values()) == {1}
    with session_factory() as session:
        for job in jobs.list_jobs(session, limit=100):
            assert (job.status, job.attempts, job.fencing_token) == (JobStatus.RUNNING, 1, 1)
            assert job.lease_owner == dict((j, w) for j, w in claimed)[job.id]


CLAIMER = """
import sys
import time
from vidfarm import jobs
from vidfarm.db import make_engine, make_session_factory

factory = make_session_factory(make_engine(sys.argv[1]))
print("ready", flush=True)
sys.stdin.readline()  # start together
while True:
    with factory() as session:
        got = jobs.claim_next(session, worker_id=sys.argv[2], lease_seconds=30)
    if got is None:
        break
    print(got.job_id, flush=True)
    time.sleep(0.005)  # a little work, so a fast starter cannot take everything
"""


def test_several_processes_claim_each_job_exactly_once(
    session_factory: Factory, db_url: str
) -> None:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, db_url, f"p{n}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in range(3)
    ]
    with session_factory() as session:  # while the processes start
        job_ids = [
            jobs.create_job(session, job_type="encode", video_id=None, max_attempts=3).id
            for _ in range(60)
        ]
        jobs.mark_queued(session, job_ids)
    claimed: list[str] = []
    per_process: list[list[str]] = []
    try:
        for process in processes:
            assert process.stdout is not None
            assert process.stdout.readline().strip() == "ready"
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.close()
        for process in processes:
            assert process.stdout is not None
            ids = process.stdout.read().split()
            assert process.wait(timeout=60) == 0
            per_process.append(ids)
            claimed += ids
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert Counter(claimed) == Counter(job_ids)  # every job, each exactly once
    assert sum(1 for ids in per_process if ids) >= 2  # the processes really competed


def test_a_lease_that_runs_out_while_the_disk_is_full_is_not_counted(
    session_factory: Factory,
) -> None:
    """The worker could not record its end on a full disk: the job waits for space."""
    video_id = add_video(session_factory)
    job_id = new_job(session_factory, video_id)
    must_claim(session_factory, "stuck-worker")
    full = "data folder /srv/vidfarm: 3 MiB free, below VIDFARM_MIN_FREE_BYTES (64 MiB)"
    later = jobs.utcnow() + timedelta(seconds=LEASE + 1)
    with session_factory() as session:
        assert jobs.reclaim_expired(session, later, **NO_WAIT, out_of_space=full) == [job_id]
    job = load(session_factory, job_id)
    assert (job.status, job.attempts, job.error_class) == (JobStatus.PENDING, 0, "OutOfSpace")
    assert job.error is not None and "out of space" in job.error and "3 MiB free" in job.error


def test_lease_expiry_requeues_and_newer_attempt_wins(session_factory: Factory) -> None:
    video_id = add_video(session_factory)
    job_id = new_job(session_factory, video_id)
    first = must_claim(session_factory, "lost-worker")
    expires = load(session_factory, job_id).lease_expires_at
    assert expires is not None
    expires = jobs.as_utc(expires)
    just_before, just_after = (
        expires - timedelta(milliseconds=5),
        expires + timedelta(milliseconds=5),
    )
    with session_factory() as session:
        assert jobs.reclaim_expired(session, just_before, **NO_WAIT) == []  # lease still valid
    time.sleep(LEASE + 0.05)
    with session_factory() as session:
        assert jobs.reclaim_expired(session, just_after, **NO_WAIT) == [job_id]
        assert jobs.reclaim_expired(session, **NO_WAIT) == []  # done once
    reclaimed = load(session_factory, job_id)
    assert reclaimed.status == JobStatus.PENDING
    assert reclaimed.error_class == "LeaseExpired"
    assert reclaimed.error is not None and "lease expired (worker lost)" in reclaimed.error
    assert reclaimed.lease_owner is None

    with session_factory() as session:
        assert jobs.due_pending(session) == [job_id]
        jobs.mark_queued(session, [job_id])
    second = must_claim(session_factory, "new-worker", lease=30)
    assert (second.attempt, second.fencing_token) == (2, first.fencing_token + 1)

    with session_factory() as session:
        with pytest.raises(StaleAttempt):
            jobs.heartbeat(
                session, job_id, first.fencing_token, progress=50, step="x", lease_seconds=1
            )
        with pytest.raises(StaleAttempt):
            jobs.complete(session, job_id, first.fencing_token, {"by": "old"}, [output("old")])
        with pytest.raises(StaleAttempt):
            jobs.fail(session, job_id, first.fencing_token, StorageUnavailable("x"), [], **NO_WAIT)
        with pytest.raises(StaleAttempt):
            jobs.release(session, job_id, first.fencing_token)
        jobs.complete(session, job_id, second.fencing_token, {"by": "new"}, [output("new")])
        with pytest.raises(StaleAttempt):
            jobs.complete(session, job_id, first.fencing_token, {"by": "old"}, [output("old")])
    done = load(session_factory, job_id)
    assert (done.status, done.result, done.attempts) == (JobStatus.COMPLETED, {"by": "new"}, 2)
    with session_factory() as session:
        assert session.scalars(select(Output.key)).all() == ["new"]


def test_transient_failures_back_off_then_fail_at_the_limit(session_factory: Factory) -> None:
    job_id = new_job(session_factory, max_attempts=3)
    rng = random.Random(7)
    delays: list[float] = []
    for attempt in (1, 2, 3):
        with session_factory() as session:
            jobs.mark_queued(session, [job_id])
        got = must_claim(session_factory)
        assert got.attempt == attempt
        before = jobs.utcnow()
        with session_factory() as session:
            job = jobs.fail(
                session,
                job_id,
                got.fencing_token,
                StorageUnavailable(f"store down\nattempt {attempt}"),
                ["line 1", "line 2"],
                retry_base=10.0,
                retry_max=25.0,
                rng=rng,
            )
        job = load(session_factory, job_id)
        assert job.attempts == attempt
        assert job.error == f"store down attempt {attempt}"  # one line
        assert job.error_class == "StorageUnavailable"
        assert job.log_tail == "line 1\nline 2"
        if attempt < 3:
            assert job.status == JobStatus.PENDING
            assert job.not_before is not None
            delay = (jobs.as_utc(job.not_before) - before).total_seconds()
            step = min(25.0, 10.0 * 2 ** (attempt - 1))
            assert step * 0.5 - 0.5 <= delay <= step + 0.5
            delays.append(delay)
            with session_factory() as session:
                assert jobs.due_pending(session) == []  # backing off
                assert jobs.due_pending(session, jobs.utcnow() + timedelta(seconds=step)) == [
                    job_id
                ]
            # Skip the wait: make it due now, as time passing would.
            with session_factory() as session:
                session.get_one(Job, job_id).not_before = jobs.utcnow()
                session.commit()
        else:
            assert job.status == JobStatus.FAILED
            assert job.finished_at is not None
    assert delays[1] > delays[0]


def test_backoff_delay_grows_is_capped_and_jitter_is_bounded() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        step = min(300.0, 2.0 * 2 ** (attempt - 1))
        samples = [jobs.backoff_delay(attempt, 2.0, 300.0, rng) for _ in range(200)]
        assert all(step * 0.5 <= s <= step for s in samples)
        assert max(samples) - min(samples) > 0  # jittered
    assert jobs.backoff_delay(50, 2.0, 300.0, rng) <= 300.0
    assert jobs.backoff_delay(1, 0.0, 0.0, rng) == 0.0


def test_permanent_failure_fails_at_once(session_factory: Factory) -> None:
    job_id = new_job(session_factory, max_attempts=5)
    got = must_claim(session_factory)
    with session_factory() as session:
        jobs.fail(
            session,
            job_id,
            got.fencing_token,
            InvalidMedia("not a video"),
            ["x" * 50_000],
            **NO_WAIT,
        )
    job = load(session_factory, job_id)
    assert (job.status, job.attempts, job.error, job.error_class) == (
        JobStatus.FAILED,
        1,
        "not a video",
        "InvalidMedia",
    )
    assert job.log_tail is not None and len(job.log_tail) <= jobs.LOG_TAIL_MAX_CHARS
    assert job.not_before is None


@pytest.mark.parametrize(
    ("error", "status"),
    [(JobTimedOut("too slow"), JobStatus.TIMEOUT), (JobCancelled("stop"), JobStatus.CANCELLED)],
)
def test_timeout_and_cancelled_errors_are_final(
    session_factory: Factory, error: JobTimedOut | JobCancelled, status: JobStatus
) -> None:
    job_id = new_job(session_factory)
    got = must_claim(session_factory)
    with session_factory() as session:
        jobs.fail(session, job_id, got.fencing_token, error, [], **NO_WAIT)
    job = load(session_factory, job_id)
    assert (job.status, job.attempts, job.error_class) == (status, 1, type(error).__name__)


def test_cancel_waiting_and_final_jobs(session_factory: Factory) -> None:
    pending = new_job(session_factory, queue=False)
    queued = new_job(session_factory)
    with session_factory() as session:
        assert jobs.cancel(session, pending).status == JobStatus.CANCELLED
        assert jobs.cancel(session, queued).status == JobStatus.CANCELLED
        with pytest.raises(InvalidTransition):
            jobs.cancel(session, queued)
    assert claim(session_factory) is None


def test_cancel_while_running_stops_the_worker_and_rejects_completion(
    session_factory: Factory,
) -> None:
    job_id = new_job(session_factory, add_video(session_factory))
    got = must_claim(session_factory)
    with session_factory() as session:
        jobs.cancel(session, job_id)
        assert not jobs.heartbeat(
            session, job_id, got.fencing_token, progress=10, step="x", lease_seconds=1
        )
        with pytest.raises(StaleAttempt):
            jobs.complete(session, job_id, got.fencing_token, {}, [output()])
        # The worker noticing and reporting its cancellation is accepted, state unchanged.
        jobs.fail(session, job_id, got.fencing_token, JobCancelled("stopped"), ["bye"], **NO_WAIT)
        assert jobs.reclaim_expired(session, jobs.utcnow() + timedelta(hours=1), **NO_WAIT) == []
    job = load(session_factory, job_id)
    assert (job.status, job.log_tail, job.result) == (JobStatus.CANCELLED, "bye", None)
    with session_factory() as session:
        assert session.scalars(select(Output)).all() == []


def test_restart_runs_a_finished_job_again(session_factory: Factory) -> None:
    video_id = add_video(session_factory)
    job_id = new_job(session_factory, video_id, max_attempts=1)
    with session_factory() as session, pytest.raises(InvalidTransition):
        jobs.restart(session, job_id)  # queued
    got = must_claim(session_factory)
    with session_factory() as session:
        with pytest.raises(InvalidTransition):
            jobs.restart(session, job_id)  # running
        jobs.fail(session, job_id, got.fencing_token, StorageUnavailable("down"), [], **NO_WAIT)
    assert load(session_factory, job_id).status == JobStatus.FAILED  # no attempts left

    with session_factory() as session:
        job = jobs.restart(session, job_id)
    assert (job.status, job.attempts, job.error, job.error_class, job.progress) == (
        JobStatus.PENDING,
        0,
        None,
        None,
        0.0,
    )
    with session_factory() as session:
        jobs.mark_queued(session, [job_id])
    again = must_claim(session_factory)
    assert (again.attempt, again.fencing_token) == (1, 2)
    with session_factory() as session:
        jobs.complete(session, job_id, again.fencing_token, {"n": 1}, [output()])
        jobs.restart(session, job_id)  # a completed job may be redone too
        jobs.mark_queued(session, [job_id])
    third = must_claim(session_factory)
    with session_factory() as session:
        jobs.complete(session, job_id, third.fencing_token, {"n": 2}, [output()])
        # Outputs are replaced, never imported twice.
        assert len(session.scalars(select(Output)).all()) == 1


def test_release_hands_back_without_counting_the_attempt(session_factory: Factory) -> None:
    job_id = new_job(session_factory, max_attempts=1)
    got = must_claim(session_factory)
    with session_factory() as session:
        job = jobs.release(session, job_id, got.fencing_token)
    assert (job.status, job.attempts, job.lease_owner) == (JobStatus.QUEUED, 0, None)
    again = must_claim(session_factory, "w2")
    assert (again.attempt, again.fencing_token) == (1, 2)


def test_rank_and_total_waiting(session_factory: Factory) -> None:
    low = new_job(session_factory, priority=0, queue=False)
    high = new_job(session_factory, priority=3)
    mid = new_job(session_factory, priority=1, queue=False)
    later_low = new_job(session_factory, priority=0)
    with session_factory() as session:
        assert jobs.rank(session, high) == (1, 4)
        assert jobs.rank(session, mid) == (2, 4)
        assert jobs.rank(session, low) == (3, 4)
        assert jobs.rank(session, later_low) == (4, 4)
    got = must_claim(session_factory)
    assert got.job_id == high
    with session_factory() as session:
        assert jobs.rank(session, high) == (None, 3)
        assert jobs.rank(session, later_low) == (3, 3)


def test_due_pending_and_list_jobs(session_factory: Factory) -> None:
    video_id = add_video(session_factory)
    a = new_job(session_factory, video_id, queue=False)
    b = new_job(session_factory, priority=2, queue=False, job_type="transcription")
    c = new_job(session_factory, video_id)
    with session_factory() as session:
        assert jobs.due_pending(session) == [b, a]
        assert [j.id for j in jobs.list_jobs(session)] == [c, b, a]
        assert [j.id for j in jobs.list_jobs(session, status="pending")] == [b, a]
        assert [j.id for j in jobs.list_jobs(session, status=["queued"])] == [c]
        assert [j.id for j in jobs.list_jobs(session, job_type="transcription")] == [b]
        assert [j.id for j in jobs.list_jobs(session, video_id=video_id)] == [c, a]
        assert [j.id for j in jobs.list_jobs(session, limit=1, offset=1)] == [b]


def test_heartbeat_renews_the_lease(session_factory: Factory) -> None:
    job_id = new_job(session_factory)
    got = must_claim(session_factory, lease=LEASE)
    with session_factory() as session:
        assert jobs.heartbeat(
            session, job_id, got.fencing_token, progress=150, step="s", lease_seconds=30
        )
    time.sleep(LEASE + 0.05)  # the claim's own lease is over, the renewed one is not
    with session_factory() as session:
        assert jobs.reclaim_expired(session, **NO_WAIT) == []
    job = load(session_factory, job_id)
    assert job.lease_expires_at is not None
    assert jobs.as_utc(job.lease_expires_at) > jobs.utcnow() + timedelta(seconds=20)
    assert (job.progress, job.step) == (100.0, "s")  # clamped


def test_unqueue_and_republish_touch_only_queued_jobs(session_factory: Factory) -> None:
    waiting = new_job(session_factory)
    running = new_job(session_factory)
    with session_factory() as session:
        claim = jobs.claim_job(session, running, worker_id="w", lease_seconds=30)
        assert claim is not None
        assert jobs.unqueue(session, waiting) is True
        assert jobs.unqueue(session, waiting) is False  # already pending
        assert jobs.unqueue(session, running) is False
        assert jobs.get_job(session, waiting).status == JobStatus.PENDING
        assert jobs.get_job(session, running).status == JobStatus.RUNNING
        jobs.mark_queued(session, [waiting])
        counts = jobs.queued_counts(session, jobs.utcnow() + timedelta(seconds=1))
        assert counts == {"encode": (1, [waiting])}
        assert jobs.queued_counts(session, jobs.utcnow() - timedelta(hours=1)) == {
            "encode": (1, [])
        }


def test_declared_follow_ups_are_created_once_on_completion(session_factory: Factory) -> None:
    video_id = add_video(session_factory)
    with session_factory() as session:
        first = jobs.create_job(
            session,
            job_type="encode",
            video_id=video_id,
            max_attempts=3,
            follow_ups=[jobs.FollowUp("transcription", {"language": "fr"})],
        )
        plain = jobs.create_job(session, job_type="encode", video_id=video_id, max_attempts=3)
        jobs.mark_queued(session, [first.id, plain.id])
        first_id, plain_id = first.id, plain.id

    def transcriptions() -> list[Job]:
        with session_factory() as session:
            return list(session.scalars(select(Job).where(Job.type == "transcription")))

    with session_factory() as session:
        taken = jobs.claim_job(session, plain_id, worker_id="w", lease_seconds=30)
        assert taken is not None
        jobs.complete(session, plain_id, taken.fencing_token, {}, [])
    assert transcriptions() == []  # declared nothing, creates nothing

    for _ in range(2):  # completed, restarted, completed again: one transcription
        with session_factory() as session:
            taken = jobs.claim_job(session, first_id, worker_id="w", lease_seconds=30)
            assert taken is not None
            jobs.complete(session, first_id, taken.fencing_token, {}, [])
            jobs.restart(session, first_id)
            jobs.mark_queued(session, [first_id])
    made = transcriptions()
    assert len(made) == 1
    assert made[0].video_id == video_id and made[0].params == {"language": "fr"}
    assert made[0].status == JobStatus.PENDING.value

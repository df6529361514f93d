"""Jobs made of children (a chunked encode): the job core's rules, on SQLite and PostgreSQL.

No media here: the children are claimed, failed and completed by hand, as workers would.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs
from vidfarm.claims import Claim, OutputRecord
from vidfarm.errors import InvalidMedia, StaleAttempt, StorageUnavailable
from vidfarm.models import Job, JobStatus, Output, Video

Factory = sessionmaker[Session]
RETRY = {"retry_base": 0.0, "retry_max": 0.0}


def make_family(factory: Factory, spans: list[tuple[float, float]]) -> tuple[str, list[str]]:
    """A video, its encode (with a transcription follow-up) split into children."""
    with factory() as session:
        video = Video(filename="v.mp4", source_key="sources/v/v.mp4")
        session.add(video)
        session.commit()
        parent = jobs.create_job(
            session,
            job_type="encode",
            video_id=video.id,
            params={"profile": "default"},
            max_attempts=2,
            follow_ups=[jobs.FollowUp("transcription", {"language": "fr"})],
            split=jobs.Split(
                [
                    {"index": i, "start_at": a, "end_at": b, "weight": b - a}
                    for i, (a, b) in enumerate(spans)
                ],
                "encode_chunk",
                "stitch",
            ),
        )
        return parent.id, [c.id for c in jobs.children_of(session, parent.id)]


def take(factory: Factory, job_id: str) -> Claim:
    with factory() as session:
        jobs.mark_queued(session, [job_id])
        claim = jobs.claim_job(session, job_id, worker_id="w", lease_seconds=60)
        assert claim is not None
        return claim


def finish(factory: Factory, claim: Claim, result: dict[str, Any]) -> None:
    with factory() as session:
        jobs.complete(session, claim.job_id, claim.fencing_token, result, [])


def load(factory: Factory, job_id: str) -> Job:
    with factory() as session:
        return jobs.get_job(session, job_id)


def stitches(factory: Factory, parent_id: str) -> list[Job]:
    with factory() as session:
        return list(
            session.scalars(select(Job).where(Job.parent_id == parent_id, Job.type == "stitch"))
        )


def test_children_join_once_and_the_join_completes_the_parent(session_factory: Factory) -> None:
    parent_id, children = make_family(session_factory, [(0, 60), (60, 120), (120, 150)])
    parent = load(session_factory, parent_id)
    assert (parent.status, parent.step, parent.lease_expires_at) == ("running", "chunks", None)
    with session_factory() as session:  # the scheduler sees the children, never the parent
        assert set(jobs.due_pending(session)) == set(children)
    claims = [take(session_factory, c) for c in children]
    with session_factory() as session:  # progress: media seconds done over total
        jobs.heartbeat(
            session, claims[0].job_id, claims[0].fencing_token, progress=50.0, step="encoding",
            lease_seconds=60,
        )  # fmt: skip
    assert load(session_factory, parent_id).progress == pytest.approx(100 * 30 / 150)
    finish(session_factory, claims[2], {"prefix": "p2", "files": ["c"]})
    finish(session_factory, claims[0], {"prefix": "p0", "files": ["a"]})
    assert load(session_factory, parent_id).progress == pytest.approx(100 * 90 / 150)
    assert stitches(session_factory, parent_id) == []
    finish(session_factory, claims[1], {"prefix": "p1", "files": ["b"]})
    [stitch] = stitches(session_factory, parent_id)
    assert load(session_factory, parent_id).step == "stitching"
    assert [c["result"]["prefix"] for c in stitch.params["children"]] == ["p0", "p1", "p2"]
    assert stitch.params["profile"] == "default"
    # A late duplicate completion changes nothing.
    with session_factory() as session, pytest.raises(StaleAttempt):
        jobs.complete(session, claims[1].job_id, claims[1].fencing_token, {}, [])
    assert len(stitches(session_factory, parent_id)) == 1
    claim = take(session_factory, stitch.id)
    record = OutputRecord(kind="hls_master", key="videos/x/master.m3u8", size=1, sha256="0" * 64)
    with session_factory() as session:
        jobs.complete(session, claim.job_id, claim.fencing_token, {"chunks": [1, 2, 3]}, [record])
    parent = load(session_factory, parent_id)
    assert (parent.status, parent.progress, parent.result) == (
        "completed",
        100.0,
        {"chunks": [1, 2, 3]},
    )
    with session_factory() as session:
        assert [o.job_id for o in session.scalars(select(Output))] == [parent_id]
        follow = session.scalars(select(Job).where(Job.type == "transcription")).all()
        assert len(follow) == 1  # the encode's follow-up, once the encode (not a chunk) is done
        view = jobs.summary(session, parent_id)
    assert [(c["type"], c["status"]) for c in view] == [("encode_chunk", "completed")] * 3 + [
        ("stitch", "completed")
    ]


def test_a_failed_chunk_retries_alone_and_a_stale_report_is_refused(
    session_factory: Factory,
) -> None:
    parent_id, children = make_family(session_factory, [(0, 60), (60, 120)])
    first = take(session_factory, children[0])
    other = take(session_factory, children[1])
    with session_factory() as session:
        jobs.fail(
            session,
            first.job_id,
            first.fencing_token,
            StorageUnavailable("store hiccup"),
            [],
            **RETRY,
        )
    assert load(session_factory, children[0]).status == "pending"  # retried alone
    assert load(session_factory, children[1]).status == "running"
    assert load(session_factory, parent_id).status == "running"
    again = take(session_factory, children[0])
    assert again.fencing_token > first.fencing_token
    with session_factory() as session, pytest.raises(StaleAttempt):
        jobs.complete(session, first.job_id, first.fencing_token, {"prefix": "old"}, [])
    with session_factory() as session, pytest.raises(StaleAttempt):
        jobs.heartbeat(
            session, first.job_id, first.fencing_token, progress=90.0, step="x", lease_seconds=60
        )
    finish(session_factory, again, {"prefix": "new", "files": ["a"]})
    finish(session_factory, other, {"prefix": "p1", "files": ["b"]})
    [stitch] = stitches(session_factory, parent_id)
    assert stitch.params["children"][0]["result"]["prefix"] == "new"


def test_a_chunk_failing_for_good_fails_the_encode_and_stops_the_others(
    session_factory: Factory,
) -> None:
    parent_id, children = make_family(session_factory, [(0, 60), (60, 120), (120, 180)])
    bad = take(session_factory, children[0])
    running = take(session_factory, children[1])
    with session_factory() as session:
        jobs.fail(session, bad.job_id, bad.fencing_token, InvalidMedia("broken frame"), [], **RETRY)
    parent = load(session_factory, parent_id)
    assert parent.status == "failed" and "broken frame" in (parent.error or "")
    assert load(session_factory, children[2]).status == "cancelled"
    with session_factory() as session:  # the running chunk learns it at its next heartbeat
        assert not jobs.heartbeat(
            session, running.job_id, running.fencing_token, progress=10.0, step="x",
            lease_seconds=60,
        )  # fmt: skip


def test_cancelling_the_encode_cancels_its_chunks(session_factory: Factory) -> None:
    parent_id, children = make_family(session_factory, [(0, 60), (60, 120)])
    running = take(session_factory, children[0])
    with session_factory() as session:
        jobs.cancel(session, parent_id)
    assert {load(session_factory, c).status for c in children} == {JobStatus.CANCELLED.value}
    with session_factory() as session:
        assert not jobs.heartbeat(
            session, running.job_id, running.fencing_token, progress=10.0, step="x",
            lease_seconds=60,
        )  # fmt: skip
        jobs.fail(
            session,
            running.job_id,
            running.fencing_token,
            StorageUnavailable("stopped"),
            [],
            **RETRY,
        )
    assert load(session_factory, parent_id).status == "cancelled"
    assert stitches(session_factory, parent_id) == []


def test_a_chunk_held_during_the_cancel_learns_it_at_its_heartbeat(
    session_factory: Factory,
) -> None:
    """Locks go child then parent; a cancel holding the parent never waits for a child whose
    heartbeat is in flight (that was a deadlock on PostgreSQL): the child learns it later."""
    parent_id, children = make_family(session_factory, [(0, 60), (60, 120)])
    held = take(session_factory, children[0])
    with session_factory() as holder:
        if holder.get_bind().dialect.name == "postgresql":
            holder.execute(select(Job).where(Job.id == held.job_id).with_for_update())
            with session_factory() as session:
                jobs.cancel(session, parent_id)  # returns: the held chunk is skipped
            assert load(session_factory, held.job_id).status == "running"
            assert load(session_factory, children[1]).status == "cancelled"
            holder.rollback()
        else:  # SQLite locks the whole database: make the parent end behind the chunk's back
            holder.execute(update(Job).where(Job.id == parent_id).values(status="cancelled"))
            holder.commit()
    with session_factory() as session:
        assert not jobs.heartbeat(
            session, held.job_id, held.fencing_token, progress=20.0, step="x", lease_seconds=60
        )
    assert load(session_factory, held.job_id).status == "cancelled"


def test_a_job_is_split_as_it_is_written(session_factory: Factory) -> None:
    """Created or restarted with a split, a job is never pending on its own in between: a
    scheduler tick there once queued a restarted encode to run whole."""
    plan = jobs.Split(
        [
            {"start_at": 0.0, "end_at": 4.0, "weight": 4.0},
            {"start_at": 4.0, "end_at": 8.0, "weight": 4.0},
        ],
        "encode_chunk",
        "stitch",
    )
    with session_factory() as session:
        video = Video(filename="v.mp4", source_key="sources/v/v.mp4")
        session.add(video)
        session.commit()
        commits: list[int] = []
        event.listen(session, "after_commit", lambda _: commits.append(1))
        parent = jobs.create_job(
            session, job_type="encode", video_id=video.id, max_attempts=2, split=plan,
            owner_token_id=None,
        )  # fmt: skip
        assert len(commits) == 1
        assert parent.status == "running" and parent.join_type == "stitch"
        children = jobs.children_of(session, parent.id)
        assert [(c.type, c.status) for c in children] == [("encode_chunk", "pending")] * 2
        jobs.cancel(session, parent.id)
        jobs.forget_children(session, parent.id)
        commits.clear()
        again = jobs.restart(session, parent.id, split=plan)
        assert len(commits) == 1
        assert again.status == "running" and len(jobs.children_of(session, parent.id)) == 2

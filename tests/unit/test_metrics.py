"""Prometheus metrics come from SQL at scrape time: exact counts and buckets from known jobs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs, metrics
from vidfarm.config import Settings
from vidfarm.db import make_engine, make_session_factory
from vidfarm.errors import InvalidMedia, JobTimedOut, StorageUnavailable, VidfarmError
from vidfarm.models import Job, JobStatus
from vidfarm.runtime import Runtime
from vidfarm.storage import LocalStorage

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(payload: bytes) -> tuple[dict[str, str], Samples]:
    """(family name -> type, (sample name, labels) -> value)."""
    types: dict[str, str] = {}
    samples: Samples = {}
    for family in text_string_to_metric_families(payload.decode()):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return types, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


def buckets(samples: Samples, name: str, **labels: str) -> dict[str, float]:
    """le -> cumulative count for one series."""
    found: dict[str, float] = {}
    for (sample, sample_labels), count in samples.items():
        others = {k: v for k, v in sample_labels if k != "le"}
        if sample == f"{name}_bucket" and others == labels:
            found[dict(sample_labels)["le"]] = count
    return found


def expected_buckets(observed: list[float], bounds: tuple[float, ...]) -> dict[str, float]:
    result = {repr(float(b)): float(sum(v <= b for v in observed)) for b in bounds}
    result["+Inf"] = float(len(observed))
    return result


def finished(
    session: Session,
    *,
    wait: float,
    run: float,
    job_type: str = "encode",
    result: dict[str, Any] | None = None,
    error: VidfarmError | None = None,
    queued: bool = True,
) -> str:
    """A job that ran through the real lifecycle, then given known timestamps."""
    job = jobs.create_job(session, job_type=job_type, video_id=None, max_attempts=1)
    jobs.mark_queued(session, [job.id])
    claim = jobs.claim_job(session, job.id, worker_id="w1", lease_seconds=60)
    assert claim is not None
    if error is None:
        jobs.complete(session, job.id, claim.fencing_token, result or {}, [])
    else:
        jobs.fail(session, job.id, claim.fencing_token, error, [], retry_base=1, retry_max=1)
    start = T0 + timedelta(seconds=wait)
    session.execute(
        update(Job)
        .where(Job.id == job.id)
        .values(
            created_at=T0 - timedelta(seconds=30) if queued else T0,
            queued_at=T0 if queued else None,
            started_at=start,
            finished_at=start + timedelta(seconds=run),
        )
    )
    session.commit()
    return job.id


def populate(session: Session) -> None:
    def encoded(media: float, wall: float) -> dict[str, Any]:
        return {"duration": media, "encode": {"wall_seconds": wall, "cpu_seconds": 1.0}}

    finished(session, wait=3, run=20, result=encoded(60, 12))  # 5x real time
    finished(session, wait=45, run=200, result=encoded(30, 75))  # 0.4x
    finished(session, wait=0.2, run=0.7, error=InvalidMedia("not a video"))
    finished(session, wait=700, run=4000, error=JobTimedOut("too long"))
    finished(session, wait=10, run=2, result={"duration": 5.0})  # no encode timing: no speed
    # Waited from its creation: queued_at is missing, so created_at counts.
    finished(session, wait=2, run=7, job_type="transcription", queued=False)

    jobs.create_job(session, job_type="encode", video_id=None, max_attempts=3)  # pending
    queued = jobs.create_job(session, job_type="encode", video_id=None, max_attempts=3)
    jobs.mark_queued(session, [queued.id])
    running = jobs.create_job(session, job_type="encode", video_id=None, max_attempts=3)
    jobs.mark_queued(session, [running.id])
    assert jobs.claim_job(session, running.id, worker_id="w2", lease_seconds=60)
    cancelled = jobs.create_job(session, job_type="encode", video_id=None, max_attempts=3)
    jobs.mark_queued(session, [cancelled.id])
    jobs.cancel(session, cancelled.id)
    # A transient failure waiting for its retry: pending again, not a failure yet.
    retrying = jobs.create_job(session, job_type="encode", video_id=None, max_attempts=3)
    jobs.mark_queued(session, [retrying.id])
    claim = jobs.claim_job(session, retrying.id, worker_id="w3", lease_seconds=60)
    assert claim is not None
    job = jobs.fail(
        session,
        retrying.id,
        claim.fencing_token,
        StorageUnavailable("bucket down"),
        [],
        retry_base=60,
        retry_max=60,
    )
    assert job.status == JobStatus.PENDING and job.error_class == "StorageUnavailable"


def test_metrics_from_sql(session_factory: sessionmaker[Session], db_url: str) -> None:
    with session_factory() as session:
        populate(session)
    # Another engine, as another process would have: everything comes from SQL.
    other = make_engine(db_url)
    try:
        payload, content_type = metrics.render_metrics(make_session_factory(other))
    finally:
        other.dispose()
    assert content_type.startswith("text/plain; version=")
    types, samples = parse(payload)
    assert types == {
        "vidfarm_jobs": "gauge",
        "vidfarm_job_queue_wait_seconds": "histogram",
        "vidfarm_job_run_seconds": "histogram",
        "vidfarm_encode_speed_ratio": "histogram",
        "vidfarm_job_failures": "counter",
        "vidfarm_xapi_statements": "gauge",
        "vidfarm_xapi_delivery_paused": "gauge",
    }

    encode_counts = {
        "pending": 2,
        "queued": 1,
        "running": 1,
        "completed": 3,
        "failed": 1,
        "timeout": 1,
        "cancelled": 1,
    }
    for status in JobStatus:
        got = value(samples, "vidfarm_jobs", type="encode", status=status.value)
        assert got == encode_counts[status.value], status
        expected = 1 if status == JobStatus.COMPLETED else 0
        assert value(samples, "vidfarm_jobs", type="transcription", status=status.value) == expected

    waits = [3, 45, 0.2, 700, 10]
    wait = "vidfarm_job_queue_wait_seconds"
    assert buckets(samples, wait, type="encode") == expected_buckets(
        waits, metrics.QUEUE_WAIT_BUCKETS
    )
    assert buckets(samples, wait, type="encode")["1.0"] == 1
    assert buckets(samples, wait, type="encode")["60.0"] == 4
    assert value(samples, f"{wait}_count", type="encode") == 5
    assert value(samples, f"{wait}_sum", type="encode") == pytest.approx(758.2, abs=1e-3)
    assert buckets(samples, wait, type="transcription")["1.0"] == 0
    assert buckets(samples, wait, type="transcription")["5.0"] == 1
    assert value(samples, f"{wait}_sum", type="transcription") == pytest.approx(2.0, abs=1e-3)

    runs = [20, 200, 0.7, 4000, 2]
    run = "vidfarm_job_run_seconds"
    assert buckets(samples, run, type="encode") == expected_buckets(runs, metrics.RUN_BUCKETS)
    assert buckets(samples, run, type="encode")["300.0"] == 4
    assert buckets(samples, run, type="encode")["3600.0"] == 4
    assert buckets(samples, run, type="encode")["7200.0"] == 5
    assert value(samples, f"{run}_sum", type="encode") == pytest.approx(4222.7, abs=1e-3)
    assert value(samples, f"{run}_count", type="transcription") == 1

    speed = "vidfarm_encode_speed_ratio"
    assert buckets(samples, speed) == expected_buckets([5.0, 0.4], metrics.SPEED_BUCKETS)
    assert buckets(samples, speed)["0.25"] == 0 and buckets(samples, speed)["0.5"] == 1
    assert buckets(samples, speed)["4.0"] == 1 and buckets(samples, speed)["8.0"] == 2
    assert value(samples, f"{speed}_sum") == pytest.approx(5.4)

    failures = {
        dict(labels)["error_class"]: count
        for (name, labels), count in samples.items()
        if name == "vidfarm_job_failures_total"
    }
    assert failures == {"InvalidMedia": 1, "JobTimedOut": 1}
    assert value(samples, "vidfarm_job_failures_total", type="encode", error_class="InvalidMedia")


def test_empty_database_and_own_registry(
    session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    runtime = Runtime(
        settings=Settings(data_dir=tmp_path),
        engine=session_factory.kw["bind"],
        sessions=session_factory,
        storage=LocalStorage(tmp_path),
    )
    payload, _ = metrics.render_metrics(runtime)
    assert payload == metrics.render_metrics(session_factory)[0]  # twice: no name clash
    _, samples = parse(payload)
    assert {value(samples, "vidfarm_jobs", type="encode", status=s.value) for s in JobStatus} == {0}
    assert value(samples, "vidfarm_encode_speed_ratio_count") == 0
    assert not any(name.startswith("vidfarm_job_run") for name, _ in samples)
    assert not any(name.startswith("vidfarm_job_failures") for name, _ in samples)
    assert (
        REGISTRY.get_sample_value("vidfarm_jobs", {"type": "encode", "status": "pending"}) is None
    )


def test_registering_does_not_touch_the_database(tmp_path: Path) -> None:
    unreachable = create_engine(f"sqlite:///{tmp_path / 'missing' / 'dir' / 'x.db'}")
    registry = metrics.make_registry(sessionmaker(bind=unreachable))
    with pytest.raises(OperationalError):  # a scrape fails loudly instead of lying with zeros
        metrics.render_metrics(sessionmaker(bind=unreachable))
    assert registry is not REGISTRY


def test_bucket_bounds_are_inclusive(session_factory: sessionmaker[Session]) -> None:
    """A value on a bound counts in that bucket (le means <=), on both databases."""
    with session_factory() as session:
        finished(
            session, wait=60, run=300, result={"duration": 60.0, "encode": {"wall_seconds": 30.0}}
        )
    _, samples = parse(metrics.render_metrics(session_factory)[0])
    wait = buckets(samples, "vidfarm_job_queue_wait_seconds", type="encode")
    run = buckets(samples, "vidfarm_job_run_seconds", type="encode")
    speed = buckets(samples, "vidfarm_encode_speed_ratio")
    assert (wait["30.0"], wait["60.0"]) == (0, 1)
    assert (run["120.0"], run["300.0"]) == (0, 1)
    assert (speed["1.0"], speed["2.0"]) == (0, 1)


def test_xapi_outbox_is_in_the_metrics(session_factory: sessionmaker[Session]) -> None:
    from sqlalchemy import delete

    from vidfarm.models import XapiStatement

    def statement(state: str, status: int | None = None) -> XapiStatement:
        return XapiStatement(id=str(uuid.uuid4()), statement={}, state=state, last_status=status)

    with session_factory() as session:
        session.execute(delete(XapiStatement))
        session.add_all(
            [
                statement("pending"),
                statement("pending"),
                statement("delivered"),
                statement("dead", 400),
            ]
        )
        session.commit()
    _, samples = parse(metrics.render_metrics(session_factory)[0])
    for state, expected in (("pending", 2), ("delivered", 1), ("dead", 1)):
        assert value(samples, "vidfarm_xapi_statements", state=state) == expected
    assert value(samples, "vidfarm_xapi_delivery_paused") == 0
    with session_factory() as session:
        session.add(statement("pending", 401))  # the LRS refused our credentials
        session.commit()
    _, samples = parse(metrics.render_metrics(session_factory)[0])
    assert value(samples, "vidfarm_xapi_delivery_paused") == 1
    assert value(samples, "vidfarm_xapi_statements", state="pending") == 3

"""Prometheus metrics for the farm, computed from SQL at scrape time.

Why SQL at scrape time, and not in-memory observations: jobs finish in many processes (the
server's pool, `vidfarm process-tasks`, remote workers reporting through any API replica), and
a process that restarts loses what it counted. The jobs table already holds every timestamp
and error class, and it is the truth (ARCHITECTURE.md, invariant 1), so every scrape of any
replica gives the same numbers, and nothing is lost when a process dies.

Why all finished jobs, not the last 24 hours: histograms and `_total` counters must only grow.
A window shrinks as old jobs leave it, which Prometheus reads as a counter reset, and
``rate()`` / ``histogram_quantile()`` then report nonsense. Over all finished jobs the counts
only grow, exactly as if each job had been observed when it finished. Each finished job is
observed once, with the figures of its last attempt. Two operator actions lower counts: a
restart (the job leaves the finished set until it finishes again) and deleting a video (its
jobs go); Prometheus sees a reset then. Bucketing runs in SQL (one aggregate query per
metric, no rows shipped), so a scrape costs a scan of the jobs table, not memory.

Not visible here: attempts that failed and were retried (the row keeps only the last
outcome), so `vidfarm_job_failures_total` counts jobs that ended failed or timed out. Counting
every attempt needs an attempts table written by `jobs.fail`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy import ColumnElement, Float, SQLColumnExpression, case, cast, extract, func, select
from sqlalchemy.orm import Session, sessionmaker

from vidfarm.db import is_postgresql, is_sqlite
from vidfarm.models import Job, JobStatus, JobType
from vidfarm.xapi.outbox import outbox_status

if TYPE_CHECKING:
    from vidfarm.runtime import Runtime

# Seconds waiting for a worker: from instant to a day (a farm far behind).
QUEUE_WAIT_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 21600, 86400)
# Seconds of work: a thumbnail to an 8-hour recording encoded slowly.
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)
# Media seconds per wall second: below 1 an encode is slower than real time.
SPEED_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64)

# Jobs that really ran to an end; cancelled ones are left out (their times mean little).
_RAN = sorted(s.value for s in (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMEOUT))
_FAILED = sorted(s.value for s in (JobStatus.FAILED, JobStatus.TIMEOUT))
_STATUSES = [s.value for s in JobStatus]


class JobsCollector:
    """Reads the jobs table on every scrape (register it in a CollectorRegistry)."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def describe(self) -> Iterable[Metric]:
        # Names without touching the database (a registry asks when the collector is added).
        return [
            _jobs_family(),
            _queue_wait_family(),
            _run_family(),
            _speed_family(),
            _failures_family(),
            *_xapi_families(),
        ]

    def collect(self) -> Iterable[Metric]:
        with self._sessions() as session:
            return [
                _job_counts(session),
                _queue_wait(session),
                _run_time(session),
                _encode_speed(session),
                _failures(session),
                *_xapi(session),
            ]


def make_registry(sessions: sessionmaker[Session]) -> CollectorRegistry:
    """A registry of its own (not the global one): apps and tests never collide."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(JobsCollector(sessions))
    return registry


def render_metrics(source: Runtime | sessionmaker[Session]) -> tuple[bytes, str]:
    """(payload, content type) of the Prometheus text exposition, read from SQL now."""
    sessions = source if isinstance(source, sessionmaker) else source.sessions
    return generate_latest(make_registry(sessions)), CONTENT_TYPE_LATEST


# --- families -----------------------------------------------------------------------------------


def _jobs_family() -> GaugeMetricFamily:
    return GaugeMetricFamily(
        "vidfarm_jobs", "Jobs in the database by type and status.", labels=["type", "status"]
    )


def _queue_wait_family() -> HistogramMetricFamily:
    return HistogramMetricFamily(
        "vidfarm_job_queue_wait_seconds",
        "Seconds a finished job's last attempt waited for a worker (queued to started).",
        labels=["type"],
    )


def _run_family() -> HistogramMetricFamily:
    return HistogramMetricFamily(
        "vidfarm_job_run_seconds",
        "Seconds a finished job's last attempt ran (started to finished).",
        labels=["type"],
    )


def _speed_family() -> HistogramMetricFamily:
    return HistogramMetricFamily(
        "vidfarm_encode_speed_ratio",
        "Media seconds encoded per wall-clock second, per completed encode.",
    )


def _failures_family() -> CounterMetricFamily:
    return CounterMetricFamily(
        "vidfarm_job_failures",
        "Jobs that ended failed or timed out, by the class of their final error.",
        labels=["type", "error_class"],
    )


# --- queries ------------------------------------------------------------------------------------


def _job_counts(session: Session) -> GaugeMetricFamily:
    """Every status of every known type, zeros included, so series never vanish."""
    family = _jobs_family()
    counts: dict[tuple[str, str], int] = {}
    rows = session.execute(
        select(Job.type, Job.status, func.count()).group_by(Job.type, Job.status)
    )
    for job_type, status, count in rows:
        counts[(job_type, status)] = int(count)
    types = sorted({t.value for t in JobType} | {job_type for job_type, _ in counts})
    statuses = _STATUSES + sorted({s for _, s in counts} - set(_STATUSES))
    for job_type in types:
        for status in statuses:
            family.add_metric([job_type, status], counts.get((job_type, status), 0))
    return family


def _seconds_between(
    session: Session, start: SQLColumnExpression[Any], end: SQLColumnExpression[Any]
) -> ColumnElement[float]:
    if is_postgresql(session):
        return cast(extract("epoch", end - start), Float)
    if is_sqlite(session):
        # SQLite date functions count whole milliseconds; rounding drops the float noise
        # of julianday (a wait of exactly 60 s must land in the 60 s bucket).
        days = func.julianday(end) - func.julianday(start)
        return cast(func.round(days * 86400.0, 3), Float)
    raise NotImplementedError(f"no metrics for {session.get_bind().dialect.name}")


def _ran() -> list[ColumnElement[bool]]:
    return [Job.status.in_(_RAN), Job.started_at.is_not(None), Job.finished_at.is_not(None)]


def _queue_wait(session: Session) -> HistogramMetricFamily:
    waited_from = func.coalesce(Job.queued_at, Job.created_at)
    value = _seconds_between(session, waited_from, Job.started_at)
    return _histogram(session, _queue_wait_family(), value, _ran(), QUEUE_WAIT_BUCKETS, Job.type)


def _run_time(session: Session) -> HistogramMetricFamily:
    value = _seconds_between(session, Job.started_at, Job.finished_at)
    return _histogram(session, _run_family(), value, _ran(), RUN_BUCKETS, Job.type)


def _encode_speed(session: Session) -> HistogramMetricFamily:
    # The worker's result: {"duration": media seconds, "encode": {"wall_seconds": ...}, ...}
    media = Job.result["duration"].as_float()
    wall = Job.result[("encode", "wall_seconds")].as_float()
    where = [
        Job.type == JobType.ENCODE.value,
        Job.status == JobStatus.COMPLETED.value,
        Job.result.is_not(None),
        media > 0,
        wall > 0,
    ]
    value = cast(media / func.nullif(wall, 0.0), Float)
    return _histogram(session, _speed_family(), value, where, SPEED_BUCKETS, None)


def _histogram(
    session: Session,
    family: HistogramMetricFamily,
    value: ColumnElement[float],
    where: Sequence[ColumnElement[bool]],
    buckets: Sequence[float],
    label: SQLColumnExpression[str] | None,
) -> HistogramMetricFamily:
    """Cumulative bucket counts and the sum, aggregated by the database."""
    columns: list[ColumnElement[Any]] = [value.label("value")]
    if label is not None:
        columns.append(label.label("label"))
    rows = select(*columns).where(*where).subquery()
    observed = rows.c.value
    group = [rows.c.label] if label is not None else []
    stmt = (
        select(
            *group,
            func.count(observed),
            func.coalesce(func.sum(observed), 0.0),
            *(func.sum(case((observed <= bound, 1), else_=0)) for bound in buckets),
        )
        .where(observed.is_not(None))
        .group_by(*group)
    )
    for row in session.execute(stmt):
        labels = [str(row[0])] if label is not None else []
        count, total, *cumulative = row[len(labels) :]
        points = [(_le(bound), float(n or 0)) for bound, n in zip(buckets, cumulative, strict=True)]
        points.append(("+Inf", float(count)))
        family.add_metric(labels, points, float(total))
    return family


def _le(bound: float) -> str:
    """A bucket bound as the Prometheus clients write it ("0.5", "60.0")."""
    return repr(float(bound))


def _failures(session: Session) -> CounterMetricFamily:
    family = _failures_family()
    counts: dict[tuple[str, str], int] = {}
    stmt = (
        select(Job.type, Job.error_class, func.count())
        .where(Job.status.in_(_FAILED))
        .group_by(Job.type, Job.error_class)
    )
    for job_type, error_class, count in session.execute(stmt):
        key = (job_type, error_class or "unknown")
        counts[key] = counts.get(key, 0) + int(count)
    for (job_type, error_class), count in sorted(counts.items()):
        family.add_metric([job_type, error_class], count)
    return family


def _xapi_families() -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    return (
        GaugeMetricFamily(
            "vidfarm_xapi_statements",
            "xAPI statements in the outbox by state (pending, delivered, dead).",
            labels=["state"],
        ),
        GaugeMetricFamily(
            "vidfarm_xapi_delivery_paused",
            "1 while the LRS refuses vidfarm's credentials and delivery waits.",
        ),
    )


def _xapi(session: Session) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
    status = outbox_status(session)
    states, paused = _xapi_families()
    for state in ("pending", "delivered", "dead"):
        states.add_metric([state], float(getattr(status, state)))
    paused.add_metric([], 1.0 if status.paused else 0.0)
    return states, paused

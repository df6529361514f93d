"""Rules of the Celery transport that need no broker: priorities, limits, errors, settings."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from services import free_port
from vidfarm.claims import Claim
from vidfarm.config import Settings
from vidfarm.dispatch.celery import CeleryDispatcher
from vidfarm.dispatch.celery_app import broker_priority, make_celery
from vidfarm.errors import (
    ConfigError,
    ControlPlaneDown,
    InvalidParameters,
    JobCancelled,
    JobTimedOut,
    ReportedError,
    WorkerUnreachable,
    error_from_report,
)
from vidfarm.models import Video
from vidfarm.remote import ControlPlane, HttpReporter
from vidfarm.videos import job_priority
from waiting import wait_until


def test_broker_priorities_follow_each_brokers_direction() -> None:
    # Jobs: higher first. AMQP: higher first. kombu's Redis: lower first.
    assert broker_priority(7, "amqp://guest@localhost//") == 7
    assert broker_priority(7, "redis://localhost/0") == 2
    assert broker_priority(50, "redis://localhost/0") == 0  # clamped to the broker's range
    assert broker_priority(-3, "amqp://x") == 0
    high, low = broker_priority(8, "redis://x"), broker_priority(1, "redis://x")
    assert high < low


def test_celery_is_configured_for_long_video_tasks(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/0")
    conf = make_celery(settings).conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.worker_send_task_events and conf.task_send_sent_event
    assert conf.broker_transport_options["visibility_timeout"] == 43200
    assert {q.name for q in conf.task_queues} == {
        "vidfarm.encoding",
        "vidfarm.transcription",
        "vidfarm.xapi",
    }


def test_soft_time_limit_follows_the_media_duration(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        broker_url="redis://127.0.0.1:6379/0",
        time_limit_factor=20,
        time_limit_min_seconds=300,
    )
    dispatcher = CeleryDispatcher(None, settings)  # type: ignore[arg-type]
    assert dispatcher.soft_time_limit(None) == 600  # the minimum + publishing slack
    assert dispatcher.soft_time_limit(3600) == 20 * 3600 + 300
    assert settings.broker_visibility_timeout > dispatcher.soft_time_limit(600)


def test_priority_classes_and_the_short_job_lane(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    short, long = Video(duration=60.0), Video(duration=7200.0)
    student = job_priority(settings, long, affiliation="student")
    staff = job_priority(settings, long, affiliation="staff")
    assert staff > student
    assert job_priority(settings, short, affiliation="student") > student
    assert job_priority(settings, long, priority=5) == 5
    with pytest.raises(InvalidParameters, match="unknown affiliation 'alien'"):
        job_priority(settings, long, affiliation="alien")


def test_reported_errors_keep_class_and_permanence() -> None:
    transient = error_from_report("StorageUnavailable", "S3 down", permanent=False)
    assert isinstance(transient, ReportedError)
    assert transient.error_class == "StorageUnavailable" and not transient.permanent
    assert str(transient) == "S3 down"
    assert isinstance(error_from_report("JobTimedOut", "slow", permanent=True), JobTimedOut)
    assert isinstance(error_from_report("JobCancelled", "stop", permanent=True), JobCancelled)


def test_transport_choice(tmp_path: Path) -> None:
    assert Settings(data_dir=tmp_path).transport == "local"
    assert Settings(data_dir=tmp_path, broker_url="redis://x").transport == "celery"
    assert Settings(data_dir=tmp_path, dispatcher="runners").transport == "runners"
    with pytest.raises(ValueError, match="needs VIDFARM_BROKER_URL"):
        Settings(data_dir=tmp_path, dispatcher="celery")


def _claim() -> Claim:
    return Claim(
        job_id="j1",
        job_type="encode",
        video_id="v1",
        source_key="sources/v1/x.mp4",
        attempt=1,
        fencing_token=1,
    )


def test_a_worker_keeps_going_while_the_api_is_down_and_stops_after_its_patience() -> None:
    """Nobody can take the lease while the control plane is down: work on past the lease,
    up to the report patience (an hour by default; a second here)."""
    plane = ControlPlane(f"http://127.0.0.1:{free_port()}", "vf_token", timeout=1)
    plane.patience = 1.0
    reporter = HttpReporter(plane, _claim(), lease_seconds=0.2)
    started = time.monotonic()
    assert reporter.progress(10, "encoding")  # sent from a background thread
    while time.monotonic() - started < 0.6:  # three leases without an answer
        assert reporter.progress(20, "encoding"), "stopped while the API was only down"
        time.sleep(0.05)
    deadline = time.monotonic() + 5
    while reporter.progress(30, "encoding"):
        assert time.monotonic() < deadline, "never stopped after the patience ran out"
        time.sleep(0.05)
    assert reporter.interrupted and not reporter.timed_out
    assert time.monotonic() - started >= 1.0
    with pytest.raises(WorkerUnreachable, match="cannot reach the API"):
        plane.ping()


def test_a_worker_stops_at_its_time_limit() -> None:
    plane = ControlPlane(f"http://127.0.0.1:{free_port()}", "vf_token", timeout=1)
    reporter = HttpReporter(plane, _claim(), lease_seconds=60, time_limit=0.05)
    time.sleep(0.1)
    assert reporter.progress(50, "encoding") is False
    assert reporter.timed_out


def test_a_worker_without_url_or_token_is_refused_in_one_line() -> None:
    with pytest.raises(ConfigError, match="VIDFARM_API_URL"):
        ControlPlane("", "vf_token")
    with pytest.raises(ConfigError, match="VIDFARM_WORKER_TOKEN"):
        ControlPlane("http://127.0.0.1:1", "")


def test_the_scheduler_waits_a_lease_after_a_start_or_an_outage(tmp_path: Path) -> None:
    """Remote workers get one lease to reach a control plane that came back (issue 18)."""
    from vidfarm.scheduler import OutageGrace

    local = OutageGrace(Settings(data_dir=tmp_path))
    assert local.may_reclaim()  # the embedded pool's workers died with the process
    remote = OutageGrace(
        Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:1/0", lease_seconds=0.2)
    )
    assert not remote.may_reclaim()  # starting: nobody has had a chance to report yet
    remote.healthy()
    assert not remote.may_reclaim()
    wait_until(remote.may_reclaim, 5, "one lease after the first good tick")
    remote.outage()  # the database went away: the clock starts again when it is back
    assert not remote.may_reclaim()
    remote.healthy()
    assert not remote.may_reclaim()
    # Runner managers: one runner lease (three status periods), not the workers' lease.
    runners = OutageGrace(
        Settings(data_dir=tmp_path, dispatcher="runners", runners_check_after_seconds=0.1)
    )
    runners.healthy()
    assert not runners.may_reclaim()
    wait_until(runners.may_reclaim, 5, "one runner lease after the first good tick")


def test_a_worker_that_shuts_down_does_not_wait_an_outage_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The long report patience is for a running worker; a leaving one gives up sooner."""
    monkeypatch.setattr("vidfarm.remote.SHUTDOWN_PATIENCE_SECONDS", 0.3)
    plane = ControlPlane(f"http://127.0.0.1:{free_port()}", "vf_token", timeout=1)
    plane.max_delay = 0.1
    plane.stopping = lambda: True
    started = time.monotonic()
    with pytest.raises(ControlPlaneDown, match="cannot reach the API"):
        plane.release(_claim())
    assert time.monotonic() - started < 5  # not the hour a running worker would wait

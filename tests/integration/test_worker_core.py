"""The worker core through the embedded pool, on SQLite and on PostgreSQL, with real encodes."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs
from vidfarm.claims import Claim, Reporter
from vidfarm.config import Settings
from vidfarm.dispatch.local import LocalDispatcher, WorkerPool
from vidfarm.errors import InvalidParameters
from vidfarm.models import JobStatus, Output
from vidfarm.storage import LocalStorage
from vidfarm.videos import add_video, submit_encode
from vidfarm.worker import run_job

Factory = sessionmaker[Session]


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "tiny.toml").write_text(
        'preset = "ultrafast"\n[[renditions]]\nheight = 180\nmin_video_bitrate = "200k"\n'
        'video_bitrate = "300k"\nmax_video_bitrate = "400k"\naudio_bitrate = "64k"\nmp4 = true\n'
    )
    return Settings(
        data_dir=tmp_path / "data",
        database_url=db_url,
        profiles_dir=profiles,
        default_profile="tiny",
        lease_seconds=5,
        poll_seconds=0.1,
        retry_base_seconds=0.1,
        retry_max_seconds=0.2,
    )


@pytest.fixture
def storage(settings: Settings) -> LocalStorage:
    return LocalStorage(settings.media_dir)


@pytest.fixture
def farm(
    session_factory: Factory, settings: Settings, storage: LocalStorage
) -> Iterator[LocalDispatcher]:
    def run(claim: Claim, reporter: Reporter) -> None:
        run_job(claim, reporter, settings=settings, storage=storage)

    pool = WorkerPool(session_factory, settings, run, "core")
    pool.start()
    yield LocalDispatcher(session_factory, pool)
    pool.stop(graceful=True, timeout=30)


def wait_final(session_factory: Factory, job_id: str, timeout: float = 60) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with session_factory() as session:
            status = jobs.get_job(session, job_id).status
        if JobStatus(status).is_final:
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not finish")


def test_encode_job_publishes_and_records_outputs(
    session_factory: Factory,
    settings: Settings,
    storage: LocalStorage,
    farm: LocalDispatcher,
    small_clip: Path,
) -> None:
    with session_factory() as session:
        video, _ = add_video(session, storage, small_clip, filename="../../evil name.mp4")
        assert video.filename == "evil_name.mp4"
        job = submit_encode(session, settings, video)
        job_id, video_id = job.id, video.id
    farm.dispatch([job_id])
    assert wait_final(session_factory, job_id) == "completed"
    with session_factory() as session:
        job = jobs.get_job(session, job_id)
        assert job.attempts == 1 and job.progress == 100 and job.result
        assert job.result["prefix"] == f"videos/{video_id}/{job_id}/a1"
        rows = session.scalars(select(Output).where(Output.job_id == job_id)).all()
    assert {r.kind for r in rows} >= {"hls_master", "hls_variant", "mp4", "audio", "thumbnail"}
    for row in rows:
        data = (settings.media_dir / row.key).read_bytes()
        assert (row.size, row.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    variant = next(r for r in rows if r.kind == "hls_variant")
    assert (variant.width, variant.height) == (320, 180)
    assert not any((settings.data_dir / "work").iterdir())


def test_corrupt_source_fails_at_once_without_outputs(
    session_factory: Factory,
    settings: Settings,
    storage: LocalStorage,
    farm: LocalDispatcher,
    small_clip: Path,
) -> None:
    with session_factory() as session:
        video, _ = add_video(session, storage, small_clip)
        job = submit_encode(session, settings, video)
        job_id, source_key = job.id, video.source_key
    # The stored source is damaged after it was accepted (disk error, bad copy).
    (settings.media_dir / source_key).write_bytes(b"\x00garbage" * 1000)
    farm.dispatch([job_id])
    assert wait_final(session_factory, job_id) == "failed"
    with session_factory() as session:
        job = jobs.get_job(session, job_id)
        assert (job.attempts, job.error_class) == (1, "InvalidMedia")
        assert "not a media file" in (job.error or "")
        assert session.scalars(select(Output).where(Output.job_id == job_id)).all() == []
    assert not (settings.media_dir / "videos").exists()


def test_unknown_profile_is_a_permanent_failure(
    session_factory: Factory,
    settings: Settings,
    storage: LocalStorage,
    farm: LocalDispatcher,
    small_clip: Path,
) -> None:
    with session_factory() as session:
        video, _ = add_video(session, storage, small_clip)
        with pytest.raises(InvalidParameters, match="unknown profile 'gone'"):
            submit_encode(session, settings, video, params={"profile": "gone"})
        # A profile deleted after the job was queued: the worker refuses it, for good.
        job = jobs.create_job(
            session,
            job_type="encode",
            video_id=video.id,
            params={"profile": "gone"},
            max_attempts=3,
        )
        job_id = job.id
    farm.dispatch([job_id])
    assert wait_final(session_factory, job_id) == "failed"
    with session_factory() as session:
        job = jobs.get_job(session, job_id)
        assert job.attempts == 1 and "unknown profile 'gone'" in (job.error or "")

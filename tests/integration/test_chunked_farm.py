"""A chunked encode through the embedded pool (2 slots) and through Celery, end to end.

The 12 s 1080p clip with 4 s chunks on a 2 s grid: three `encode_chunk` jobs, one `stitch`,
and the encode completes with the stitched outputs as its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, select
from test_celery import CeleryFarm

from fixtures_db import fresh_postgres_database
from services import require_service
from vidfarm import jobs, videos
from vidfarm.api.views import job_view
from vidfarm.config import Settings
from vidfarm.errors import InvalidTransition
from vidfarm.models import Job, Output, Video
from vidfarm.runtime import Runtime, open_runtime
from waiting import wait_until

TINY_PROFILE = """name = "tiny"
preset = "veryfast"
keyframe_interval = 2.0
segment_duration = 2.0
[[renditions]]
height = 144
min_video_bitrate = "100k"
video_bitrate = "200k"
max_video_bitrate = "400k"
audio_bitrate = "64k"
mp4 = true
[[renditions]]
height = 240
min_video_bitrate = "200k"
video_bitrate = "400k"
max_video_bitrate = "800k"
audio_bitrate = "96k"
"""


@pytest.fixture
def farm(tmp_path: Path, db_url: str) -> Iterator[Runtime]:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "tiny.toml").write_text(TINY_PROFILE)
    settings = Settings(
        data_dir=tmp_path,
        database_url=db_url,
        dispatcher="local",
        worker_concurrency=2,
        poll_seconds=0.1,
        chunk_seconds=4.0,
        chunk_min_seconds=10.0,
    )
    runtime = open_runtime(settings)
    with runtime.sessions() as session:  # a PostgreSQL test database is shared: start clean
        for table in (Output, Job, Video):
            session.execute(delete(table))
        session.commit()
    runtime.start_farm()
    try:
        yield runtime
    finally:
        runtime.close()


def submit(runtime: Runtime, clip: Path) -> str:
    with runtime.sessions() as session:
        video, _ = videos.add_video(session, runtime.storage, clip)
        job = videos.submit_encode(session, runtime.settings, video, params={"profile": "tiny"})
        job_id = job.id
    runtime.dispatch([job_id])
    return job_id


def load(runtime: Runtime, job_id: str) -> Job:
    with runtime.sessions() as session:
        return jobs.get_job(session, job_id)


def test_a_long_encode_runs_as_chunks_and_one_stitch(farm: Runtime, hd_clip: Path) -> None:
    job_id = submit(farm, hd_clip)
    seen: set[float] = set()

    def finished() -> bool:
        job = load(farm, job_id)
        seen.add(job.progress)
        return job.status in ("completed", "failed", "cancelled")

    wait_until(finished, timeout=120, what="the chunked encode")
    job = load(farm, job_id)
    assert job.status == "completed", job.error
    assert [c["start"] for c in job.result["chunks"]] == [0, 4, 8]
    assert any(0 < p < 100 for p in seen)  # progress grew while chunks ran
    with farm.sessions() as session:
        view = job_view(session, jobs.get_job(session, job_id))
        outputs = list(session.scalars(select(Output).where(Output.video_id == job.video_id)))
    kinds = [(c["type"], c["status"], c["start"]) for c in view["chunks"]]
    assert kinds == [
        ("encode_chunk", "completed", 0),
        ("encode_chunk", "completed", 4),
        ("encode_chunk", "completed", 8),
        ("stitch", "completed", None),
    ]
    assert {o.job_id for o in outputs} == {job_id}  # the encode's, not a chunk's
    assert "master.m3u8" in {o.key.rsplit("/", 1)[-1] for o in outputs}
    master = farm.storage.local_path(f"{job.result['prefix']}/manifest.json")
    assert master is not None
    assert json.loads(master.read_text())["chunks"] == job.result["chunks"]
    with farm.sessions() as session:  # the chunks' files went once the stitch was accepted
        prefixes = [jobs.get_job(session, c["id"]).result["prefix"] for c in view["chunks"]]
    assert all(farm.storage.local_path(p) for p in prefixes)
    # The stitch's worker deletes them right after its completion was accepted.
    wait_until(
        lambda: not any(farm.storage.local_path(p).exists() for p in prefixes[:3]),
        timeout=30,
        what="the chunks' files to go",
    )
    assert farm.storage.local_path(prefixes[3]).exists()  # the stitch's: the outputs
    env = {
        **os.environ,
        "VIDFARM_DATA_DIR": str(farm.settings.data_dir),
        "VIDFARM_DATABASE_URL": farm.settings.resolved_database_url,
    }
    shown = subprocess.run(
        [sys.executable, "-m", "vidfarm", "job", job_id], env=env, capture_output=True,
        text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert shown.count("encode_chunk") == 3 and "stitch" in shown and "4-8" in shown
    listed = subprocess.run(
        [sys.executable, "-m", "vidfarm", "jobs"], env=env, capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout  # fmt: skip
    assert listed.count(job_id[:8]) >= 5  # the encode's own line and its four children's


def test_cancelling_the_encode_stops_its_chunks(farm: Runtime, hd_clip: Path) -> None:
    job_id = submit(farm, hd_clip)
    wait_until(lambda: load(farm, job_id).progress > 0, timeout=60, what="a chunk's progress")
    with farm.sessions() as session:
        jobs.cancel(session, job_id)
        children = [c["id"] for c in jobs.summary(session, job_id)]
    # A chunk whose heartbeat held its row during the cancel learns it at its next heartbeat
    # (jobs.family.cancel_children): wait for that, it is part of the contract.
    wait_until(
        lambda: all(load(farm, c).status in ("cancelled", "completed") for c in children),
        timeout=30,
        what="every chunk cancelled (or already completed)",
    )
    assert "cancelled" in {load(farm, c).status for c in children}
    wait_until(
        lambda: not any(load(farm, c).lease_owner for c in children),
        timeout=30,
        what="the running chunks to stop",
    )
    assert load(farm, job_id).status == "cancelled"
    assert all(load(farm, c).type == "encode_chunk" for c in children)  # no stitch was made


def test_a_restarted_chunked_encode_runs_in_new_chunks(farm: Runtime, hd_clip: Path) -> None:
    """Restarting a cancelled chunked encode forgets its old parts (and the files a
    completed one left) and splits it again, as at submission; a part alone is refused."""
    job_id = submit(farm, hd_clip)

    def one_part_done() -> list[Job]:
        with farm.sessions() as session:
            parts = jobs.children_of(session, job_id)
        return [c for c in parts if c.status == "completed"]

    (first, *_) = wait_until(one_part_done, timeout=120, what="a completed chunk")
    old_prefix = farm.storage.local_path(first.result["prefix"])
    assert old_prefix is not None and any(old_prefix.iterdir())
    with farm.sessions() as session:
        jobs.cancel(session, job_id)
        old = {c.id for c in jobs.children_of(session, job_id)}
    wait_until(
        lambda: (
            all(load(farm, c).status in ("cancelled", "completed") for c in old)
            and not any(load(farm, c).lease_owner for c in old)
        ),
        timeout=30,
        what="the old chunks stopped",
    )
    with farm.sessions() as session:
        with pytest.raises(InvalidTransition, match="restart that one"):
            videos.restart_job(session, farm.settings, farm.storage, first.id)
        restarted = videos.restart_job(session, farm.settings, farm.storage, job_id)
        assert restarted.status == "running" and restarted.attempts == 0
        parts = jobs.children_of(session, job_id)
    assert not old & {c.id for c in parts}
    assert [(c.type, c.params["start_at"]) for c in parts] == [
        ("encode_chunk", 0.0), ("encode_chunk", 4.0), ("encode_chunk", 8.0)
    ]  # fmt: skip
    assert not old_prefix.exists() or not any(old_prefix.iterdir())
    farm.dispatch([c.id for c in parts])
    wait_until(
        lambda: load(farm, job_id).status in ("completed", "failed"),
        timeout=180,
        what="the restarted encode",
    )
    job = load(farm, job_id)
    assert job.status == "completed", job.error
    assert [c["start"] for c in job.result["chunks"]] == [0, 4, 8]
    with farm.sessions() as session:
        assert len(jobs.children_of(session, job_id)) == 4  # three chunks and one stitch


@pytest.fixture
def celery_farm(tmp_path: Path) -> Iterator[CeleryFarm]:
    """`vidfarm serve` on PostgreSQL, Celery on Redis DB 9 (this module's), workers via HTTP."""
    require_service("Redis", "127.0.0.1", 6379)
    require_service("PostgreSQL", "127.0.0.1", 5432)
    with fresh_postgres_database("vidfarm_chunked") as url:
        farm = CeleryFarm(tmp_path / "farm", url, "redis://127.0.0.1:6379/9", "ultrafast")
        try:
            yield farm
        finally:
            farm.stop()


def test_two_celery_workers_share_the_chunks_and_none_completes_twice(
    celery_farm: CeleryFarm, hd_clip: Path
) -> None:
    farm = celery_farm
    farm.start(VIDFARM_CHUNK_SECONDS="4", VIDFARM_CHUNK_MIN_SECONDS="10")
    farm.start_worker("one")
    farm.start_worker("two")
    job_id = farm.upload(hd_clip)
    job = farm.wait_for(job_id, lambda j: j["status"] == "completed", timeout=180)
    chunks = job["chunks"]
    assert [(c["type"], c["status"]) for c in chunks] == [("encode_chunk", "completed")] * 3 + [
        ("stitch", "completed")
    ]
    assert all(farm.job(c["id"])["parent_id"] == job_id for c in chunks)
    ids = [c["id"] for c in chunks]
    assert farm.completions() == Counter({child: 1 for child in ids})  # the encode: via its stitch
    claims = [farm.log(name).count('/claim "HTTP/1.1 200') for name in ("one", "two")]
    assert sum(claims) == 4 and min(claims) >= 1, claims
    manifest = farm.data_dir / "media" / job["result"]["prefix"] / "manifest.json"
    assert [c["start"] for c in json.loads(manifest.read_text())["chunks"]] == [0, 4, 8]

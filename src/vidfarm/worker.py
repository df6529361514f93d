"""The one worker core: every transport (pool, Celery, runner) runs a job through `run_job`."""

from __future__ import annotations

import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from vidfarm.claims import Claim, OutputRecord, Reporter
from vidfarm.config import Settings
from vidfarm.errors import InvalidParameters, JobCancelled, StaleAttempt, VidfarmError
from vidfarm.media.encode import EncodeResult, encode
from vidfarm.media.profiles import profile_for_params, rendition_for
from vidfarm.media.tools import ffmpeg_executable
from vidfarm.models import JobType
from vidfarm.storage import Storage
from vidfarm.transcribe.job import run_transcription

log = logging.getLogger(__name__)


def attempt_prefix(claim: Claim) -> str:
    """Each attempt publishes under its own prefix; only the accepted one is referenced."""
    return f"videos/{claim.video_id}/{claim.job_id}/a{claim.fencing_token}"


class KeepAlive:
    """A reporter that also renews the lease between the job's own reports.

    Loading a speech model, hashing or uploading outputs can take longer than a lease; the
    lease must not expire because a step is long, only because the worker is gone. When the
    job core learns it must stop (cancelled, stale, shutting down), so does every later report.
    """

    def __init__(self, reporter: Reporter, interval: float) -> None:
        self._reporter = reporter
        self._interval = interval
        self._lock = threading.Lock()
        self._percent, self._step = 0.0, "starting"
        self._stopped = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="vidfarm-keepalive", daemon=True)

    def __enter__(self) -> KeepAlive:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def progress(self, percent: float, step: str) -> bool:
        with self._lock:
            self._percent, self._step = percent, step
            self._stopped = self._stopped or not self._reporter.progress(percent, step)
            return not self._stopped

    def complete(self, result: dict[str, Any], outputs: list[OutputRecord]) -> None:
        self._done.set()
        with self._lock:
            self._reporter.complete(result, outputs)

    def fail(self, error: VidfarmError, log_tail: list[str]) -> None:
        self._done.set()
        with self._lock:
            self._reporter.fail(error, log_tail)

    def _beat(self) -> None:
        while not self._done.wait(self._interval):
            with self._lock:
                if self._done.is_set() or self._stopped:
                    return
                self._stopped = not self._reporter.progress(self._percent, self._step)


def run_job(claim: Claim, reporter: Reporter, *, settings: Settings, storage: Storage) -> None:
    """Run one claimed job to a report: complete with outputs, or fail with a classified error."""
    with KeepAlive(reporter, settings.lease_seconds / 3) as alive:
        _run(claim, alive, settings=settings, storage=storage)


def _run(claim: Claim, reporter: Reporter, *, settings: Settings, storage: Storage) -> None:
    workdir = settings.data_dir / "work" / f"{claim.job_id}-a{claim.fencing_token}"
    try:
        if claim.job_type == JobType.TRANSCRIPTION:
            run_transcription(claim, reporter, settings, storage)
            return
        if claim.job_type != JobType.ENCODE:
            raise InvalidParameters(f"unknown job type {claim.job_type!r}")
        result = _encode(claim, reporter, settings, storage, workdir)
        _publish(claim, reporter, storage, workdir / "out", result)
    except StaleAttempt:
        log.warning(
            "job %s attempt %s lost its lease; outputs dropped", claim.job_id, claim.attempt
        )
    except JobCancelled:
        # Whoever stopped us (a cancel in SQL, or the pool shutting down) owns the job's state.
        log.info("job %s attempt %s stopped", claim.job_id, claim.attempt)
    except VidfarmError as error:
        log.info("job %s attempt %s failed: %s", claim.job_id, claim.attempt, error)
        reporter.fail(error, list(getattr(error, "log_tail", []) or []))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _encode(
    claim: Claim, reporter: Reporter, settings: Settings, storage: Storage, workdir: Path
) -> EncodeResult:
    if not claim.source_key:
        raise InvalidParameters("the job has no source file")
    params = claim.params
    profile = profile_for_params(params, settings.default_profile, settings.user_profiles_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    source = storage.local_path(claim.source_key)
    if source is None:
        source = workdir / "source"
        storage.download(claim.source_key, source)
    reporter.progress(0.0, "encoding")
    return encode(
        source,
        workdir / "out",
        profile=profile,
        ffmpeg=ffmpeg_executable(settings.ffmpeg),
        start=params.get("start"),
        end=params.get("end"),
        only=rendition_for(profile, params.get("resolution")),
        formats=params.get("formats"),
        on_progress=lambda percent: reporter.progress(percent, "encoding"),
        time_limit_factor=settings.time_limit_factor,
        time_limit_min=settings.time_limit_min_seconds,
    )


def _publish(
    claim: Claim, reporter: Reporter, storage: Storage, folder: Path, result: EncodeResult
) -> None:
    if not reporter.progress(99.9, "publishing"):
        raise JobCancelled("stopped before publishing")
    prefix = attempt_prefix(claim)
    storage.publish_dir(folder, prefix)
    outputs = [
        OutputRecord(
            kind=entry["kind"],
            key=f"{prefix}/{entry['path']}",
            size=entry["size"],
            sha256=entry["sha256"],
            width=entry.get("width"),
            height=entry.get("height"),
            bandwidth=entry.get("bandwidth"),
            codecs=entry.get("codecs"),
        )
        for entry in result.manifest["outputs"]
    ]
    manifest = {
        **result.manifest,
        "prefix": prefix,
        "encode": {"cpu_seconds": result.run.cpu_seconds, "wall_seconds": result.run.wall_seconds},
    }
    try:
        reporter.complete(manifest, outputs)
    except StaleAttempt:
        storage.delete_prefix(prefix)  # a newer attempt owns the job: drop our copy
        raise

"""The one worker core: every transport (pool, Celery, runner) runs a job through `run_job`.

It knows no job kind: it finds the claim's kind in the registry, lets it run in the attempt's
own work folder, publishes what it made under the attempt's prefix, and reports once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from vidfarm.claims import Claim, OutputRecord, Reporter, attempt_prefix
from vidfarm.config import Settings
from vidfarm.errors import JobCancelled, StaleAttempt, VidfarmError
from vidfarm.keepalive import KeepAlive
from vidfarm.kinds import Publication, Workspace, kind_for
from vidfarm.scratch import owned_folder
from vidfarm.storage import Storage

log = logging.getLogger(__name__)


def run_job(claim: Claim, reporter: Reporter, *, settings: Settings, storage: Storage) -> None:
    """Run one claimed job to a report: complete with outputs, or fail with a classified error."""
    with KeepAlive(reporter, settings.lease_seconds / 3) as alive:
        _run(claim, alive, settings=settings, storage=storage)


def _run(claim: Claim, reporter: Reporter, *, settings: Settings, storage: Storage) -> None:
    folder = settings.data_dir / "work" / f"{claim.job_id}-a{claim.fencing_token}"
    # Held while the attempt runs, removed when it ends; after a kill -9, `scratch.sweep`.
    with owned_folder(folder):
        _run_in(folder, claim, reporter, settings=settings, storage=storage)


def _run_in(
    folder: Path, claim: Claim, reporter: Reporter, *, settings: Settings, storage: Storage
) -> None:
    try:
        kind = kind_for(claim.job_type)
        work = Workspace(settings=settings, storage=storage, folder=folder)
        publication = kind.run(claim, reporter, work)
        _publish(claim, reporter, storage, publication, kind.consumed(claim.params))
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


def _publish(
    claim: Claim,
    reporter: Reporter,
    storage: Storage,
    publication: Publication,
    consumed: tuple[str, ...],
) -> None:
    """Publish under the attempt's own prefix, then report; a refused report unpublishes.
    Once the completion is accepted (never before: a stale attempt must not take them from a
    newer one), what the job consumed is deleted."""
    if not reporter.progress(99.9, "publishing"):
        raise JobCancelled("stopped before publishing")
    prefix = attempt_prefix(claim)
    entries: list[dict[str, Any]] = publication.manifest["outputs"]
    outputs = [_record(prefix, entry) for entry in entries]  # before: publishing moves files
    storage.publish_dir(publication.folder, prefix)
    try:
        reporter.complete({**publication.manifest, "prefix": prefix}, outputs)
    except StaleAttempt:
        storage.delete_prefix(prefix)  # a newer attempt owns the job: drop our copy
        raise
    for gone in consumed:
        try:
            storage.delete_prefix(gone)
        except VidfarmError as error:  # the job is done; a leftover is only space
            log.warning("job %s: could not delete %s: %s", claim.job_id, gone, error)


def _record(prefix: str, entry: dict[str, Any]) -> OutputRecord:
    return OutputRecord(
        kind=entry["kind"],
        key=f"{prefix}/{entry['path']}",
        size=entry["size"],
        sha256=entry["sha256"],
        width=entry.get("width"),
        height=entry.get("height"),
        bandwidth=entry.get("bandwidth"),
        codecs=entry.get("codecs"),
    )

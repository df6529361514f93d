"""What a worker holds while it runs a job, and how it reports back.

Every transport (embedded pool, Celery, runner manager) hands the worker core a `Claim` and a
`Reporter`; the reporter is direct SQL in-process, or HTTP for remote workers. Every report
carries the claim's fencing token so a stale attempt cannot overwrite a newer one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from vidfarm.errors import VidfarmError


@dataclass(frozen=True, kw_only=True)
class Claim:
    job_id: str
    job_type: str
    video_id: str | None
    source_key: str | None  # storage key of the video's source file
    params: dict[str, Any] = field(default_factory=dict)
    attempt: int
    fencing_token: int


@dataclass(frozen=True, kw_only=True)
class OutputRecord:
    """One published file, as stored in the outputs table and in manifest.json."""

    kind: str
    key: str
    size: int
    sha256: str
    width: int | None = None
    height: int | None = None
    bandwidth: int | None = None
    codecs: str | None = None


def attempt_prefix(claim: Claim) -> str:
    """Each attempt publishes under its own prefix; only the accepted one is referenced."""
    return f"videos/{claim.video_id}/{claim.job_id}/a{claim.fencing_token}"


class Reporter(Protocol):
    def progress(self, percent: float, step: str) -> bool:
        """Record progress and renew the lease; False means stop now (cancelled or stale)."""
        ...

    def complete(self, result: dict[str, Any], outputs: list[OutputRecord]) -> None:
        """Accept the attempt's outputs once; raises StaleAttempt if this attempt lost."""
        ...

    def fail(self, error: VidfarmError, log_tail: list[str]) -> None:
        """Record the failure; the job core decides between retry and a final state."""
        ...

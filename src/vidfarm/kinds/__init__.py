"""Job kinds, registered in one place: the worker core, transports and scheduler name none.

To add a kind: write a class with `name`, `queue`, `runner_task` and `run` (see
`base.JobKind`) in its own module here, add an instance to `KINDS`, and give its `name` to
`jobs.create_job`. docs/architecture.md walks through it.
"""

from __future__ import annotations

from vidfarm.errors import InvalidParameters
from vidfarm.kinds.base import JobKind, Publication, Workspace
from vidfarm.kinds.chunk import EncodeChunkKind
from vidfarm.kinds.encode import EncodeKind
from vidfarm.kinds.stitch import StitchKind
from vidfarm.kinds.transcription import TranscriptionKind

__all__ = ["KINDS", "JobKind", "Publication", "Workspace", "kind_for"]

KINDS: dict[str, JobKind] = {
    kind.name: kind for kind in (EncodeKind(), TranscriptionKind(), EncodeChunkKind(), StitchKind())
}


def kind_for(job_type: str) -> JobKind:
    """The kind that runs `job_type`; an unknown type is a permanent error, never retried."""
    kind = KINDS.get(job_type)
    if kind is None:
        raise InvalidParameters(f"unknown job type {job_type!r}")
    return kind

"""What a job kind is: one small object that runs a claim and says what it publishes.

The worker core knows only this interface. A kind runs its media work in the attempt's own
work folder, reporting progress through the reporter, and hands back a `Publication`: the
folder of finished files and the manifest that describes them. The core then publishes the
folder under the attempt's prefix and reports the completion, the same way for every kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from vidfarm.claims import Claim, Reporter
from vidfarm.config import Settings
from vidfarm.errors import InvalidParameters
from vidfarm.storage import Storage


@dataclass(frozen=True, kw_only=True)
class Workspace:
    """What a kind may use while it runs: settings, storage and a private work folder."""

    settings: Settings
    storage: Storage
    folder: Path  # removed by the worker core when the attempt ends, whatever happened

    def source(self, claim: Claim) -> Path:
        """The claim's source file: in place on local storage, else downloaded (streamed)."""
        if not claim.source_key:
            raise InvalidParameters("the job has no source file")
        self.folder.mkdir(parents=True, exist_ok=True)
        local = self.storage.local_path(claim.source_key)
        if local is not None:
            return local
        target = self.folder / "source"
        self.storage.download(claim.source_key, target)
        return target

    def asset(self, claim: Claim, key: str) -> Path:
        """An extra input of the claim's video (Pod's watermark, credits, studio tracks): a
        stored file under `sources/<video>/assets/`, in place or downloaded (streamed)."""
        prefix = f"sources/{claim.video_id}/assets/"
        if not claim.video_id or not key.startswith(prefix) or ".." in key.split("/"):
            raise InvalidParameters(f"asset {key[:100]!r} is not one of this video's files")
        local = self.storage.local_path(key)
        if local is not None:
            return local
        target = self.folder / "assets" / key.removeprefix(prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.storage.download(key, target)
        return target


@dataclass(frozen=True, kw_only=True)
class Publication:
    """A finished attempt: `folder` holds the files; `manifest["outputs"]` describes each one
    (kind, path relative to the folder, size, sha256, and optionally width, height, bandwidth,
    codecs). The manifest becomes the job's result."""

    folder: Path
    manifest: dict[str, Any]


class JobKind(Protocol):
    #: The job type stored in SQL.
    name: str
    #: The queue family transports route it to: "encoding" or "transcription".
    queue: str
    #: The Esup-Runner task type that carries it to a runner manager; None: runners can't.
    #: A `vidfarm_` type goes only to managers announcing it (`vidfarm runner`).
    runner_task: str | None

    def run(self, claim: Claim, reporter: Reporter, work: Workspace) -> Publication:
        """Do the work; raise a classified VidfarmError (or JobCancelled) to stop."""
        ...

    def consumed(self, params: dict[str, Any]) -> tuple[str, ...]:
        """Storage prefixes a job with these params used up: nobody needs them once its
        completion is accepted (a stitch's chunks). Whoever records that completion (the
        worker core, the runner importer) deletes them then, never before."""
        ...

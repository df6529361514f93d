"""The `transcription` kind: a video's speech as WebVTT, SRT, words and an HLS subtitle playlist."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from vidfarm.claims import Claim, Reporter
from vidfarm.errors import InvalidParameters, JobCancelled
from vidfarm.kinds.base import Publication, Workspace
from vidfarm.models import JobType
from vidfarm.transcribe.engines import resolve
from vidfarm.transcribe.job import Transcript, transcribe_file, write_outputs


class TranscriptionKind:
    name = JobType.TRANSCRIPTION.value
    queue = "transcription"
    runner_task: str | None = "transcription"

    def run(self, claim: Claim, reporter: Reporter, work: Workspace) -> Publication:
        settings = work.settings
        if not claim.source_key:
            raise InvalidParameters("the job has no source file")
        language = str(claim.params.get("language") or "").strip()
        if not language:
            raise InvalidParameters("a transcription job needs a language")
        resolve(language, settings)  # an unconfigured language fails before any download
        source = work.source(claim)
        if not reporter.progress(0.0, "transcribing"):
            raise JobCancelled("stopped before transcribing")
        transcript = transcribe_file(
            source,
            language=language,
            settings=settings,
            on_progress=lambda percent: reporter.progress(percent, "transcribing"),
            name=Path(claim.source_key).name,
        )
        out = work.folder / "out"
        write_outputs(transcript, out)
        return Publication(folder=out, manifest=_manifest(transcript, out))

    def consumed(self, params: dict[str, Any]) -> tuple[str, ...]:
        return ()


def _manifest(transcript: Transcript, folder: Path) -> dict[str, Any]:
    return {
        "language": transcript.language,
        "engine": transcript.engine,
        "duration": round(transcript.duration, 3),
        "words": len(transcript.words),
        "cues": len(transcript.cues),
        "outputs": [_entry(kind, folder / name) for kind, name in transcript.files.items()],
        "transcribe": {
            "wall_seconds": round(transcript.wall_seconds, 3),
            "real_time_factor": round(transcript.real_time_factor, 4),
        },
    }


def _entry(kind: str, path: Path) -> dict[str, Any]:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()  # a few kB of text
    return {"kind": kind, "path": path.name, "size": path.stat().st_size, "sha256": digest}

"""The `encode_chunk` kind: one range of a chunked encode, every rendition's video at once.

It publishes the chunk's files (video per rendition, its thumbnails and overview strip) under
its attempt's prefix but records no outputs: they are material for the `stitch`, which finds
them through this job's result (`prefix`, `files`). Its preview segments (media/preview.py,
listed in the result's `preview`) let the video play before the stitch.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from vidfarm.claims import Claim, Reporter
from vidfarm.kinds.base import Publication, Workspace
from vidfarm.media.chunks import ChunkRange, encode_chunk
from vidfarm.media.plan import EncodePlan, plan_encode
from vidfarm.media.preview import write_preview
from vidfarm.media.probe import probe
from vidfarm.media.profiles import profile_for_params
from vidfarm.media.tools import ffmpeg_executable
from vidfarm.models import JobType, vidfarm_task


def file_sums(folder: Path) -> dict[str, dict[str, object]]:
    """Each file's size and SHA-256."""
    sums: dict[str, dict[str, object]] = {}
    for path in sorted(folder.iterdir()):
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
        sums[path.name] = {"size": path.stat().st_size, "sha256": digest.hexdigest()}
    return sums


def chunk_of(params: dict[str, object]) -> ChunkRange:
    return ChunkRange(
        index=int(str(params["index"])),
        start=float(str(params["start_at"])),
        end=float(str(params["end_at"])),
    )


def plan_for(claim: Claim, work: Workspace) -> tuple[Path, EncodePlan]:
    """The source, streamed in, and the plan every part of a chunked encode shares: the same
    profile, cut and formats give the same ladder and grid in each chunk and in the stitch."""
    settings, params = work.settings, claim.params
    profile = profile_for_params(params, settings.default_profile, settings.user_profiles_dir)
    source = work.source(claim)
    plan = plan_encode(
        probe(source), profile, start=params.get("start"), end=params.get("end"),
        formats=params.get("formats"),
    )  # fmt: skip
    return source, plan


class EncodeChunkKind:
    name = JobType.ENCODE_CHUNK.value
    queue = "encoding"
    runner_task: str | None = vidfarm_task(JobType.ENCODE_CHUNK)  # foreign runners: no

    def run(self, claim: Claim, reporter: Reporter, work: Workspace) -> Publication:
        settings, params = work.settings, claim.params
        source, plan = plan_for(claim, work)
        chunk = chunk_of(params)
        reporter.progress(0.0, "encoding")
        out = work.folder / "out"
        run = encode_chunk(
            source, plan, chunk, out, ffmpeg=ffmpeg_executable(settings.ffmpeg),
            on_progress=lambda percent: reporter.progress(percent, "encoding"),
            time_limit_factor=settings.time_limit_factor,
            time_limit_min=settings.time_limit_min_seconds,
        )  # fmt: skip
        reporter.progress(100.0, "preview")
        ffmpeg = ffmpeg_executable(settings.ffmpeg)
        preview = write_preview(source, plan, chunk, out, ffmpeg=ffmpeg)
        manifest = {
            "outputs": [],
            "chunk": chunk.to_dict(),
            "files": sorted(p.name for p in out.iterdir()),
            # What a runner manager lists (and its control plane checks) when it hands the
            # chunk back: read once here, not at every request.
            "sums": file_sums(out),
            "encode": {"cpu_seconds": run.cpu_seconds, "wall_seconds": run.wall_seconds},
            "preview": {**preview.info, "cpu_seconds": preview.run.cpu_seconds},
        }
        return Publication(folder=out, manifest=manifest)

    def consumed(self, params: dict[str, Any]) -> tuple[str, ...]:
        return ()

"""The `stitch` kind: the chunks of an encode joined into the encode's outputs.

Created once by the job core when the last chunk completed (jobs/family.py); its params hold
each chunk's range and where its files were published. Its outputs become the encode's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vidfarm.claims import Claim, Reporter
from vidfarm.errors import InvalidParameters
from vidfarm.kinds.base import Publication, Workspace
from vidfarm.kinds.chunk import chunk_of, plan_for
from vidfarm.media.chunks import ChunkRange
from vidfarm.media.preview import PREFIX as PREVIEW_PREFIX
from vidfarm.media.stitch import stitch
from vidfarm.media.tools import ffmpeg_executable
from vidfarm.models import JobType, vidfarm_task


class StitchKind:
    name = JobType.STITCH.value
    queue = "encoding"
    runner_task: str | None = vidfarm_task(JobType.STITCH)

    def run(self, claim: Claim, reporter: Reporter, work: Workspace) -> Publication:
        settings, params = work.settings, claim.params
        source, plan = plan_for(claim, work)
        reporter.progress(0.0, "fetching chunks")
        chunks = [self._fetch(work, child) for child in params.get("children") or []]
        reporter.progress(0.0, "stitching")
        result = stitch(
            source, plan, chunks, work.folder / "out", ffmpeg=ffmpeg_executable(settings.ffmpeg),
            on_progress=lambda percent: reporter.progress(percent, "stitching"),
            time_limit_factor=settings.time_limit_factor,
            time_limit_min=settings.time_limit_min_seconds,
        )  # fmt: skip
        chunk_cpu = sum(
            float(child["result"].get("encode", {}).get("cpu_seconds", 0.0))
            for child in params["children"]
        )
        manifest = {
            **result.manifest,
            "encode": {
                "cpu_seconds": chunk_cpu + result.cpu_seconds,
                "stitch_cpu_seconds": result.cpu_seconds,
                "stitch_wall_seconds": result.wall_seconds,
            },
        }
        return Publication(folder=work.folder / "out", manifest=manifest)

    def consumed(self, params: dict[str, Any]) -> tuple[str, ...]:
        """Where its chunks were published: once the stitch completed, nobody needs them."""
        return tuple(
            str(child["result"]["prefix"])
            for child in params.get("children") or []
            if (child.get("result") or {}).get("prefix")
        )

    @staticmethod
    def _fetch(work: Workspace, child: dict[str, Any]) -> tuple[ChunkRange, Path]:
        """The chunk's folder: in place on local storage, else downloaded (streamed)."""
        chunk = chunk_of(child)
        result = child.get("result") or {}
        prefix, files = result.get("prefix"), result.get("files") or []
        if not prefix or not files:
            raise InvalidParameters(f"chunk {chunk.index} published nothing to stitch")
        local = work.storage.local_path(f"{prefix}/{files[0]}")
        if local is not None:
            return chunk, local.parent
        folder = work.folder / "chunks" / f"{chunk.index:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for name in files:
            if name.startswith(PREVIEW_PREFIX):
                continue  # for viewers only, not the stitch
            work.storage.download(f"{prefix}/{name}", folder / name)
        return chunk, folder

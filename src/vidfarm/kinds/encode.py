"""The `encode` kind: the whole delivery set of one source in a single planned ffmpeg pass."""

from __future__ import annotations

from typing import Any

from vidfarm.claims import Claim, Reporter
from vidfarm.kinds.base import Publication, Workspace
from vidfarm.media.composition_params import SOURCE, composition_from_params
from vidfarm.media.encode import encode
from vidfarm.media.profiles import profile_for_params, rendition_for
from vidfarm.media.tools import ffmpeg_executable
from vidfarm.models import JobType


class EncodeKind:
    name = JobType.ENCODE.value
    queue = "encoding"
    runner_task: str | None = "encoding"

    def run(self, claim: Claim, reporter: Reporter, work: Workspace) -> Publication:
        settings, params = work.settings, claim.params
        profile = profile_for_params(params, settings.default_profile, settings.user_profiles_dir)
        source = work.source(claim)
        start, end = params.get("start"), params.get("end")
        composition = None
        if params.get("composition"):  # Pod's dressing or studio, its files in storage
            composition = composition_from_params(
                params["composition"],
                lambda ref: source if ref == SOURCE else work.asset(claim, ref),
                start=start,
                end=end,
            )
            start = end = None  # the cut belongs to the composition
        reporter.progress(0.0, "encoding")
        result = encode(
            source,
            work.folder / "out",
            profile=profile,
            ffmpeg=ffmpeg_executable(settings.ffmpeg),
            start=start,
            end=end,
            composition=composition,
            only=rendition_for(profile, params.get("resolution")),
            formats=params.get("formats"),
            on_progress=lambda percent: reporter.progress(percent, "encoding"),
            time_limit_factor=settings.time_limit_factor,
            time_limit_min=settings.time_limit_min_seconds,
        )
        manifest = {
            **result.manifest,
            "encode": {
                "cpu_seconds": result.run.cpu_seconds,
                "wall_seconds": result.run.wall_seconds,
            },
        }
        return Publication(folder=work.folder / "out", manifest=manifest)

    def consumed(self, params: dict[str, Any]) -> tuple[str, ...]:
        return ()

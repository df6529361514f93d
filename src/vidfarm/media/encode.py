"""Encode one source into the whole delivery set in a single ffmpeg pass.

The source is decoded once; each rendition is encoded once and muxed to HLS and, when the
profile asks, to a fast-start MP4 through ffmpeg's tee muxer. Thumbnails, the overview sprite,
MP3 and subtitles come out of the same pass. (Pod decodes twice and encodes MP4 renditions
twice; see shared/reference/pod-encoding.md.) Planning lives in `plan`, the argument list in
`arguments`, the description of the outputs in `outputs`; this module runs them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidfarm.errors import InvalidParameters
from vidfarm.media.arguments import build_ffmpeg_args, build_subtitle_args
from vidfarm.media.compose import Composition, compose
from vidfarm.media.ffmpeg import FFmpegRun, run_ffmpeg
from vidfarm.media.hls import merge_short_tail
from vidfarm.media.outputs import MANIFEST_NAME, describe_outputs
from vidfarm.media.plan import plan_encode
from vidfarm.media.probe import MediaInfo, probe
from vidfarm.media.profiles import Profile, RenditionSpec
from vidfarm.media.staging import staged

#: A last HLS segment shorter than this fraction of the segment length joins the one before.
TAIL_FRACTION = 0.5


@dataclass(frozen=True, kw_only=True)
class EncodeResult:
    manifest: dict[str, Any]
    run: FFmpegRun


ProgressCallback = Callable[[float], bool]


def encode(
    source: Path,
    out_dir: Path,
    *,
    profile: Profile,
    ffmpeg: str,
    start: float | None = None,
    end: float | None = None,
    only: RenditionSpec | None = None,
    formats: Collection[str] | None = None,
    on_progress: ProgressCallback | None = None,
    time_limit_factor: float = 20.0,
    time_limit_min: float = 300.0,
    info: MediaInfo | None = None,
    composition: Composition | None = None,
) -> EncodeResult:
    """Encode `source` into `out_dir`, which appears complete or not at all.

    Work happens in a hidden sibling folder renamed into place at the end; any failure,
    cancellation or time-out removes it, so no half-written output is ever left behind.
    """
    composed = None
    if composition is not None:  # Pod's dressing or studio: the cut is the composition's
        if start is not None or end is not None:
            raise InvalidParameters("with a composition, the cut belongs to the composition")
        composed = compose(composition)
        info = composed.info
    info = info or probe(source)
    plan = plan_encode(info, profile, start=start, end=end, only=only, formats=formats)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InvalidParameters(f"output folder {out_dir} is not empty")
    with staged(out_dir) as staging:
        run = run_ffmpeg(
            ffmpeg,
            build_ffmpeg_args(plan, source, composed),
            duration=plan.duration,
            cwd=staging,
            on_progress=on_progress,
            time_limit=max(time_limit_min, time_limit_factor * plan.duration),
        )
        if plan.subtitles:
            run_ffmpeg(
                ffmpeg,
                build_subtitle_args(plan, source),
                duration=plan.duration,
                cwd=staging,
                time_limit=max(time_limit_min, plan.duration),
            )
        for playlist in plan.hls_playlists:
            merge_short_tail(staging / playlist, plan.profile.segment_duration * TAIL_FRACTION)
        manifest = describe_outputs(plan, staging)
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return EncodeResult(manifest=manifest, run=run)

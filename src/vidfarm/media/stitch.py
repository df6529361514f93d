"""Stitch encoded chunks into outputs laid out exactly like a single pass.

Nothing is encoded twice and no video is encoded here: per rendition, ffmpeg's concat demuxer
joins the chunks' video (stream copy; each chunk starts on a keyframe, so the joined stream is
one continuous GOP sequence) and muxes it with audio encoded once for the whole media (no AAC
priming gap at chunk boundaries) into the HLS muxer and, when the rendition has one, a
fast-start MP4 through the tee muxer, as the single pass does. Segment numbers and timestamps
are therefore continuous by construction. Thumbnails are the chunks' own; the overview sprite
is their strips side by side; the master playlist and manifest come from `describe_outputs`,
plus `"chunks"` so a reader can tell a chunked encode from a single pass.
"""

from __future__ import annotations

import json
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidfarm.errors import InvalidMedia
from vidfarm.media.arguments import aac_args, as_flags, build_subtitle_args, hls_options
from vidfarm.media.chunks import (
    ChunkRange,
    chunk_file,
    first_frame_at,
    sprite_strip,
    thumbnails_in,
)
from vidfarm.media.encode import TAIL_FRACTION
from vidfarm.media.ffmpeg import ProgressCallback, run_ffmpeg
from vidfarm.media.hls import merge_short_tail
from vidfarm.media.outputs import MANIFEST_NAME, describe_outputs
from vidfarm.media.plan import EncodePlan
from vidfarm.media.staging import staged


@dataclass(frozen=True, kw_only=True)
class StitchResult:
    manifest: dict[str, Any]
    cpu_seconds: float
    wall_seconds: float


def stitch(
    source: Path,
    plan: EncodePlan,
    chunks: Sequence[tuple[ChunkRange, Path]],
    out_dir: Path,
    *,
    ffmpeg: str,
    on_progress: ProgressCallback | None = None,
    time_limit_factor: float = 20.0,
    time_limit_min: float = 300.0,
) -> StitchResult:
    """Join `chunks` (each range with the folder `encode_chunk` wrote) into `out_dir`, which
    appears complete or not at all."""
    ladder = plan.ladder
    assert ladder is not None
    _check_chunks(plan, chunks)
    out_dir = out_dir.resolve()
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InvalidMedia(f"output folder {out_dir} is not empty")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = out_dir.parent / f".{out_dir.name}.stitch-{uuid.uuid4().hex[:8]}"
    work.mkdir()
    limit = max(time_limit_min, time_limit_factor * plan.duration)
    steps = 1 + len(ladder.renditions)
    cpu = wall = 0.0

    def step_progress(done: int) -> ProgressCallback | None:
        if on_progress is None:
            return None
        report = on_progress
        return lambda percent: report((done * 100 + percent) / steps)

    try:
        with staged(out_dir) as staging:
            audio: dict[int, Path] = {}
            if plan.has_audio:
                audio = {
                    r.audio_bitrate: work / f"audio_{r.audio_bitrate}.m4a"
                    for r in ladder.renditions
                }
                run = run_ffmpeg(
                    ffmpeg,
                    _audio_args(plan, source, audio, staging / "audio.mp3"),
                    duration=plan.duration,
                    cwd=work,
                    on_progress=step_progress(0),
                    time_limit=limit,
                )
                cpu, wall = cpu + run.cpu_seconds, wall + run.wall_seconds
            for n, rendition in enumerate(ladder.renditions, 1):
                listing = work / f"{rendition.name}.txt"
                listing.write_text(
                    concat_list(plan, [(c, f / chunk_file(c, rendition.name)) for c, f in chunks]),
                    encoding="utf-8",
                )
                args = ["-f", "concat", "-safe", "0", "-i", str(listing)]
                if plan.has_audio:
                    args += ["-i", f"file:{audio[rendition.audio_bitrate]}", "-map", "0:v:0"]
                    args += ["-map", "1:a:0"]
                else:
                    args += ["-map", "0:v:0"]
                args += ["-c", "copy", *_muxers(plan, rendition.name, rendition.mp4)]
                run = run_ffmpeg(
                    ffmpeg,
                    args,
                    duration=plan.duration,
                    cwd=staging,
                    on_progress=step_progress(n),
                    time_limit=limit,
                )
                cpu, wall = cpu + run.cpu_seconds, wall + run.wall_seconds
            for chunk, folder in chunks:
                for number, _ in thumbnails_in(plan, chunk):
                    shutil.copyfile(
                        folder / f"thumbnail_{number}.jpg", staging / f"thumbnail_{number}.jpg"
                    )
            strips = [
                folder / sprite_strip(c)
                for c, folder in chunks
                if (folder / sprite_strip(c)).exists()
            ]
            if len(strips) == 1:
                shutil.copyfile(strips[0], staging / "overview.png")
            elif strips:
                inputs = [part for strip in strips for part in ("-i", f"file:{strip.resolve()}")]
                filters = ["-filter_complex", f"hstack=inputs={len(strips)}", "-frames:v", "1"]
                run = run_ffmpeg(
                    ffmpeg,
                    [*inputs, *filters, "overview.png"],
                    duration=0,
                    cwd=staging,
                    time_limit=limit,
                )
                cpu, wall = cpu + run.cpu_seconds, wall + run.wall_seconds
            if plan.subtitles:
                run_ffmpeg(
                    ffmpeg, build_subtitle_args(plan, source), duration=plan.duration, cwd=staging,
                    time_limit=limit,
                )  # fmt: skip
            for playlist in plan.hls_playlists:
                merge_short_tail(staging / playlist, plan.profile.segment_duration * TAIL_FRACTION)
            manifest = describe_outputs(plan, staging)
            manifest["chunks"] = [chunk.to_dict() for chunk, _ in chunks]
            (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return StitchResult(manifest=manifest, cpu_seconds=cpu, wall_seconds=wall)


def concat_list(plan: EncodePlan, files: Sequence[tuple[ChunkRange, Path]]) -> str:
    """The concat demuxer's list, each file's `duration` chosen so every frame keeps its time.

    The demuxer puts a file's first frame at the sum of the durations before it; a chunk's
    first frame lies a little after the chunk's start when frames are off the chunk grid
    (29.97 fps: 4.004 s for a chunk starting at 4 s), so the durations carry that offset."""
    offsets = [first_frame_at(plan, chunk.start) - chunk.start for chunk, _ in files]
    lines = []
    for n, (chunk, path) in enumerate(files):
        following = offsets[n + 1] if n + 1 < len(files) else offsets[n]
        lines.append(f"file '{_quoted(path)}'\n")
        lines.append(f"duration {chunk.duration + following - offsets[n]:.6f}\n")
    return "".join(lines)


def _check_chunks(plan: EncodePlan, chunks: Sequence[tuple[ChunkRange, Path]]) -> None:
    """The ranges must tile the whole output, in order, with nothing missing."""
    at = 0.0
    for chunk, folder in chunks:
        if abs(chunk.start - at) > 1e-6:
            raise InvalidMedia(f"chunk {chunk.index} starts at {chunk.start}, expected {at}")
        if not folder.is_dir():
            raise InvalidMedia(f"chunk {chunk.index} has no outputs ({folder})")
        at = chunk.end
    if abs(at - plan.duration) > 1e-3:
        raise InvalidMedia(f"the chunks end at {at}, the media at {plan.duration:.3f}")


def _audio_args(plan: EncodePlan, source: Path, outputs: dict[int, Path], mp3: Path) -> list[str]:
    """Decode the audio once; one AAC per bit rate the ladder uses, and the MP3."""
    args: list[str] = []
    if plan.start > 0:
        args += ["-ss", f"{plan.start:.6f}"]
    if plan.start > 0 or plan.duration < plan.info.duration - 0.001:
        args += ["-t", f"{plan.duration:.6f}"]
    args += ["-i", f"file:{source.resolve()}"]
    for bitrate, path in outputs.items():
        args += ["-map", "0:a:0", "-vn", *aac_args(plan.profile, bitrate), str(path)]
    quality = str(plan.profile.mp3_quality)
    return [*args, "-map", "0:a:0", "-vn", "-c:a", "libmp3lame", "-q:a", quality, str(mp3)]


def _muxers(plan: EncodePlan, name: str, mp4: bool) -> list[str]:
    hls = hls_options(plan.profile, name)
    if not mp4:
        return [*as_flags(hls), f"{name}.m3u8"]
    return ["-f", "tee", f"[{hls}]{name}.m3u8|[f=mp4:movflags=+faststart]{name}.mp4"]


def _quoted(path: Path) -> str:
    """A path inside single quotes of a concat list ('\\'' closes, escapes, reopens)."""
    return str(path.resolve()).replace("'", "'\\''")

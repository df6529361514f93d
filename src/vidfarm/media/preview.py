"""A chunk's preview: its range as HLS segments with audio, so viewers can watch early.

A chunk's own files are video only (the stitch encodes audio once for the whole media). For the
growing EVENT playlist (docs/chunked.md, "Playable early") each finished chunk also leaves, per
rendition, HLS segments of its range: its video stream-copied, the source's audio for the range
encoded to AAC (temporary: the final VOD keeps its audio encoded once). Timestamps are shifted to
the chunk's start (`-output_ts_offset`) and segment numbers continue the global grid
(start / segment duration), so segment n of a preview covers the times of the final segment n.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from vidfarm.media.arguments import aac_args
from vidfarm.media.chunks import ChunkRange, chunk_file
from vidfarm.media.ffmpeg import FFmpegRun, run_ffmpeg
from vidfarm.media.plan import EncodePlan

PREFIX = "preview_"


def preview_playlist(rendition: str) -> str:
    return f"{PREFIX}{rendition}.m3u8"


def preview_segment(rendition: str, number: int) -> str:
    """Named like the final segment of the same number, with the preview prefix."""
    return f"{PREFIX}{rendition}_{number:05d}.ts"


def first_number(plan: EncodePlan, chunk: ChunkRange) -> int:
    return round(chunk.start / plan.profile.segment_duration)


def decode_delay(path: Path) -> float:
    """Seconds the first packet is decoded before it is shown (B-frames: its dts < 0).

    The MPEG-TS muxer shifts a stream with negative dts by that much, so the first chunk would
    start later than the grid says and the others would not: every chunk is shifted by it
    instead (as the single pass's stream is, once, at its start)."""
    with av.open(str(path)) as media:
        stream = media.streams.video[0]
        for packet in media.demux(stream):
            if packet.dts is None or stream.time_base is None:
                continue
            return max(0.0, -float(packet.dts * stream.time_base))
    return 0.0


def build_preview_args(
    plan: EncodePlan, source: Path, chunk: ChunkRange, folder: Path
) -> list[str]:
    """One ffmpeg for every rendition, run in the chunk's folder (after `encode_chunk`)."""
    ladder = plan.ladder
    assert ladder is not None
    args: list[str] = []
    for rendition in ladder.renditions:
        args += ["-i", chunk_file(chunk, rendition.name)]
    audio = len(ladder.renditions)
    if plan.has_audio:
        args += ["-ss", f"{plan.start + chunk.start:.6f}", "-t", f"{chunk.duration:.6f}"]
        args += ["-i", f"file:{source.resolve()}"]
    number = first_number(plan, chunk)
    for n, rendition in enumerate(ladder.renditions):
        args += ["-map", f"{n}:v:0", "-c:v", "copy"]
        if plan.info.main_audio is not None:
            args += ["-map", f"{audio}:{plan.info.main_audio.index}"]
            args += aac_args(plan.profile, rendition.audio_bitrate)
        hls = ":".join(
            [
                "f=hls",
                "max_delay=0",  # as the stitch's tee slaves: no muxing delay shift
                f"hls_time={plan.profile.segment_duration:g}",
                "hls_playlist_type=vod",
                "hls_flags=independent_segments",
                "hls_segment_type=mpegts",
                f"start_number={number}",
                f"hls_segment_filename={PREFIX}{rendition.name}_%05d.ts",
            ]
        )
        delay = decode_delay(folder / chunk_file(chunk, rendition.name))
        args += ["-output_ts_offset", f"{chunk.start + delay:.6f}"]
        args += ["-f", "tee", f"[{hls}]{preview_playlist(rendition.name)}"]
    return args


@dataclass(frozen=True, kw_only=True)
class Preview:
    run: FFmpegRun
    info: dict[str, Any]  # for the chunk's result: what the EVENT playlist lists


def write_preview(
    source: Path, plan: EncodePlan, chunk: ChunkRange, folder: Path, *, ffmpeg: str
) -> Preview:
    """Write the chunk's preview segments into `folder` (the chunk's files are there)."""
    ladder = plan.ladder
    assert ladder is not None
    run = run_ffmpeg(
        ffmpeg,
        build_preview_args(plan, source, chunk, folder),
        duration=chunk.duration,
        cwd=folder,
        time_limit=max(60.0, 5 * chunk.duration),
    )
    renditions = []
    for rendition in ladder.renditions:
        playlist = folder / preview_playlist(rendition.name)
        renditions.append(
            {
                "name": rendition.name,
                "width": rendition.width,
                "height": rendition.height,
                "bandwidth": rendition.max_video_bitrate + rendition.audio_bitrate,
                "segments": read_segments(playlist.read_text(encoding="utf-8")),
            }
        )
        playlist.unlink()  # the API writes the playlists; the segments are what it lists
    info = {"first": first_number(plan, chunk), "renditions": renditions}
    return Preview(run=run, info=info)


def read_segments(playlist: str) -> list[list[Any]]:
    """[[file name, duration], ...] of a media playlist, in order."""
    found: list[list[Any]] = []
    duration: float | None = None
    for line in playlist.splitlines():
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:") :].split(",")[0])
        elif line and not line.startswith("#") and duration is not None:
            found.append([line, duration])
            duration = None
    return found

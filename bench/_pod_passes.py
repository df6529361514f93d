"""Scenario b: Esup-Pod's own passes (shared/reference/pod-encoding.md), as Pod runs them."""

from __future__ import annotations

import time
from pathlib import Path

from _harness import FFMPEG_FLAGS, BenchError, Measurement, folder_bytes, run_process

# Esup-Pod's default VIDEO_RENDITIONS (shared/reference/pod-encoding.md).
POD_RENDITIONS = (
    # height, maxrate, audio bitrate, also as MP4
    (360, "1000k", "96k", True),
    (720, "3000k", "128k", True),
    (1080, "4500k", "192k", False),
)
POD_VIDEO_BITRATES = {360: 750_000, 720: 2_000_000, 1080: 3_000_000}
POD_THUMBNAIL_POSITIONS = (0.25, 0.50, 0.75)
POD_SPRITE_TILE_HEIGHT = 90


# --------------------------------------------------------------------------- b. Esup-Pod


def pod_rendition_args(
    height: int, maxrate: str, audio_bitrate: str, *, preset: str, crf: int, level: bool
) -> list[str]:
    """Pod's per-rendition options (reference), with the benchmark's preset and CRF."""
    return [
        "-map",
        "0:v:0",
        "-map",
        "0:a:0",
        "-c:v",
        "libx264",
        "-vf",
        f"scale=-2:{height}",
        "-preset",
        preset,
        "-profile:v",
        "high",
        "-pix_fmt",
        "yuv420p",
        *(["-level", "3"] if level else []),
        "-crf",
        str(crf),
        "-maxrate",
        maxrate,
        "-bufsize",
        maxrate,
        "-sc_threshold",
        "0",
        "-force_key_frames",
        "expr:gte(t,n_forced*1)",
        "-max_muxing_queue_size",
        "4000",
        "-c:a",
        "aac",
        "-ar",
        "48000",
        "-b:a",
        audio_bitrate,
    ]


def pod_commands(
    ffmpeg: str,
    source: Path,
    duration: float,
    *,
    preset: str,
    crf: int,
    level: bool,
    sprite_tile_width: int,
) -> list[tuple[str, list[str]]]:
    head = [ffmpeg, *FFMPEG_FLAGS]
    mp4 = [*head, "-i", str(source)]
    hls = [*head, "-i", str(source)]
    for height, maxrate, audio, as_mp4 in POD_RENDITIONS:
        options = pod_rendition_args(height, maxrate, audio, preset=preset, crf=crf, level=level)
        if as_mp4:
            mp4 += [*options, "-movflags", "faststart", f"{height}p.mp4"]
        hls += [
            *options,
            "-hls_playlist_type",
            "vod",
            "-hls_time",
            "2",
            "-hls_flags",
            "single_file",
            f"{height}p.m3u8",
        ]
    commands = [("MP4 pass (360p, 720p)", mp4), ("HLS pass (360p, 720p, 1080p)", hls)]
    commands.append(
        (
            "MP3",
            [
                *head,
                "-i",
                str(source),
                "-vn",
                "-codec:a",
                "libmp3lame",
                "-qscale:a",
                "2",
                "audio_192k.mp3",
            ],
        )
    )
    for n, position in enumerate(POD_THUMBNAIL_POSITIONS, start=1):
        at = duration * position
        commands.append(
            (
                f"thumbnail {n} ({position:.0%})",
                [
                    *head,
                    "-ss",
                    f"{at:.3f}",
                    "-i",
                    str(source),
                    "-an",
                    "-frames:v",
                    "1",
                    "-q:v",
                    "3",
                    f"thumbnail_{n}.jpg",
                ],
            )
        )
    tiles = 100 if duration >= 100 else 10
    commands.append(
        (
            "overview sprite",
            [
                *head,
                "-i",
                str(source),
                "-an",
                "-vf",
                f"fps={tiles}/{duration:.6f},scale={sprite_tile_width}:{POD_SPRITE_TILE_HEIGHT},"
                f"setsar=1,tile={tiles}x1",
                "-frames:v",
                "1",
                "overview.png",
            ],
        )
    )
    return commands


def pod_master_playlist() -> str:
    """Pod concatenates text: BANDWIDTH from the video bitrate alone, no CODECS."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    for height, *_ in POD_RENDITIONS:
        width = round(height * 16 / 9 / 2) * 2
        lines += [
            f"#EXT-X-STREAM-INF:BANDWIDTH={POD_VIDEO_BITRATES[height]},RESOLUTION={width}x{height}",
            f"{height}p.m3u8",
        ]
    return "\n".join(lines) + "\n"


def run_pod(
    ffmpeg: str,
    source: Path,
    work: Path,
    duration: float,
    *,
    preset: str,
    crf: int,
    level: bool,
    sprite_tile_width: int,
) -> Measurement:
    out_dir = work / "pod"
    out_dir.mkdir()
    started = time.monotonic()
    processes = [
        run_process(label, command, cwd=out_dir)
        for label, command in pod_commands(
            ffmpeg,
            source,
            duration,
            preset=preset,
            crf=crf,
            level=level,
            sprite_tile_width=sprite_tile_width,
        )
    ]
    (out_dir / "livestream.m3u8").write_text(pod_master_playlist(), encoding="utf-8")
    wall = time.monotonic() - started
    expected = [
        "360p.mp4",
        "720p.mp4",
        "360p.m3u8",
        "360p.ts",
        "720p.m3u8",
        "720p.ts",
        "1080p.m3u8",
        "1080p.ts",
        "audio_192k.mp3",
        "thumbnail_1.jpg",
        "thumbnail_2.jpg",
        "thumbnail_3.jpg",
        "overview.png",
        "livestream.m3u8",
    ]
    bad = [n for n in expected if not (out_dir / n).is_file() or (out_dir / n).stat().st_size == 0]
    if bad:
        raise BenchError(f"Pod's way did not produce: {', '.join(bad)}")
    return Measurement(
        approach="pod",
        cpu_seconds=sum(p.cpu_seconds for p in processes),
        wall_seconds=wall,
        processes=processes,
        output_bytes=folder_bytes(out_dir),
    )

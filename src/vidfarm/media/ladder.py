"""Plan the rendition ladder for one source: which sizes, frame rate and keyframe cadence.

Rules (Pod-compatible, see shared/reference/pod-encoding.md): never upscale, always make the
lowest rendition, measure against the short side so portrait and rotated sources get the same
ladder as landscape ones, keep dimensions even, cap the frame rate by an integer divisor (no
judder), and place keyframes on one fixed time grid shared by every rendition.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from vidfarm.media.probe import MediaInfo
from vidfarm.media.profiles import Profile, RenditionSpec


@dataclass(frozen=True, kw_only=True)
class Rendition:
    name: str  # e.g. "720p": the profile's nominal height, used in file names
    width: int
    height: int
    video_bitrate: int
    max_video_bitrate: int
    audio_bitrate: int
    mp4: bool


@dataclass(frozen=True, kw_only=True)
class Ladder:
    renditions: list[Rendition]
    fps: float | None  # output frame rate when the source's must be reduced; None keeps it
    source_fps: float | None  # after deinterlacing: twice the frame rate when sending fields
    keyframe_interval: float
    segment_duration: float
    gop_frames: int  # x264 keyint, matching keyframe_interval at the output frame rate

    @property
    def top(self) -> Rendition:
        return self.renditions[-1]


def even(value: float) -> int:
    return max(2, round(value / 2.0) * 2)


def output_fps(source_fps: float | None, max_fps: float) -> float | None:
    """Divide the source rate by the smallest integer that brings it under the cap."""
    if not source_fps or source_fps <= max_fps * 1.001:
        return None
    return source_fps / math.ceil(source_fps / max_fps - 1e-9)


def even_floor(value: int) -> int:
    return max(2, value - value % 2)


def _size_for(short_side: int, aspect: float, portrait: bool, long_max: int) -> tuple[int, int]:
    long_side = even(short_side * aspect) if not portrait else even(short_side / aspect)
    long_side = min(long_side, even_floor(long_max))  # rounding must never upscale
    return (short_side, long_side) if portrait else (long_side, short_side)


def plan_ladder(info: MediaInfo, profile: Profile, *, only: RenditionSpec | None = None) -> Ladder:
    video = info.main_video
    if video is None:
        raise ValueError("plan_ladder needs a video stream")
    width, height = video.display_size
    portrait = height > width
    short = min(width, height)
    aspect = width / height
    specs = [only] if only else profile.ladder
    chosen: list[RenditionSpec] = [
        spec for spec in specs if short >= spec.height - spec.height * profile.threshold / 100
    ]
    if not chosen or chosen[0] is not specs[0]:
        chosen.insert(0, specs[0])  # the lowest rendition is always made
    renditions: list[Rendition] = []
    seen: set[int] = set()
    for spec in chosen:
        out_short = even_floor(min(spec.height, short))
        if out_short in seen:
            continue
        seen.add(out_short)
        out_w, out_h = _size_for(out_short, aspect, portrait, max(width, height))
        renditions.append(
            Rendition(
                name=f"{spec.height}p",
                width=out_w,
                height=out_h,
                video_bitrate=spec.video_bitrate,
                max_video_bitrate=spec.max_video_bitrate,
                audio_bitrate=spec.audio_bitrate,
                mp4=spec.mp4,
            )
        )
    source_fps = video.fps
    if video.interlaced and source_fps and profile.deinterlace == "field":
        source_fps *= 2  # bwdif sends one picture per field
    fps = output_fps(source_fps, profile.max_fps)
    effective = fps or source_fps or 25.0
    return Ladder(
        renditions=renditions,
        fps=fps,
        source_fps=source_fps,
        keyframe_interval=profile.keyframe_interval,
        segment_duration=profile.segment_duration,
        gop_frames=max(1, round(profile.keyframe_interval * effective)),
    )

"""Reading outputs back: what a player would find in them."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av


@dataclass(frozen=True)
class VideoTrack:
    codec: str
    width: int
    height: int
    frames: int
    duration: float  # from the first frame's start to the last frame's end
    keyframes: list[Fraction]  # presentation times of keyframes, from the first frame


def read_video(*paths: Path) -> VideoTrack:
    """Demux the video of one file, or of HLS segments read in order, without decoding."""
    times: list[Fraction] = []
    keys: list[Fraction] = []
    codec, width, height = "", 0, 0
    frame_duration = Fraction(0)
    for path in paths:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            codec = stream.codec_context.name
            width, height = stream.codec_context.width, stream.codec_context.height
            if stream.average_rate:
                frame_duration = 1 / Fraction(stream.average_rate)
            for packet in container.demux(stream):
                if packet.pts is None:
                    continue
                at = packet.pts * stream.time_base
                times.append(at)
                if packet.is_keyframe:
                    keys.append(at)
    origin = min(times)
    return VideoTrack(
        codec=codec,
        width=width,
        height=height,
        frames=len(times),
        duration=float(max(times) - origin + frame_duration),
        keyframes=sorted(k - origin for k in keys),
    )


def audio_codec(path: Path) -> str | None:
    with av.open(str(path)) as container:
        if not container.streams.audio:
            return None
        return str(container.streams.audio[0].codec_context.name)


def top_level_atoms(path: Path) -> list[str]:
    """The order of an MP4's top-level boxes (moov before mdat means fast start)."""
    atoms: list[str] = []
    with path.open("rb") as handle:
        while header := handle.read(8):
            size, kind = struct.unpack(">I4s", header)
            atoms.append(kind.decode("latin-1"))
            if size == 1:
                size = struct.unpack(">Q", handle.read(8))[0]
                handle.seek(size - 16, 1)
            elif size == 0:
                break
            else:
                handle.seek(size - 8, 1)
    return atoms


def image_size(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as container:
        cc = container.streams.video[0].codec_context
        return cc.width, cc.height


@dataclass(frozen=True)
class Timeline:
    """Absolute presentation times as the container stores them (no re-basing)."""

    video_start: float | None
    audio_start: float | None
    keyframes: list[float]

    @property
    def origin(self) -> float:
        """Where a player's timeline starts: the earliest audio or video timestamp."""
        return min(t for t in (self.video_start, self.audio_start) if t is not None)


def read_timeline(*paths: Path) -> Timeline:
    """First video and audio timestamps and every video keyframe time, read by demuxing one
    file or HLS segments in order."""
    starts: dict[str, float] = {}
    keys: list[float] = []
    for path in paths:
        with av.open(str(path)) as container:
            wanted = [*container.streams.video[:1], *container.streams.audio[:1]]
            for packet in container.demux(wanted):
                if packet.pts is None or packet.stream.time_base is None:
                    continue
                at = float(packet.pts * packet.stream.time_base)
                kind = packet.stream.type
                starts[kind] = min(starts.get(kind, at), at)
                if kind == "video" and packet.is_keyframe:
                    keys.append(at)
    return Timeline(
        video_start=starts.get("video"), audio_start=starts.get("audio"), keyframes=sorted(keys)
    )

"""HLS packaging facts that ffmpeg does not write for us: the master playlist.

BANDWIDTH is measured, not guessed: the peak segment bit rate of each variant (video and audio
together, container overhead included), as RFC 8216 asks; AVERAGE-BANDWIDTH is the mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av

#: RFC 6381 names for what vidfarm encodes. H.264 is avc1.PPCCLL (profile, constraints, level).
H264_PROFILES = {
    "Constrained Baseline": (66, 0xC0),
    "Baseline": (66, 0x00),
    "Main": (77, 0x40),
    "High": (100, 0x00),
}
AAC_LC = "mp4a.40.2"


@dataclass(frozen=True, kw_only=True)
class Segment:
    uri: str
    duration: float


@dataclass(frozen=True, kw_only=True)
class Variant:
    playlist: str  # file name relative to the master playlist
    bandwidth: int
    average_bandwidth: int
    codecs: str
    resolution: tuple[int, int] | None = None
    frame_rate: float | None = None


def read_media_playlist(path: Path) -> list[Segment]:
    segments: list[Segment] = []
    duration: float | None = None
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#EXTINF:"):
            duration = float(line[len("#EXTINF:") :].split(",")[0])
        elif line and not line.startswith("#") and duration is not None:
            segments.append(Segment(uri=line, duration=duration))
            duration = None
    return segments


def measure_bandwidth(folder: Path, segments: list[Segment]) -> tuple[int, int]:
    """(peak, average) bits per second over a variant's segments."""
    if not segments:
        return 0, 0
    sizes = [(folder / s.uri).stat().st_size for s in segments]
    peak = max(size * 8 / max(s.duration, 0.001) for size, s in zip(sizes, segments, strict=True))
    total = sum(s.duration for s in segments)
    return round(peak), round(sum(sizes) * 8 / max(total, 0.001))


def h264_codec_string(profile: str | None, level: int | None) -> str:
    idc, constraints = H264_PROFILES.get(profile or "High", (100, 0x00))
    return f"avc1.{idc:02x}{constraints:02x}{(level or 40):02x}"


def codecs_of(media_file: Path) -> str:
    """The CODECS attribute for a file: its video (if any) then its audio."""
    names: list[str] = []
    with av.open(str(media_file)) as container:
        for stream in container.streams.video:
            cc = stream.codec_context
            names.append(h264_codec_string(cc.profile, cc.level))
            break
        if container.streams.audio:
            names.append(AAC_LC)
    return ",".join(names)


def master_playlist(variants: list[Variant]) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    for variant in sorted(variants, key=lambda v: v.bandwidth):
        attributes = [
            f"BANDWIDTH={variant.bandwidth}",
            f"AVERAGE-BANDWIDTH={variant.average_bandwidth}",
        ]
        if variant.resolution:
            attributes.append(f"RESOLUTION={variant.resolution[0]}x{variant.resolution[1]}")
        if variant.frame_rate:
            attributes.append(f"FRAME-RATE={variant.frame_rate:.3f}")
        attributes.append(f'CODECS="{variant.codecs}"')
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
        lines.append(variant.playlist)
    return "\n".join(lines) + "\n"

"""HLS packaging facts that ffmpeg does not write for us: the master playlist, tidy tails.

BANDWIDTH is measured, not guessed: the peak segment bit rate of each variant (video and audio
together, container overhead included) as RFC 8216 section 4.3.4.2 defines it, over runs of
segments lasting 0.5 to 1.5 target durations; AVERAGE-BANDWIDTH is the mean.
"""

from __future__ import annotations

import math
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
class Media:
    """An EXT-X-MEDIA rendition: an alternate audio track or a subtitle."""

    type: str  # "AUDIO" or "SUBTITLES"
    group: str
    name: str
    language: str | None
    uri: str | None  # None: an audio rendition carried inside the variants themselves
    default: bool = False


#: ISO 639-2 codes (what Matroska and MP4 tags hold) to the shortest tag RFC 5646 prefers.
_ISO_639_1 = {
    "eng": "en", "fra": "fr", "fre": "fr", "deu": "de", "ger": "de", "spa": "es",
    "ita": "it", "nld": "nl", "dut": "nl", "por": "pt", "cat": "ca", "eus": "eu",
    "baq": "eu", "bre": "br", "oci": "oc", "ara": "ar", "zho": "zh", "chi": "zh",
    "jpn": "ja", "rus": "ru", "pol": "pl",
}  # fmt: skip


def language_tag(code: str | None) -> str | None:
    """A stream's language tag for LANGUAGE=, or None when unknown ("und")."""
    if not code or code.strip().lower() in ("und", "unk", "mis", "zxx"):
        return None
    lowered = code.strip().lower()
    return _ISO_639_1.get(lowered, lowered)


def unique_names(names: list[str]) -> list[str]:
    """NAME must be unique within a group: "French", "French 2", ..."""
    seen: dict[str, int] = {}
    result = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        result.append(name if seen[name] == 1 else f"{name} {seen[name]}")
    return result


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


def read_target_duration(path: Path) -> int:
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#EXT-X-TARGETDURATION:"):
            return int(line.split(":", 1)[1])
    raise ValueError(f"{path.name} has no EXT-X-TARGETDURATION")


def measure_bandwidth(folder: Path, segments: list[Segment], target: float) -> tuple[int, int]:
    """(peak, average) bits per second over a variant's segments.

    The peak is RFC 8216's "peak segment bit rate": the highest rate of any run of contiguous
    segments lasting 0.5 to 1.5 target durations (the whole variant when it is shorter), so
    a sub-second tail made mostly of headers does not set it.
    """
    if not segments:
        return 0, 0
    sizes = [(folder / s.uri).stat().st_size for s in segments]
    durations = [max(s.duration, 0.001) for s in segments]
    peak = 0.0
    for first in range(len(segments)):
        size, duration = 0, 0.0
        for index in range(first, len(segments)):
            size += sizes[index]
            duration += durations[index]
            if duration > 1.5 * target + 1e-6:
                break
            if duration >= 0.5 * target - 1e-6:
                peak = max(peak, size * 8 / duration)
    average = sum(sizes) * 8 / sum(durations)
    return round(peak or average), round(average)


def merge_short_tail(playlist: Path, shortest: float) -> None:
    """Append a last segment shorter than `shortest` seconds to the segment before it.

    ffmpeg cuts a segment at the first keyframe past each segment length, so a source that
    lasts a little more than a multiple of it ends in a segment of a frame or two. MPEG-TS
    segments of one muxer concatenate into one valid stream (same PIDs, continuity counters
    carry on), so this is packaging only: nothing is encoded again.
    """
    if not playlist.exists():
        return
    lines = playlist.read_text(encoding="utf-8").splitlines()
    entries = [i for i, line in enumerate(lines) if line.startswith("#EXTINF:")]
    if len(entries) < 2:
        return
    before, last = entries[-2], entries[-1]
    last_duration = _extinf(lines[last])
    if last_duration >= shortest:
        return
    kept, tail = playlist.parent / lines[before + 1], playlist.parent / lines[last + 1]
    with kept.open("ab") as sink, tail.open("rb") as source:
        while block := source.read(1 << 20):
            sink.write(block)
    tail.unlink()
    merged = _extinf(lines[before]) + last_duration
    lines[before] = f"#EXTINF:{merged:.6f},"
    del lines[last : last + 2]
    longest = max(_extinf(lines[i]) for i in entries[:-1])
    for i, line in enumerate(lines):
        if line.startswith("#EXT-X-TARGETDURATION:"):
            # RFC 8216 4.3.3.1: every EXTINF, rounded to the nearest integer, <= the target.
            target = max(int(line.split(":", 1)[1]), math.floor(longest + 0.5))
            lines[i] = f"#EXT-X-TARGETDURATION:{target}"
    playlist.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _extinf(line: str) -> float:
    return float(line[len("#EXTINF:") :].split(",")[0])


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


def master_playlist(variants: list[Variant], media: list[Media] | None = None) -> str:
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-INDEPENDENT-SEGMENTS"]
    groups: dict[str, str] = {}
    for item in media or []:
        groups.setdefault(item.type, item.group)
        attributes = [f"TYPE={item.type}", f'GROUP-ID="{item.group}"', f'NAME="{item.name}"']
        if item.language:
            attributes.append(f'LANGUAGE="{item.language}"')
        attributes.append(f"DEFAULT={'YES' if item.default else 'NO'}")
        attributes.append(f"AUTOSELECT={'YES' if item.default or item.language else 'NO'}")
        if item.type == "SUBTITLES":
            attributes.append("FORCED=NO")
        if item.type == "AUDIO":
            attributes.append('CHANNELS="2"')
        if item.uri:
            attributes.append(f'URI="{item.uri}"')
        lines.append("#EXT-X-MEDIA:" + ",".join(attributes))
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
        for kind, group in groups.items():
            attributes.append(f'{kind}="{group}"')
        lines.append("#EXT-X-STREAM-INF:" + ",".join(attributes))
        lines.append(variant.playlist)
    return "\n".join(lines) + "\n"

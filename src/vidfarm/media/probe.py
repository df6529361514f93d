"""Read what a media file contains, with PyAV (no system ffprobe needed).

`probe()` is also the first line of defence against bad input: anything that is not usable
audio or video raises `InvalidMedia` with one line saying why.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from vidfarm.errors import InvalidMedia

#: Containers that hold a single picture, not a video.
IMAGE_CONTAINERS = frozenset({"image2", "image2pipe"})
#: Subtitle codecs ffmpeg can turn into WebVTT (bitmap subtitles cannot be).
TEXT_SUBTITLE_CODECS = frozenset(
    {"subrip", "srt", "ass", "ssa", "mov_text", "webvtt", "text", "microdvd", "subviewer"}
)
INTERLACED_FIELD_ORDERS = frozenset({2, 3, 4, 5})  # AV_FIELD_TT, BB, TB, BT


@dataclass(frozen=True, kw_only=True)
class VideoStreamInfo:
    index: int
    codec: str
    width: int
    height: int
    rotation: int  # clockwise degrees the player must turn the picture: 0, 90, 180 or 270
    sample_aspect: str  # "num:den"
    fps: float | None  # average frame rate
    variable_frame_rate: bool
    pix_fmt: str | None
    bit_depth: int
    bitrate: int | None
    interlaced: bool
    language: str | None = None

    @property
    def sar(self) -> Fraction:
        num, den = (int(part) for part in self.sample_aspect.split(":"))
        return Fraction(num, den) if num > 0 and den > 0 else Fraction(1)

    @property
    def display_size(self) -> tuple[int, int]:
        """Width and height as shown: square pixels, rotation applied."""
        width = max(2, round(self.width * self.sar))
        if self.rotation in (90, 270):
            return self.height, width
        return width, self.height

    @property
    def display_aspect(self) -> float:
        width, height = self.display_size
        return width / height


@dataclass(frozen=True, kw_only=True)
class AudioStreamInfo:
    index: int
    codec: str
    channels: int
    sample_rate: int
    bitrate: int | None
    language: str | None = None
    title: str | None = None  # the stream's "title" tag, e.g. "Audio description"


@dataclass(frozen=True, kw_only=True)
class SubtitleStreamInfo:
    index: int
    codec: str
    text_based: bool
    language: str | None = None
    title: str | None = None


@dataclass(frozen=True, kw_only=True)
class AttachedPicture:
    index: int
    codec: str  # mjpeg or png, usually


@dataclass(frozen=True, kw_only=True)
class MediaInfo:
    path: str
    container: str
    duration: float
    size: int
    bitrate: int | None
    video: list[VideoStreamInfo] = field(default_factory=list)
    audio: list[AudioStreamInfo] = field(default_factory=list)
    subtitles: list[SubtitleStreamInfo] = field(default_factory=list)
    pictures: list[AttachedPicture] = field(default_factory=list)

    @property
    def main_video(self) -> VideoStreamInfo | None:
        return self.video[0] if self.video else None

    @property
    def main_audio(self) -> AudioStreamInfo | None:
        return self.audio[0] if self.audio else None

    @property
    def is_audio_only(self) -> bool:
        return not self.video and bool(self.audio)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def probe(path: str | os.PathLike[str], *, name: str | None = None) -> MediaInfo:
    """Describe `path`, or raise InvalidMedia with the reason it cannot be processed.

    `name` is what error messages call the file (an upload's name, not its temporary one).
    """
    source = Path(path)
    label = name or source.name
    if not source.is_file():
        raise InvalidMedia(f"{label}: no such file")
    size = source.stat().st_size
    if size == 0:
        raise InvalidMedia(f"{label}: the file is empty")
    try:
        container = av.open(str(source), metadata_errors="ignore")
    except av.FFmpegError as error:
        if _mp4_without_index(source, size):
            raise InvalidMedia(
                f"{label}: truncated or incomplete (an MP4 cut short before its index, "
                "the moov box)"
            ) from None
        raise InvalidMedia(f"{label}: not a media file ({_reason(error)})") from None
    with container:
        return _describe(container, source, size, label)


def _describe(container: Any, source: Path, size: int, label: str) -> MediaInfo:
    format_name = str(container.format.name)
    video: list[VideoStreamInfo] = []
    audio: list[AudioStreamInfo] = []
    subtitles: list[SubtitleStreamInfo] = []
    pictures: list[AttachedPicture] = []
    for stream in container.streams:
        language = stream.metadata.get("language")
        codec = _codec_name(stream)
        if stream.type == "video":
            if stream.disposition & av.stream.Disposition.attached_pic:
                pictures.append(AttachedPicture(index=stream.index, codec=codec))
            else:
                video.append(_video_stream(container, stream, language))
        elif stream.type == "audio":
            cc = stream.codec_context
            audio.append(
                AudioStreamInfo(
                    index=stream.index,
                    codec=codec,
                    channels=int(cc.channels or 0),
                    sample_rate=int(cc.sample_rate or 0),
                    bitrate=int(cc.bit_rate or 0) or None,
                    language=language,
                    title=stream.metadata.get("title"),
                )
            )
        elif stream.type == "subtitle":
            subtitles.append(
                SubtitleStreamInfo(
                    index=stream.index,
                    codec=codec,
                    text_based=codec in TEXT_SUBTITLE_CODECS,
                    language=language,
                    title=stream.metadata.get("title"),
                )
            )
    if not video and not audio:
        what = "a still image" if pictures else "no audio or video stream"
        raise InvalidMedia(f"{label}: not a video ({what})")
    if format_name in IMAGE_CONTAINERS or format_name.endswith("_pipe"):
        raise InvalidMedia(f"{label}: a still image ({format_name}), not a video")
    _refuse_truncated(container, label, size)
    if video:
        video[0] = _with_first_frame_checked(container, video[0], label)
    duration = _duration(container)
    if duration is None or duration <= 0:
        raise InvalidMedia(f"{label}: the media has no duration")
    return MediaInfo(
        path=str(source),
        container=format_name,
        duration=duration,
        size=size,
        bitrate=int(container.bit_rate or 0) or None,
        video=video,
        audio=audio,
        subtitles=subtitles,
        pictures=pictures,
    )


def _video_stream(container: Any, stream: Any, language: str | None) -> VideoStreamInfo:
    cc = stream.codec_context
    avg = stream.average_rate
    base = stream.base_rate or stream.guessed_rate
    fps = float(avg) if avg else (float(base) if base else None)
    vfr = bool(avg and base and abs(float(avg) - float(base)) / float(base) > 0.01)
    sar = stream.sample_aspect_ratio or cc.sample_aspect_ratio
    pix_fmt = cc.pix_fmt
    bit_depth = 8
    if pix_fmt:
        try:
            bit_depth = max(c.bits for c in av.VideoFormat(pix_fmt).components)
        except (ValueError, AttributeError):
            bit_depth = 8
    return VideoStreamInfo(
        index=stream.index,
        codec=_codec_name(stream),
        width=int(cc.width),
        height=int(cc.height),
        rotation=0,
        sample_aspect=f"{sar.numerator}:{sar.denominator}" if sar else "1:1",
        fps=fps,
        variable_frame_rate=vfr,
        pix_fmt=pix_fmt,
        bit_depth=bit_depth,
        bitrate=int(cc.bit_rate or 0) or None,
        interlaced=int(cc.field_order or 0) in INTERLACED_FIELD_ORDERS,
        language=language,
    )


def _with_first_frame_checked(container: Any, info: VideoStreamInfo, label: str) -> VideoStreamInfo:
    """Decode one frame: proves the stream is decodable and reveals the display rotation."""
    stream = container.streams[info.index]
    try:
        for frame in container.decode(stream):
            rotation = round(-float(frame.rotation or 0)) % 360
            width, height = info.width or frame.width, info.height or frame.height
            return VideoStreamInfo(
                **{**asdict(info), "rotation": rotation, "width": width, "height": height}
            )
    except av.FFmpegError as error:
        raise InvalidMedia(f"{label}: the video cannot be decoded ({_reason(error)})") from None
    raise InvalidMedia(f"{label}: the video stream has no decodable frame")


def _refuse_truncated(container: Any, label: str, size: int) -> None:
    """A container index that points past the end of the file means the upload was cut short."""
    for stream in container.streams:
        entries = stream.index_entries
        if len(entries) and entries[-1].pos + entries[-1].size > size:
            missing = entries[-1].pos + entries[-1].size - size
            raise InvalidMedia(f"{label}: the file is truncated ({missing} bytes missing)")


#: ISO BMFF top-level boxes an MP4/MOV written with its index at the end starts with.
_MP4_BOXES = frozenset({b"ftyp", b"mdat", b"free", b"skip", b"wide", b"uuid", b"pnot"})


def _mp4_without_index(source: Path, size: int) -> bool:
    """An MP4 whose top-level boxes start well (ftyp, mdat...) but never reach a moov: an
    upload or a recording stopped before the index at the end of the file was written."""
    position, seen = 0, list[bytes]()
    with source.open("rb") as handle:
        while position + 8 <= size:
            handle.seek(position)
            header = handle.read(16)
            box_size, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if kind == b"moov" or (kind not in _MP4_BOXES and not seen):
                return False
            seen.append(kind)
            if box_size == 1 and len(header) == 16:
                box_size = int.from_bytes(header[8:16], "big")
            if box_size == 0 or position + box_size > size:
                break  # runs to (or past) the end of the file
            if box_size < 8:
                return False
            position += box_size
    return bool(seen) and seen[0] in (b"ftyp", b"mdat", b"wide", b"free")


def _duration(container: Any) -> float | None:
    if container.duration:
        return float(container.duration) / av.time_base
    longest = 0.0
    for stream in container.streams:
        if stream.duration and stream.time_base:
            longest = max(longest, float(stream.duration * stream.time_base))
    return longest or None


def _reason(error: Exception) -> str:
    text = getattr(error, "strerror", None) or str(error)
    return str(text).split(": '")[0].strip()


def _codec_name(stream: Any) -> str:
    context = stream.codec_context
    if context is None:
        return "unknown"
    codec = getattr(context, "codec", None)
    return str(getattr(codec, "canonical_name", None) or context.name)

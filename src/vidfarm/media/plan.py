"""Plan an encode: every output decided up front, before ffmpeg starts.

The plan is the one description of an encode that the argument builder, the output
describer and the adapters at the edge (runner manager, Pod worker) all read.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field, replace

from vidfarm.errors import InvalidParameters
from vidfarm.media.ladder import Ladder, even, plan_ladder
from vidfarm.media.probe import AttachedPicture, AudioStreamInfo, MediaInfo, SubtitleStreamInfo
from vidfarm.media.profiles import Profile, RenditionSpec

THUMBNAIL_POSITIONS = (0.25, 0.50, 0.75)
SPRITE_MIN_DURATION = 10.0
SPRITE_TILE_HEIGHT = 90
FORMATS = ("hls", "mp4", "dash")
#: Without an explicit choice: HLS for every rendition, MP4 for those the profile flags.
DEFAULT_FORMATS = frozenset({"hls", "mp4"})


@dataclass(frozen=True, kw_only=True)
class SpritePlan:
    tiles: int
    tile_width: int
    tile_height: int
    step: float  # seconds of media per tile


@dataclass(frozen=True, kw_only=True)
class EncodePlan:
    info: MediaInfo
    profile: Profile
    ladder: Ladder | None  # None for audio-only sources
    start: float
    duration: float  # of the output, after the cut
    thumbnails_at: list[float] = field(default_factory=list)
    sprite: SpritePlan | None = None
    subtitles: list[tuple[SubtitleStreamInfo, str]] = field(default_factory=list)
    cover: AttachedPicture | None = None
    formats: frozenset[str] = DEFAULT_FORMATS
    #: Audio tracks after the first, with the name of their HLS alternate rendition: each is
    #: in every MP4 and, once encoded, an EXT-X-MEDIA TYPE=AUDIO of the master.
    extra_audio: list[tuple[AudioStreamInfo, str]] = field(default_factory=list)
    #: Source streams the outputs do not carry, one line each (listed in the manifest).
    dropped: list[str] = field(default_factory=list)

    @property
    def has_audio(self) -> bool:
        return self.info.main_audio is not None

    @property
    def hls(self) -> bool:
        return "hls" in self.formats

    @property
    def dash(self) -> bool:
        return "dash" in self.formats

    @property
    def hls_playlists(self) -> list[str]:
        """The media playlists ffmpeg writes, one per variant."""
        if self.ladder is None:
            return ["audio.m3u8"]
        if not self.hls or self.dash:
            return []
        names = [f"{rendition.name}.m3u8" for rendition in self.ladder.renditions]
        return names + [f"{name}.m3u8" for _, name in self.extra_audio]


def plan_encode(
    info: MediaInfo,
    profile: Profile,
    *,
    start: float | None = None,
    end: float | None = None,
    only: RenditionSpec | None = None,
    formats: Collection[str] | None = None,
) -> EncodePlan:
    """Decide every output. `formats` None means the profile's choice (HLS + flagged MP4);
    an explicit set makes exactly those formats for every rendition (DASH only alone)."""
    chosen = check_formats(formats)
    cut_start, cut_end = _check_cut(info.duration, start, end)
    duration = cut_end - cut_start
    cover = info.pictures[0] if info.pictures else None
    subtitles = [
        (stream, f"subtitle_{n}_{stream.language or 'und'}.vtt")
        for n, stream in enumerate(s for s in info.subtitles if s.text_based)
    ]
    dropped = [
        f"subtitle stream {s.index} ({s.codec}): a bitmap subtitle cannot become WebVTT"
        for s in info.subtitles
        if not s.text_based
    ]
    extra_audio = [(stream, f"audio-track-{n}") for n, stream in enumerate(info.audio[1:], 1)]
    if info.main_video is None or (formats is not None and "dash" in formats):
        dropped += [
            f"audio stream {stream.index} ({stream.language or 'und'}): only the first audio "
            f"track is kept in {'an audio-only encode' if info.main_video is None else 'DASH'}"
            for stream, _ in extra_audio
        ]
        extra_audio = []
    if info.main_video is None:
        return EncodePlan(
            info=info,
            profile=profile,
            ladder=None,
            start=cut_start,
            duration=duration,
            subtitles=subtitles,
            cover=cover,
            formats=frozenset({"hls"}),
            dropped=dropped,
        )
    ladder = plan_ladder(info, profile, only=only)
    if formats is not None:
        wants_mp4 = "mp4" in chosen
        ladder = replace(ladder, renditions=[replace(r, mp4=wants_mp4) for r in ladder.renditions])
    sprite = None
    if duration >= SPRITE_MIN_DURATION:
        tiles = 100 if duration >= 100 else 10
        sprite = SpritePlan(
            tiles=tiles,
            tile_width=even(SPRITE_TILE_HEIGHT * info.main_video.display_aspect),
            tile_height=SPRITE_TILE_HEIGHT,
            step=duration / tiles,
        )
    return EncodePlan(
        info=info,
        profile=profile,
        ladder=ladder,
        start=cut_start,
        duration=duration,
        thumbnails_at=[] if cover else [duration * p for p in THUMBNAIL_POSITIONS],
        sprite=sprite,
        subtitles=subtitles,
        cover=cover,
        formats=chosen,
        extra_audio=extra_audio,
        dropped=dropped,
    )


def check_formats(formats: Collection[str] | None) -> frozenset[str]:
    if formats is None:
        return DEFAULT_FORMATS
    chosen = frozenset(formats)
    unknown = sorted(chosen - set(FORMATS))
    if unknown or not chosen:
        raise InvalidParameters(
            f"unknown format {', '.join(unknown) or '(none)'} (allowed: {', '.join(FORMATS)})"
        )
    if "dash" in chosen and len(chosen) > 1:
        raise InvalidParameters("dash cannot be combined with other formats in one encode")
    return chosen


def _check_cut(
    media_duration: float, start: float | None, end: float | None
) -> tuple[float, float]:
    begin = 0.0 if start is None else float(start)
    finish = media_duration if end is None else float(end)
    if begin < 0 or not math.isfinite(begin):
        raise InvalidParameters(f"cut start {begin} must be >= 0")
    if finish > media_duration + 0.001:
        raise InvalidParameters(
            f"cut end {finish} is past the end of the media ({media_duration:.3f} s)"
        )
    if finish - begin < 0.1:
        raise InvalidParameters(f"cut {begin}..{finish} leaves nothing to encode")
    return begin, min(finish, media_duration)

"""Compose the picture before the ladder: Pod's dressing (watermark, credits) and studio layouts.

A `Composition` says what to show; `compose()` turns it into ffmpeg pieces for the one encode
pass: the `-i` inputs (absolute `file:` paths, argument lists), a `-filter_complex` fragment
ending in one video label and one audio label, and the composed duration. The encoder then
splits and scales the composed label exactly as it would the source's first video stream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

import av

from vidfarm.errors import InvalidMedia, InvalidParameters
from vidfarm.media.probe import AudioStreamInfo, MediaInfo, VideoStreamInfo, probe
from vidfarm.media.studio_layout import Layout, Studio, StudioGraph, studio_graph

__all__ = [
    "ComposedGraph",
    "Composition",
    "Corner",
    "Cut",
    "Dressing",
    "Layout",
    "Studio",
    "Watermark",
    "compose",
    "split_label",
]

#: Pod's watermark: 10 % of the video's height, 5 % of it away from the two nearest edges.
WATERMARK_HEIGHT = 0.10
WATERMARK_MARGIN = 0.05
AUDIO_RATE = 48000
DEFAULT_FPS = 25.0
MIN_CUT = 0.1


class Corner(StrEnum):
    """Pod's `Dressing.position` values (`position_orig` in `to_json`)."""

    TOP_RIGHT = "top_right"
    TOP_LEFT = "top_left"
    BOTTOM_RIGHT = "bottom_right"
    BOTTOM_LEFT = "bottom_left"


@dataclass(frozen=True, kw_only=True)
class Cut:
    """Seconds of the main source to keep; credits are never cut (as esup-runner does)."""

    start: float = 0.0
    end: float | None = None


@dataclass(frozen=True, kw_only=True)
class Watermark:
    image: Path
    position: Corner = Corner.TOP_RIGHT
    opacity: int = 100  # percent, Pod's scale (0-100)

    def __post_init__(self) -> None:
        if not 0 <= self.opacity <= 100:
            raise InvalidParameters(f"watermark opacity {self.opacity} is not within 0-100")


@dataclass(frozen=True, kw_only=True)
class Dressing:
    watermark: Watermark | None = None
    opening: Path | None = None  # a video shown before the main one
    ending: Path | None = None  # a video shown after it

    @property
    def empty(self) -> bool:
        return self.watermark is None and self.opening is None and self.ending is None


@dataclass(frozen=True, kw_only=True)
class Composition:
    main: Path | Studio
    cut: Cut | None = None
    dressing: Dressing | None = None


@dataclass(frozen=True, kw_only=True)
class ComposedGraph:
    """What the encode consumes: put `inputs` first, add `graph` to its filter graph, read
    `video` (and `audio`, None when no source has sound) once each (see `split_label`)."""

    inputs: list[str]
    graph: str
    video: str
    audio: str | None
    width: int
    height: int
    fps: float
    duration: float
    info: MediaInfo  # the composed stream described as a source, for plan_encode


def compose(composition: Composition) -> ComposedGraph:
    """Probe every input (refusing what is not usable media) and build the filter graph."""
    cut = composition.cut or Cut()
    inputs = _Inputs()
    if isinstance(composition.main, Studio):
        studio = _studio_main(composition.main, cut, inputs)
        main_info, video, audio, duration = studio.info, studio.video, studio.audio, studio.duration
        width, height, fps, graph = studio.width, studio.height, studio.fps, list(studio.graph)
    else:
        main_info = _probe_video(composition.main, "main video")
        duration = _check_cut(main_info, cut)
        index = inputs.add(composition.main, _cut_args(main_info, cut, duration))
        main_video = main_info.main_video
        assert main_video is not None
        width, height = (_even(side) for side in main_video.display_size)
        fps = _sane_fps(main_video.fps)
        video = f"[{index}:v:0]"
        audio = f"[{index}:a:0]" if main_info.main_audio is not None else None
        graph = []
    dressing = composition.dressing or Dressing()
    if dressing.watermark is not None:
        graph.append(_watermark(dressing.watermark, inputs, video, height))
        video = "[wmv]"
    credits = [c for c in (dressing.opening, dressing.ending) if c is not None]
    if not credits:
        graph.append(f"{video}null[cv]")
        if audio is not None:
            graph.append(f"{audio}anull[ca]")
        return ComposedGraph(
            inputs=inputs.args,
            graph=";".join(graph),
            video="[cv]",
            audio="[ca]" if audio is not None else None,
            width=width,
            height=height,
            fps=fps,
            duration=duration,
            info=_described(main_info, width, height, fps, duration, audio=main_info.main_audio),
        )
    around: dict[str, tuple[str, str | None, float]] = {}
    sounds = [main_info.main_audio]
    for role, path in (("opening credits", dressing.opening), ("ending credits", dressing.ending)):
        if path is not None:
            around[role], credit_info = _credit(path, role, inputs)
            sounds.append(credit_info.main_audio)
    segments = [
        *([around["opening credits"]] if "opening credits" in around else []),
        (video, audio, duration),
        *([around["ending credits"]] if "ending credits" in around else []),
    ]
    any_audio = any(seg_audio is not None for _, seg_audio, _ in segments)
    heard = next((sound for sound in sounds if sound is not None), None)
    pairs = ""
    for n, (seg_video, seg_audio, seg_duration) in enumerate(segments):
        graph.append(f"{seg_video}{_fit(width, height, fps, seg_duration)}[s{n}v]")
        pairs += f"[s{n}v]"
        if any_audio:
            graph.append(_segment_audio(seg_audio, seg_duration, f"[s{n}a]"))
            pairs += f"[s{n}a]"
    outputs = "[cv][ca]" if any_audio else "[cv]"
    graph.append(f"{pairs}concat=n={len(segments)}:v=1:a={int(any_audio)}{outputs}")
    total = sum(seg_duration for _, _, seg_duration in segments)
    return ComposedGraph(
        inputs=inputs.args,
        graph=";".join(graph),
        video="[cv]",
        audio="[ca]" if any_audio else None,
        width=width,
        height=height,
        fps=fps,
        duration=total,
        info=_described(main_info, width, height, fps, total, audio=heard, stereo=True),
    )


def split_label(label: str, count: int, *, audio: bool, prefix: str) -> tuple[str, list[str]]:
    """A filter label can feed one output only: split it for `count` consumers."""
    outputs = [f"[{prefix}{n}]" for n in range(count)]
    name = "asplit" if audio else "split"
    return f"{label}{name}={count}{''.join(outputs)}", outputs


class _Inputs:
    """The extra `-i` arguments, numbered in order (input 0 is the first one added)."""

    def __init__(self) -> None:
        self.args: list[str] = []
        self.count = 0

    def add(self, path: Path, options: list[str] | None = None) -> int:
        # "file:" stops ffmpeg from reading a crafted name as a protocol (http:, concat:, ...).
        self.args += [*(options or []), "-i", f"file:{Path(path).resolve()}"]
        self.count += 1
        return self.count - 1


def _studio_main(studio: Studio, cut: Cut, inputs: _Inputs) -> StudioGraph:
    sources: dict[str, tuple[int, MediaInfo, float]] = {}
    for role, path in (("presentation", studio.presentation), ("presenter", studio.presenter)):
        if path is None:
            continue
        info = _probe_video(path, role)
        duration = _check_cut(info, cut)
        sources[role] = (inputs.add(path, _cut_args(info, cut, duration)), info, duration)
    return studio_graph(studio.layout, sources)


def _probe_video(path: Path, role: str) -> MediaInfo:
    _check_file(path, role)
    info = probe(path, name=role)
    if info.main_video is None:
        raise InvalidMedia(f"{role}: no video stream")
    return info


def _check_file(path: Path, role: str) -> None:
    if not Path(path).is_absolute() or not Path(path).is_file():
        raise InvalidParameters(f"{role}: {path} is not an existing file (absolute path)")


def _check_cut(info: MediaInfo, cut: Cut) -> float:
    end = info.duration if cut.end is None else cut.end
    if cut.start < 0 or not math.isfinite(cut.start) or not math.isfinite(end):
        raise InvalidParameters(f"cut start {cut.start} must be a number >= 0")
    if end > info.duration + 0.001:
        raise InvalidParameters(
            f"cut end {end} is past the end of the media ({info.duration:.3f} s)"
        )
    if end - cut.start < MIN_CUT:
        raise InvalidParameters(f"cut {cut.start}..{end} leaves nothing to encode")
    return min(end, info.duration) - cut.start


def _cut_args(info: MediaInfo, cut: Cut, duration: float) -> list[str]:
    args = ["-ss", f"{cut.start:.3f}"] if cut.start > 0 else []
    if cut.start > 0 or duration < info.duration - 0.001:
        args += ["-t", f"{duration:.3f}"]
    return args


def _watermark(mark: Watermark, inputs: _Inputs, video: str, height: int) -> str:
    _check_file(mark.image, "watermark")
    try:
        with av.open(str(mark.image)) as container:
            if not container.streams.video:
                raise InvalidMedia("watermark: not an image")
    except av.FFmpegError:
        raise InvalidMedia("watermark: not an image ffmpeg can read") from None
    index = inputs.add(mark.image)
    logo_height = max(2, _even(height * WATERMARK_HEIGHT))
    margin = round(height * WATERMARK_MARGIN)
    x = f"{margin}" if mark.position.endswith("left") else f"W-w-{margin}"
    y = f"{margin}" if mark.position.startswith("top") else f"H-h-{margin}"
    return (
        f"[{index}:v:0]format=rgba,colorchannelmixer=aa={mark.opacity / 100:.3f},"
        f"scale=-1:{logo_height}[wm];"
        f"{video}[wm]overlay={x}:{y}:eof_action=repeat:format=auto,format=yuv420p[wmv]"
    )


def _credit(
    path: Path, role: str, inputs: _Inputs
) -> tuple[tuple[str, str | None, float], MediaInfo]:
    info = _probe_video(path, role)
    index = inputs.add(path)
    audio = f"[{index}:a:0]" if info.main_audio is not None else None
    return (f"[{index}:v:0]", audio, info.duration), info


def _fit(width: int, height: int, fps: float, duration: float) -> str:
    """Same size, pixel shape, frame rate and exact length for every concatenated segment."""
    return (
        f"fps={fps:.6f},scale={width}:{height}:force_original_aspect_ratio=decrease:"
        f"force_divisible_by=2,pad={width}:{height}:(ow-iw)/2:(oh-ih)/2,setsar=1,format=yuv420p,"
        f"tpad=stop_mode=clone:stop_duration={duration:.3f},trim=duration={duration:.3f},"
        "setpts=PTS-STARTPTS"
    )


def _segment_audio(source: str | None, duration: float, label: str) -> str:
    """The segment's sound, or silence, exactly as long as its picture: concat keeps sync."""
    length = f"{duration:.3f}"
    if source is None:
        return f"anullsrc=r={AUDIO_RATE}:cl=stereo,atrim=duration={length}{label}"
    return (
        f"{source}aresample={AUDIO_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo,"
        f"apad=whole_dur={length},atrim=duration={length},asetpts=PTS-STARTPTS{label}"
    )


def _described(
    main: MediaInfo,
    width: int,
    height: int,
    fps: float,
    duration: float,
    *,
    audio: AudioStreamInfo | None,
    stereo: bool = False,
) -> MediaInfo:
    video: VideoStreamInfo | None = main.main_video
    assert video is not None
    shown = replace(
        video,
        width=width,
        height=height,
        rotation=0,
        sample_aspect="1:1",
        fps=fps,
        variable_frame_rate=False,
        pix_fmt="yuv420p",
        bit_depth=8,
    )
    if audio is not None and stereo:
        audio = replace(audio, channels=2, sample_rate=AUDIO_RATE)
    heard = [] if audio is None else [audio]
    return replace(main, duration=duration, video=[shown], audio=heard, subtitles=[], pictures=[])


def _sane_fps(fps: float | None) -> float:
    return fps if fps is not None and 1.0 <= fps <= 120.0 else DEFAULT_FPS


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))

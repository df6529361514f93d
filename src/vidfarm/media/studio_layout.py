"""Pod's studio layouts: a presenter (camera) and a presentation (screen) in one picture.

Pod (`encoding_studio.py`) names three layouts: `mid` puts both side by side at the smaller
height, `piph` and `pipb` show the presentation full size with the presenter as a picture in
picture a quarter of its height, 10 px from the top right (`piph`) or bottom right (`pipb`)
corner. Sizes are computed here, not left to `scale=-2`, so the composed size is known before
ffmpeg runs. The composed stream ends with the shorter source (Pod's `shortest=1`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from vidfarm.errors import InvalidParameters
from vidfarm.media.probe import MediaInfo

PIP_SCALE = 4  # the presenter inset is 1/4 of the presentation's height
PIP_MARGIN = 10  # pixels, as Pod
DEFAULT_FPS = 25.0


class Layout(StrEnum):
    MID = "mid"
    PIPH = "piph"
    PIPB = "pipb"


@dataclass(frozen=True, kw_only=True)
class Studio:
    """Pod's `videos` of a studio recording: its presenter and/or presentation source."""

    presentation: Path | None = None
    presenter: Path | None = None
    layout: Layout = Layout.MID

    def __post_init__(self) -> None:
        if self.presentation is None and self.presenter is None:
            raise InvalidParameters("studio: no presenter/source nor presentation/source video")


@dataclass(frozen=True, kw_only=True)
class StudioGraph:
    graph: list[str]
    video: str
    audio: str | None
    width: int
    height: int
    fps: float
    duration: float
    info: MediaInfo  # the source whose description the composed stream starts from


#: role -> (ffmpeg input index, probed info, duration after the cut)
Sources = dict[str, tuple[int, MediaInfo, float]]


def studio_graph(layout: Layout, sources: Sources) -> StudioGraph:
    """The layout's filter chains; one source alone is shown as it is (Pod does the same)."""
    base = sources.get("presentation") or sources["presenter"]
    fps = _fps(base[1])
    duration = min(length for _, _, length in sources.values())
    audio_source = _loudest(sources)
    graph: list[str] = []
    audio = None
    if audio_source is not None:
        graph.append(
            f"[{audio_source}:a:0]apad=whole_dur={duration:.3f},atrim=duration={duration:.3f},"
            "asetpts=PTS-STARTPTS[sta]"
        )
        audio = "[sta]"
    if len(sources) == 1:
        index, info, _ = base
        width, height = _size(info, _height(info))
        graph.append(f"[{index}:v:0]{_prepare(fps, width, height)}[stv]")
        return StudioGraph(
            graph=graph, video="[stv]", audio=audio, width=width, height=height, fps=fps,
            duration=duration, info=info,
        )  # fmt: skip
    (slides, slides_info, _), (camera, camera_info, _) = (
        sources["presentation"],
        sources["presenter"],
    )
    if layout is Layout.MID:
        height = _even(min(_height(slides_info), _height(camera_info)))
        left, right = _size(slides_info, height), _size(camera_info, height)
        graph += [
            f"[{slides}:v:0]{_prepare(fps, *left)}[stl]",
            f"[{camera}:v:0]{_prepare(fps, *right)}[str]",
            "[stl][str]hstack=inputs=2:shortest=1[stv]",
        ]
        width = left[0] + right[0]
    else:
        width, height = _size(slides_info, _even(_height(slides_info)))
        inset = _size(camera_info, _even(height / PIP_SCALE))
        y = f"{PIP_MARGIN}" if layout is Layout.PIPH else f"H-h-{PIP_MARGIN}"
        graph += [
            f"[{slides}:v:0]{_prepare(fps, width, height)}[stb]",
            f"[{camera}:v:0]{_prepare(fps, *inset)}[stp]",
            f"[stb][stp]overlay=W-w-{PIP_MARGIN}:{y}:shortest=1[stv]",
        ]
    return StudioGraph(
        graph=graph, video="[stv]", audio=audio, width=width, height=height, fps=fps,
        duration=duration, info=slides_info,
    )  # fmt: skip


def _loudest(sources: Sources) -> int | None:
    """ffmpeg's own choice when Pod maps nothing: most channels, the presentation on a tie."""
    best: tuple[int, int] | None = None
    for role in ("presentation", "presenter"):
        if role not in sources:
            continue
        index, info, _ = sources[role]
        sound = info.main_audio
        if sound is not None and (best is None or sound.channels > best[1]):
            best = (index, sound.channels)
    return None if best is None else best[0]


def _prepare(fps: float, width: int, height: int) -> str:
    return f"fps={fps:.6f},scale={width}:{height},setsar=1,format=yuv420p"


def _height(info: MediaInfo) -> int:
    video = info.main_video
    assert video is not None
    return video.display_size[1]


def _size(info: MediaInfo, height: int) -> tuple[int, int]:
    video = info.main_video
    assert video is not None
    return _even(height * video.display_aspect), height


def _fps(info: MediaInfo) -> float:
    video = info.main_video
    fps = video.fps if video is not None else None
    # Browser recordings (WebM) often report absurd average rates: fall back to a usual one.
    return fps if fps is not None and 1.0 <= fps <= 60.0 else DEFAULT_FPS


def _even(value: float) -> int:
    return max(2, 2 * round(value / 2))

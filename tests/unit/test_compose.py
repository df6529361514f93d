"""Compositions (Pod's dressing and studio layouts) run through ffmpeg and read back."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from fixtures_media import MakeMedia, colour_clip, run_ffmpeg_cli
from readback import read_video
from vidfarm.errors import InvalidMedia, InvalidParameters
from vidfarm.media.compose import (
    ComposedGraph,
    Composition,
    Corner,
    Cut,
    Dressing,
    Layout,
    Studio,
    Watermark,
    compose,
    split_label,
)
from vidfarm.media.encode import encode
from vidfarm.media.profiles import Profile
from vidfarm.media.tools import ffmpeg_executable

BLACK, RED, BLUE, GREEN = (0, 0, 0), (255, 0, 0), (0, 0, 255), (0, 255, 0)
FRAME = 1 / 25


@pytest.fixture(scope="module")
def main_clip(make_media: MakeMedia) -> Path:
    """320x180 black, 3 s, a 440 Hz tone: a watermark shows, silence does not."""
    return colour_clip(make_media, "compose_main.mp4", "black", "320x180", 3, audio=True)


@pytest.fixture(scope="module")
def logo(make_media: MakeMedia) -> Path:
    """A 64x32 opaque red PNG with an alpha channel."""
    return make_media(
        "compose_logo.png", "-f", "lavfi", "-i", "color=c=red:s=64x32,format=rgba", "-frames:v", "1"
    )


@pytest.fixture(scope="module")
def opening(make_media: MakeMedia) -> Path:
    """1 s, 4:3, 30 fps, with sound: scaled, padded and resampled into the main's frame."""
    return make_media(
        "compose_opening.mp4",
        *("-f", "lavfi", "-i", "testsrc2=s=160x120:r=30:d=1"),
        *("-f", "lavfi", "-i", "sine=f=880:sample_rate=48000:d=1"),
        *("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac"),
        "-shortest",
    )


@pytest.fixture(scope="module")
def silent_ending(make_media: MakeMedia) -> Path:
    """1 s with no audio stream: it must get 1 s of silence, or the sound would drift."""
    return colour_clip(make_media, "compose_ending.mp4", "white", "320x180", 1, audio=False)


def render(composed: ComposedGraph, out: Path) -> Path:
    """Encode the composed labels to a small MP4, as the ladder would consume them."""
    args = [*composed.inputs, "-filter_complex", composed.graph, "-map", composed.video]
    if composed.audio is not None:
        args += ["-map", composed.audio, "-c:a", "aac"]
    run_ffmpeg_cli(*args, "-c:v", "libx264", "-preset", "ultrafast", str(out))
    return out


def audio_span(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        ends = [
            float((p.pts + p.duration) * stream.time_base)
            for p in container.demux(stream)
            if p.pts is not None and p.duration
        ]
    return max(ends)


def loudness(path: Path, start: float, end: float) -> float:
    """RMS of the decoded sound between two output times."""
    samples: list[np.ndarray] = []
    with av.open(str(path)) as container:
        for frame in container.decode(audio=0):
            at = float(frame.pts * frame.time_base)
            if start <= at and at + frame.samples / frame.sample_rate <= end:
                samples.append(frame.to_ndarray().astype(np.float64).ravel())
    assert samples, f"no audio between {start} and {end}"
    return float(np.sqrt(np.mean(np.concatenate(samples) ** 2)))


def picture(path: Path, at: float) -> np.ndarray:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if frame.time is not None and frame.time >= at:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError(f"no frame at {at} s")


def near(pixel: np.ndarray, colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    return bool(np.all(np.abs(pixel.astype(int) - np.array(colour)) <= tolerance))


def test_dressing_runs_credits_watermark_and_keeps_the_sound_in_sync(
    main_clip: Path, logo: Path, opening: Path, silent_ending: Path, tmp_path: Path
) -> None:
    dressing = Dressing(
        watermark=Watermark(image=logo, position=Corner.TOP_RIGHT, opacity=100),
        opening=opening,
        ending=silent_ending,
    )
    composed = compose(Composition(main=main_clip, dressing=dressing))
    assert composed.duration == pytest.approx(5.0, abs=FRAME)
    assert all(arg.startswith("file:/") for arg in composed.inputs[1::2])
    out = render(composed, tmp_path / "dressed.mp4")

    video = read_video(out)
    assert (video.width, video.height) == (320, 180)
    assert video.duration == pytest.approx(5.0, abs=FRAME)
    assert audio_span(out) == pytest.approx(video.duration, abs=0.05)
    # The main's tone ends where its picture ends; the silent ending is silent, not shifted.
    assert loudness(out, 3.4, 3.95) > 0.03  # lavfi sine: amplitude 1/8
    assert loudness(out, 4.1, 4.9) < 0.001
    assert loudness(out, 0.05, 0.95) > 0.03  # the opening's own sound

    frame = picture(out, 2.5)  # inside the main: logo 18 px high, 9 px from the corner
    assert near(frame[18, 320 - 9 - 18], RED)
    assert near(frame[18, 9 + 18], BLACK)
    assert near(frame[180 - 18, 320 - 9 - 18], BLACK)
    assert not near(picture(out, 0.5)[18, 320 - 9 - 18], RED)  # credits carry no watermark
    ending = picture(out, 4.5)
    assert near(ending[90, 160], (255, 255, 255))


@pytest.mark.parametrize(
    ("corner", "row", "column"),
    [
        (Corner.TOP_LEFT, 18, 27),
        (Corner.TOP_RIGHT, 18, 293),
        (Corner.BOTTOM_LEFT, 162, 27),
        (Corner.BOTTOM_RIGHT, 162, 293),
    ],
)
def test_watermark_goes_to_the_corner_pod_names(
    main_clip: Path, logo: Path, tmp_path: Path, corner: Corner, row: int, column: int
) -> None:
    mark = Watermark(image=logo, position=corner)
    composed = compose(Composition(main=main_clip, dressing=Dressing(watermark=mark)))
    assert composed.duration == pytest.approx(3.0, abs=FRAME)
    frame = picture(render(composed, tmp_path / "wm.mp4"), 1.0)
    assert near(frame[row, column], RED)
    assert near(frame[180 - row, 320 - column], BLACK)  # the opposite corner is untouched


def test_watermark_opacity_blends_with_the_picture(
    main_clip: Path, logo: Path, tmp_path: Path
) -> None:
    mark = Watermark(image=logo, position=Corner.TOP_LEFT, opacity=50)
    composed = compose(Composition(main=main_clip, dressing=Dressing(watermark=mark)))
    red = picture(render(composed, tmp_path / "half.mp4"), 1.0)[18, 27]
    assert 90 <= red[0] <= 170 and red[1] < 40


def test_cut_applies_to_the_main_video_only(main_clip: Path, opening: Path, tmp_path: Path) -> None:
    composition = Composition(
        main=main_clip, cut=Cut(start=0.5, end=2.5), dressing=Dressing(opening=opening)
    )
    out = render(compose(composition), tmp_path / "cut.mp4")
    video = read_video(out)
    assert video.duration == pytest.approx(3.0, abs=FRAME)
    assert audio_span(out) == pytest.approx(video.duration, abs=0.05)


def test_a_1080p_main_gets_pods_watermark_geometry(make_media: MakeMedia, tmp_path: Path) -> None:
    main = colour_clip(make_media, "compose_1080.mp4", "black", "1920x1080", 2, audio=True)
    logo = make_media(
        "compose_logo_wide.png", "-f", "lavfi", "-i", "color=c=red:s=200x100", "-frames:v", "1"
    )
    mark = Watermark(image=logo, position=Corner.BOTTOM_RIGHT)
    composed = compose(Composition(main=main, dressing=Dressing(watermark=mark)))
    out = render(composed, tmp_path / "hd.mp4")
    assert (read_video(out).width, read_video(out).height) == (1920, 1080)
    frame = picture(out, 1.0)
    # 108 px high, 216 wide, 54 px (5 % of 1080) from the right and bottom edges.
    assert near(frame[1080 - 54 - 5, 1920 - 54 - 5], RED)
    assert near(frame[1080 - 54 - 100, 1920 - 54 - 210], RED)
    assert near(frame[1080 - 54 + 5, 1920 - 54 + 5], BLACK)
    assert near(frame[1080 - 54 - 115, 1920 - 54 - 5], BLACK)


@pytest.fixture(scope="module")
def presentation(make_media: MakeMedia) -> Path:
    return colour_clip(make_media, "compose_slides.mp4", "blue", "320x180", 3, audio=False)


@pytest.fixture(scope="module")
def presenter(make_media: MakeMedia) -> Path:
    return colour_clip(make_media, "compose_camera.mp4", "lime", "160x120", 3, audio=True)


def test_studio_mid_puts_both_sources_side_by_side(
    presentation: Path, presenter: Path, tmp_path: Path
) -> None:
    studio = Studio(presentation=presentation, presenter=presenter, layout=Layout.MID)
    composed = compose(Composition(main=studio))
    out = render(composed, tmp_path / "mid.mp4")
    video = read_video(out)
    # Both at the smaller height (120): 16:9 -> 214 wide, 4:3 -> 160 wide.
    assert (video.width, video.height) == (composed.width, composed.height) == (374, 120)
    frame = picture(out, 1.0)
    assert near(frame[60, 100], BLUE) and near(frame[60, 300], GREEN)
    assert audio_span(out) == pytest.approx(video.duration, abs=0.05)  # the presenter's sound


@pytest.mark.parametrize(("layout", "row"), [(Layout.PIPH, 10 + 23), (Layout.PIPB, 180 - 10 - 23)])
def test_studio_picture_in_picture_insets_the_presenter(
    presentation: Path, presenter: Path, tmp_path: Path, layout: Layout, row: int
) -> None:
    studio = Studio(presentation=presentation, presenter=presenter, layout=layout)
    out = render(compose(Composition(main=studio)), tmp_path / "pip.mp4")
    video = read_video(out)
    assert (video.width, video.height) == (320, 180)
    frame = picture(out, 1.0)
    # The inset is 46 px high (a quarter, even), 62 wide, 10 px from the right edge.
    assert near(frame[row, 320 - 10 - 31], GREEN)
    assert near(frame[180 - row, 320 - 10 - 31], BLUE)
    assert near(frame[90, 100], BLUE)


def test_studio_subtime_cuts_both_sources_then_credits_follow(
    presentation: Path, presenter: Path, silent_ending: Path, tmp_path: Path
) -> None:
    studio = Studio(presentation=presentation, presenter=presenter, layout=Layout.PIPB)
    composition = Composition(
        main=studio, cut=Cut(start=0.5, end=2.5), dressing=Dressing(ending=silent_ending)
    )
    composed = compose(composition)
    out = render(composed, tmp_path / "studio_cut.mp4")
    video = read_video(out)
    assert video.duration == pytest.approx(3.0, abs=FRAME)
    assert (video.width, video.height) == (320, 180)
    assert audio_span(out) == pytest.approx(video.duration, abs=0.05)
    assert loudness(out, 2.1, 2.9) < 0.001
    assert loudness(out, 0.5, 1.5) > 0.03


def test_the_composed_labels_feed_a_split_in_the_same_pass(
    main_clip: Path, opening: Path, tmp_path: Path
) -> None:
    composed = compose(Composition(main=main_clip, dressing=Dressing(opening=opening)))
    assert composed.audio is not None
    video_split, videos = split_label(composed.video, 2, audio=False, prefix="b")
    audio_split, audios = split_label(composed.audio, 2, audio=True, prefix="ab")
    graph = ";".join([composed.graph, video_split, audio_split, f"{videos[1]}scale=160:90[small]"])
    args = [*composed.inputs, "-filter_complex", graph, "-c:v", "libx264", "-preset", "ultrafast"]
    big, small = tmp_path / "big.mp4", tmp_path / "small.mp4"
    args += ["-map", videos[0], "-map", audios[0], str(big)]
    args += ["-map", "[small]", "-map", audios[1], str(small)]
    run_ffmpeg_cli(*args)
    assert (read_video(big).width, read_video(small).width) == (320, 160)
    assert read_video(small).duration == pytest.approx(4.0, abs=FRAME)


def test_inputs_are_refused_before_ffmpeg_runs(main_clip: Path, logo: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.mp4"
    with pytest.raises(InvalidParameters, match=r"opening credits: .* not an existing file"):
        compose(Composition(main=main_clip, dressing=Dressing(opening=missing)))
    with pytest.raises(InvalidMedia, match="ending credits"):
        compose(Composition(main=main_clip, dressing=Dressing(ending=logo)))  # a still image
    with pytest.raises(InvalidParameters, match="past the end"):
        compose(Composition(main=main_clip, cut=Cut(start=1, end=9)))
    with pytest.raises(InvalidParameters, match="opacity"):
        Watermark(image=logo, opacity=101)
    with pytest.raises(InvalidParameters, match="studio"):
        Studio()


def test_ffmpeg_never_sees_a_shell_string(main_clip: Path, logo: Path) -> None:
    dressing = Dressing(watermark=Watermark(image=logo))
    composed = compose(Composition(main=main_clip, dressing=dressing))
    assert composed.inputs == [
        "-i",
        f"file:{main_clip.resolve()}",
        "-i",
        f"file:{logo.resolve()}",
    ]


def test_encode_runs_the_ladder_on_the_composed_stream_in_one_pass(
    main_clip: Path, opening: Path, logo: Path, fast_profile: Profile, tmp_path: Path
) -> None:
    dressing = Dressing(watermark=Watermark(image=logo), opening=opening)
    composition = Composition(main=main_clip, cut=Cut(start=1.0), dressing=dressing)
    result = encode(
        main_clip, tmp_path / "out", profile=fast_profile, ffmpeg=ffmpeg_executable(),
        composition=composition, formats=["mp4"],
    )  # fmt: skip
    videos = [o["path"] for o in result.manifest["outputs"] if o["path"].endswith(".mp4")]
    assert videos
    for name in videos:
        out = tmp_path / "out" / name
        assert read_video(out).duration == pytest.approx(3.0, abs=FRAME)  # 1 + (3 - 1)
        assert audio_span(out) == pytest.approx(3.0, abs=0.05)
    top = tmp_path / "out" / videos[-1]
    assert near(picture(top, 2.0)[18, 320 - 9 - 18], RED)
    with pytest.raises(InvalidParameters, match="belongs to the composition"):
        encode(
            main_clip, tmp_path / "again", profile=fast_profile, ffmpeg=ffmpeg_executable(),
            composition=composition, start=1.0,
        )  # fmt: skip


def test_encode_a_studio_whose_sound_is_the_presenters(
    presentation: Path, presenter: Path, fast_profile: Profile, tmp_path: Path
) -> None:
    """The presentation (the picture's base) is silent: the encode must still carry the
    presenter's sound (the composed stream's description used to say "no audio", and the
    composed audio label was left unconnected: ffmpeg refused the graph)."""
    studio = Studio(presentation=presentation, presenter=presenter, layout=Layout.PIPB)
    result = encode(
        presentation, tmp_path / "out", profile=fast_profile, ffmpeg=ffmpeg_executable(),
        composition=Composition(main=studio, cut=Cut(start=0.5)), formats=["mp4"],
    )  # fmt: skip
    out = tmp_path / "out" / "360p.mp4"
    assert read_video(out).duration == pytest.approx(2.5, abs=FRAME)
    assert audio_span(out) == pytest.approx(2.5, abs=0.05)
    assert result.manifest["source"]["audio"]

"""Ladder planning: pure rules, checked on described sources."""

from __future__ import annotations

import pytest

from vidfarm.errors import ConfigError, InvalidParameters
from vidfarm.media.ladder import output_fps, plan_ladder
from vidfarm.media.probe import AudioStreamInfo, MediaInfo, VideoStreamInfo
from vidfarm.media.profiles import Profile, load_profile, load_profile_file, parse_bitrate


def media(
    width: int, height: int, *, fps: float = 25.0, rotation: int = 0, sar: str = "1:1"
) -> MediaInfo:
    return MediaInfo(
        path="x.mp4",
        container="mov,mp4",
        duration=10.0,
        size=1,
        bitrate=None,
        video=[
            VideoStreamInfo(
                index=0,
                codec="h264",
                width=width,
                height=height,
                rotation=rotation,
                sample_aspect=sar,
                fps=fps,
                variable_frame_rate=False,
                pix_fmt="yuv420p",
                bit_depth=8,
                bitrate=None,
                interlaced=False,
            )
        ],
        audio=[AudioStreamInfo(index=1, codec="aac", channels=2, sample_rate=48000, bitrate=None)],
    )


@pytest.fixture
def pod() -> Profile:
    return load_profile("default")


def sizes(info: MediaInfo, profile: Profile) -> list[tuple[str, int, int]]:
    return [(r.name, r.width, r.height) for r in plan_ladder(info, profile).renditions]


def test_pod_default_ladder_values(pod: Profile) -> None:
    ladder = [
        (r.height, r.video_bitrate, r.max_video_bitrate, r.audio_bitrate, r.mp4) for r in pod.ladder
    ]
    assert ladder == [
        (360, 750_000, 1_000_000, 96_000, True),
        (720, 2_000_000, 3_000_000, 128_000, True),
        (1080, 3_000_000, 4_500_000, 192_000, False),
    ]


def test_full_ladder_for_1080p(pod: Profile) -> None:
    assert sizes(media(1920, 1080), pod) == [
        ("360p", 640, 360),
        ("720p", 1280, 720),
        ("1080p", 1920, 1080),
    ]


def test_never_upscales_and_keeps_the_lowest(pod: Profile) -> None:
    assert sizes(media(1280, 720), pod) == [("360p", 640, 360), ("720p", 1280, 720)]
    # Smaller than the lowest rendition: made anyway, at the source size.
    assert sizes(media(320, 180), pod) == [("360p", 320, 180)]


def test_odd_dimensions_become_even(pod: Profile) -> None:
    # Pod's rule: 719 lines are not enough for 720p unless the threshold allows it.
    assert sizes(media(1279, 719), pod) == [("360p", 640, 360)]
    lenient = pod.model_copy(update={"threshold": 1})
    assert sizes(media(1279, 719), lenient) == [("360p", 640, 360), ("720p", 1278, 718)]
    assert sizes(media(333, 187), pod) == [("360p", 332, 186)]


def test_portrait_and_rotated_use_the_short_side(pod: Profile) -> None:
    portrait = sizes(media(1080, 1920), pod)
    assert portrait == [("360p", 360, 640), ("720p", 720, 1280), ("1080p", 1080, 1920)]
    # A phone video stored landscape with a 90 degree display rotation is portrait.
    assert sizes(media(1920, 1080, rotation=90), pod) == portrait


def test_anamorphic_source_gets_square_pixels(pod: Profile) -> None:
    # DV widescreen: 720x576 stored, 64:45 pixels -> shown as 1024x576.
    assert sizes(media(720, 576, sar="64:45"), pod) == [("360p", 640, 360)]


def test_threshold_admits_a_nearly_big_enough_source(pod: Profile) -> None:
    lenient = pod.model_copy(update={"threshold": 10})
    assert [r.name for r in plan_ladder(media(1280, 700), pod).renditions] == ["360p"]
    plan = plan_ladder(media(1244, 700), lenient).renditions
    assert [(r.name, r.height) for r in plan] == [("360p", 360), ("720p", 700)]


@pytest.mark.parametrize(
    ("source", "expected"),
    [(25.0, None), (60.0, None), (59.94, None), (120.0, 60.0), (100.0, 50.0), (240.0, 60.0)],
)
def test_frame_rate_cap_divides_evenly(source: float, expected: float | None) -> None:
    assert output_fps(source, 60.0) == expected


def test_gop_matches_keyframe_interval(pod: Profile) -> None:
    assert plan_ladder(media(1280, 720, fps=30), pod).gop_frames == 60
    ladder = plan_ladder(media(1280, 720, fps=120), pod)
    assert (ladder.fps, ladder.gop_frames) == (60.0, 120)


def test_bitrate_parsing() -> None:
    assert parse_bitrate("750k") == 750_000
    assert parse_bitrate("4.5M") == 4_500_000
    with pytest.raises(ValueError):
        parse_bitrate("fast")


def test_user_profile_overrides_and_validates(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "small.toml").write_text(
        'preset = "veryfast"\nsegment_duration = 6\nkeyframe_interval = 2\n'
        '[[renditions]]\nheight = 240\nmin_video_bitrate = "200k"\nvideo_bitrate = "300k"\n'
        'max_video_bitrate = "400k"\naudio_bitrate = "64k"\nmp4 = true\n'
    )
    profile = load_profile("small", tmp_path)
    assert (profile.name, profile.preset, profile.ladder[0].height) == ("small", "veryfast", 240)
    (tmp_path / "bad.toml").write_text(
        "segment_duration = 5\nkeyframe_interval = 2\nrenditions = []\n"
    )
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_profile_file(tmp_path / "bad.toml")
    with pytest.raises(InvalidParameters, match="unknown profile 'nope'"):
        load_profile("nope", tmp_path)
    with pytest.raises(InvalidParameters):
        load_profile("../etc/passwd", tmp_path)

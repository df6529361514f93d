"""Tiny media made at test time with ffmpeg's lavfi sources, cached for the session."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from vidfarm.media.profiles import Profile, load_profile
from vidfarm.media.tools import ffmpeg_executable

MakeMedia = Callable[..., Path]


def run_ffmpeg_cli(*args: str) -> None:
    subprocess.run(
        [ffmpeg_executable(), "-hide_banner", "-loglevel", "error", "-y", *args],
        check=True,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def make_media(media_dir: Path) -> MakeMedia:
    """make_media(name, *ffmpeg_args) -> path, generated once per session."""

    def make(name: str, *args: str) -> Path:
        target = media_dir / name
        if not target.exists():
            run_ffmpeg_cli(*args, str(target))
        return target

    return make


def video_args(
    size: str = "320x180",
    rate: float = 25,
    duration: float = 2.0,
    *,
    audio: bool = True,
    extra: tuple[str, ...] = (),
) -> tuple[str, ...]:
    args: tuple[str, ...] = ("-f", "lavfi", "-i", f"testsrc2=s={size}:r={rate}:d={duration}")
    if audio:
        args += ("-f", "lavfi", "-i", f"sine=f=440:sample_rate=44100:d={duration}")
    args += ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", *extra)
    if audio:
        args += ("-c:a", "aac", "-shortest")
    return args


@pytest.fixture(scope="session")
def small_clip(make_media: MakeMedia) -> Path:
    """320x180, 25 fps, 2 s, with audio: the cheapest real input."""
    return make_media("small.mp4", *video_args())


@pytest.fixture(scope="session")
def hd_clip(make_media: MakeMedia) -> Path:
    """1920x1080, 30 fps, 12 s, with audio: a three-rendition ladder and an overview sprite."""
    return make_media("hd.mp4", *video_args("1920x1080", 30, 12.0))


@pytest.fixture(scope="session")
def fast_profile() -> Profile:
    """Pod's ladder with the fastest x264 preset: tests check structure, not quality."""
    return load_profile("default").model_copy(update={"preset": "ultrafast"})


#: Sentences espeak-ng reads (voice en-us+f2, 130 words per minute, 80 ms between words).
SENTENCES = [
    "please open the door and close the window",
    "the students read the book in the library",
    "the children played football in the park",
    "it is raining so take your umbrella",
]
REFERENCE = " ".join(SENTENCES)
#: Measured 0.23 on this clip, 0.37 on a 10-sentence set, >= 0.97 for a broken pipeline
#: (8 kHz or big-endian PCM); see docs/transcription.md.
MAX_WER = 0.45


@pytest.fixture(scope="session")
def espeak() -> str:
    found = shutil.which("espeak-ng")
    if found is None:
        reason = "espeak-ng is not installed (apt-get install -y espeak-ng)"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; CI is set: the speech tests are required")
        pytest.skip(reason)
    return found


@pytest.fixture(scope="session")
def speech_clip(espeak: str, media_dir: Path) -> Path:
    """A video (test pattern) whose audio track is espeak-ng reading SENTENCES.

    The audio is lossless (FLAC) so that the word error rate does not depend on the AAC
    encoder of whichever ffmpeg the machine has.
    """
    target = media_dir / "speech.mkv"
    if not target.exists():
        wav = media_dir / "speech.wav"
        subprocess.run(
            [
                espeak,
                "-v",
                "en-us+f2",
                "-s",
                "130",
                "-g",
                "8",
                "-w",
                str(wav),
                ". ".join(SENTENCES),
            ],
            check=True,
        )
        run_ffmpeg_cli(
            "-f", "lavfi", "-i", "testsrc2=s=160x90:r=10", "-i", str(wav),
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-c:a", "flac", "-shortest", str(target),
        )  # fmt: skip
    return target


#: Esup-Pod's ladder (360p and 720p HLS + MP4, 1080p HLS only) at the cheapest preset, for
#: tests that check Pod's files and players, not x264.
POD_LADDER_PROFILE = """\
preset = "ultrafast"
keyframe_interval = 2
segment_duration = 2
[[renditions]]
height = 360
min_video_bitrate = "500k"
video_bitrate = "750k"
max_video_bitrate = "1000k"
audio_bitrate = "96k"
mp4 = true
[[renditions]]
height = 720
min_video_bitrate = "1000k"
video_bitrate = "2000k"
max_video_bitrate = "3000k"
audio_bitrate = "128k"
mp4 = true
[[renditions]]
height = 1080
min_video_bitrate = "2000k"
video_bitrate = "3000k"
max_video_bitrate = "4500k"
audio_bitrate = "192k"
"""


def colour_clip(
    make_media: MakeMedia, name: str, colour: str, size: str, duration: float, *, audio: bool
) -> Path:
    """A clip of one flat colour (pixel checks read it back), with a tone when `audio`."""
    args: tuple[str, ...] = ("-f", "lavfi", "-i", f"color=c={colour}:s={size}:r=25:d={duration}")
    if audio:
        args += ("-f", "lavfi", "-i", f"sine=f=440:sample_rate=44100:d={duration}")
    args += ("-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p")
    if audio:
        args += ("-c:a", "aac", "-shortest")
    return make_media(name, *args)

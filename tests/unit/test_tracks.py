"""Every track of the source reaches the viewer: embedded subtitles and audio tracks are
listed in the HLS master (EXT-X-MEDIA) and read back from what the master points at."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import m3u8
import pytest

import webvtt_check
from fixtures_media import MakeMedia, run_ffmpeg_cli, video_args
from vidfarm.media.encode import EncodeResult, encode
from vidfarm.media.profiles import Profile
from vidfarm.media.tools import ffmpeg_executable
from vidfarm.transcribe.hls import add_subtitles

SRT_FR = (
    "1\n00:00:00,200 --> 00:00:01,000\nBonjour\n\n2\n00:00:01,500 --> 00:00:02,500\nAu revoir\n"
)
SRT_EN = "1\n00:00:00,300 --> 00:00:01,200\nHello\n"


@pytest.fixture(scope="module")
def multitrack(make_media: MakeMedia, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An MKV with two audio tracks (English; French audio description) and two subtitles."""
    folder = tmp_path_factory.mktemp("multitrack")
    base = make_media("multi-base.mp4", *video_args("640x360", 25, 3.0))
    second = make_media(
        "second-audio.m4a", "-f", "lavfi", "-i", "sine=f=880:sample_rate=48000:d=3", "-c:a", "aac"
    )
    (folder / "fr.srt").write_text(SRT_FR)
    (folder / "en.srt").write_text(SRT_EN)
    source = folder / "multitrack.mkv"
    run_ffmpeg_cli(
        "-i", str(base), "-i", str(second), "-i", str(folder / "fr.srt"),
        "-i", str(folder / "en.srt"),
        "-map", "0:v", "-map", "0:a", "-map", "1:a", "-map", "2", "-map", "3",
        "-c", "copy", "-c:s", "srt",
        "-metadata:s:a:0", "language=eng",
        "-metadata:s:a:1", "language=fra", "-metadata:s:a:1", "title=Audio description",
        "-metadata:s:s:0", "language=fra", "-metadata:s:s:1", "language=eng",
        str(source),
    )  # fmt: skip
    return source


@pytest.fixture(scope="module")
def multitrack_encode(
    multitrack: Path, fast_profile: Profile, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, EncodeResult]:
    out = tmp_path_factory.mktemp("multi") / "out"
    return out, encode(multitrack, out, profile=fast_profile, ffmpeg=ffmpeg_executable())


def media_of(out: Path, kind: str) -> list[Any]:
    master = m3u8.load(str(out / "master.m3u8"))
    return [m for m in master.media if m.type == kind]


def test_embedded_subtitles_are_a_subtitles_group_of_the_master(multitrack_encode) -> None:  # type: ignore[no-untyped-def]
    out, result = multitrack_encode
    subtitles = media_of(out, "SUBTITLES")
    assert [(m.language, m.name, m.group_id) for m in subtitles] == [
        ("fr", "Français", "subs"),
        ("en", "English", "subs"),
    ]
    master = m3u8.load(str(out / "master.m3u8"))
    assert all(p.stream_info.subtitles == "subs" for p in master.playlists)
    cues = {}
    for media in subtitles:
        playlist = m3u8.load(str(out / media.uri))
        assert playlist.playlist_type == "vod" and playlist.is_endlist
        [segment] = playlist.segments
        assert segment.duration == pytest.approx(3.0, abs=0.05)
        cues[media.language] = webvtt_check.cues(out / segment.uri)
    assert cues["fr"] == [
        ("00:00:00.200", "00:00:01.000", "Bonjour"),
        ("00:00:01.500", "00:00:02.500", "Au revoir"),
    ]
    assert cues["en"] == [("00:00:00.300", "00:00:01.200", "Hello")]
    listed = {e["path"] for e in result.manifest["outputs"] if e["kind"] == "subtitle-playlist"}
    assert listed == {m.uri for m in subtitles}


def test_served_master_adds_transcriptions_beside_embedded_subtitles(multitrack_encode) -> None:  # type: ignore[no-untyped-def]
    """The API adds transcriptions to the stored master (same group): both stay listed."""
    out, _ = multitrack_encode
    served = add_subtitles((out / "master.m3u8").read_text(), "../job/subtitle_de.m3u8", "de")
    master = m3u8.loads(served)
    languages = [m.language for m in master.media if m.type == "SUBTITLES"]
    assert sorted(languages) == ["de", "en", "fr"]
    assert all(p.stream_info.subtitles == "subs" for p in master.playlists)

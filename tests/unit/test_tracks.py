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
from vidfarm.media.subtitles import add_subtitles
from vidfarm.media.tools import ffmpeg_executable

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


def audio_streams(path: Path) -> list[tuple[str | None, float]]:
    """(language tag, duration) of every audio stream of a file, read by demuxing."""
    import av

    found = []
    with av.open(str(path)) as container:
        for stream in container.streams.audio:
            packets = [p for p in container.demux(stream) if p.pts is not None]
            times = [float(p.pts * stream.time_base) for p in packets]
            container.seek(0)
            found.append((stream.metadata.get("language"), max(times) - min(times)))
    return found


def test_every_audio_track_is_an_alternate_rendition_and_in_the_mp4s(multitrack_encode) -> None:  # type: ignore[no-untyped-def]
    out, result = multitrack_encode
    audio = media_of(out, "AUDIO")
    assert [(m.language, m.name, m.default, m.uri) for m in audio] == [
        ("en", "English", "YES", None),  # carried inside the variants
        ("fr", "Audio description", "NO", "audio-track-1.m3u8"),
    ]
    master = m3u8.load(str(out / "master.m3u8"))
    assert all(p.stream_info.audio == "audio" for p in master.playlists)
    alternate = m3u8.load(str(out / "audio-track-1.m3u8"))
    assert sum(s.duration for s in alternate.segments) == pytest.approx(3.0, abs=0.05)
    segment = out / alternate.segments[0].uri
    assert [lang for lang, _ in audio_streams(segment)] == ["fra"]  # one audio stream
    # The alternate is the 880 Hz track, not a copy of the first one.
    import av
    import numpy as np

    def pitch(path: Path, index: int) -> float:
        with av.open(str(path)) as container:
            samples = np.concatenate(
                [f.to_ndarray()[0] for f in container.decode(container.streams.audio[index])]
            )
        spectrum = np.abs(np.fft.rfft(samples[:48000]))
        return float(np.argmax(spectrum[1:]) + 1) * 48000 / min(len(samples), 48000)

    assert pitch(segment, 0) == pytest.approx(880, rel=0.02)
    variant_segment = out / m3u8.load(str(out / "360p.m3u8")).segments[0].uri
    assert len(audio_streams(variant_segment)) == 1  # the variant TS keeps only the first
    assert pitch(variant_segment, 0) == pytest.approx(440, rel=0.02)
    mp4 = audio_streams(out / "360p.mp4")
    assert [lang for lang, _ in mp4] == ["eng", "fra"]
    assert all(duration == pytest.approx(3.0, abs=0.1) for _, duration in mp4)
    assert pitch(out / "360p.mp4", 1) == pytest.approx(880, rel=0.02)
    # BANDWIDTH covers the variant plus the alternate a player fetches beside it.
    kinds = {e["path"]: e for e in result.manifest["outputs"]}
    assert kinds["audio-track-1.m3u8"]["kind"] == "hls_audio"
    assert result.manifest["dropped"] == []


def test_what_cannot_be_carried_is_listed(
    make_media: MakeMedia, fast_profile: Profile, tmp_path: Path
) -> None:
    """An audio-only source keeps its first track only, and says so."""
    source = make_media(
        "two-audio.mka",
        "-f", "lavfi", "-i", "sine=f=440:d=2", "-f", "lavfi", "-i", "sine=f=880:d=2",
        "-map", "0", "-map", "1", "-c:a", "aac", "-metadata:s:a:1", "language=fra",
    )  # fmt: skip
    result = encode(source, tmp_path / "out", profile=fast_profile, ffmpeg=ffmpeg_executable())
    assert result.manifest["dropped"] == [
        "audio stream 1 (fra): only the first audio track is kept in an audio-only encode"
    ]

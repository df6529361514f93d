"""Awkward and bad inputs: each gives correct outputs or one clear permanent error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import webvtt_check
from fixtures_media import MakeMedia, run_ffmpeg_cli, video_args
from readback import audio_codec, image_size, read_video
from vidfarm.errors import InvalidMedia
from vidfarm.media.encode import EncodeResult, encode
from vidfarm.media.probe import probe
from vidfarm.media.profiles import Profile
from vidfarm.media.tools import ffmpeg_executable


def run_encode(source: Path, out: Path, profile: Profile) -> EncodeResult:
    return encode(source, out, profile=profile, ffmpeg=ffmpeg_executable())


def kinds(result: EncodeResult) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in result.manifest["outputs"]:
        found.setdefault(entry["kind"], []).append(entry)
    return found


def test_odd_dimensions(make_media: MakeMedia, fast_profile: Profile, tmp_path: Path) -> None:
    source = make_media("odd.mp4", *video_args("1279x719", extra=("-pix_fmt", "yuv444p")))
    result = run_encode(source, tmp_path / "out", fast_profile)
    track = read_video(*sorted((tmp_path / "out").glob("360p_*.ts")))
    assert (track.width, track.height) == (640, 360)
    assert [e["path"] for e in kinds(result)["hls_variant"]] == ["360p.m3u8"]


def test_rotated_phone_video_is_portrait(
    make_media: MakeMedia, fast_profile: Profile, tmp_path: Path
) -> None:
    base = make_media("landscape.mp4", *video_args("640x360"))
    source = make_media("phone.mp4", "-display_rotation", "90", "-i", str(base), "-c", "copy")
    assert probe(source).main_video.display_size == (360, 640)  # type: ignore[union-attr]
    run_encode(source, tmp_path / "out", fast_profile)
    track = read_video(tmp_path / "out" / "360p.mp4")
    assert (track.width, track.height) == (360, 640)
    assert image_size(tmp_path / "out" / "thumbnail_2.jpg") == (360, 640)


def test_variable_frame_rate(make_media: MakeMedia, fast_profile: Profile, tmp_path: Path) -> None:
    source = make_media(
        "vfr.mp4",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=320x240:r=30:d=5,setpts='N/30/TB+if(gte(N,60),0.5/TB,0)'",
        "-fps_mode",
        "vfr",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
    )
    info = probe(source)
    assert info.main_video and info.main_video.variable_frame_rate
    run_encode(source, tmp_path / "out", fast_profile)
    track = read_video(tmp_path / "out" / "360p.mp4")
    assert track.frames == 150  # no frame invented or dropped
    assert track.duration == pytest.approx(info.duration, abs=0.05)


def test_ten_bit_source_becomes_eight_bit(
    make_media: MakeMedia, fast_profile: Profile, tmp_path: Path
) -> None:
    source = make_media("ten.mp4", *video_args(extra=("-pix_fmt", "yuv420p10le")))
    assert probe(source).main_video.bit_depth == 10  # type: ignore[union-attr]
    run_encode(source, tmp_path / "out", fast_profile)
    import av

    with av.open(str(tmp_path / "out" / "360p.mp4")) as container:
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p"


def test_interlaced_source_is_deinterlaced(
    make_media: MakeMedia, fast_profile: Profile, tmp_path: Path
) -> None:
    source = make_media(
        "interlaced.mp4",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=720x576:r=50:d=2,interlace",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-flags",
        "+ildct+ilme",
    )
    assert probe(source).main_video.interlaced  # type: ignore[union-attr]
    run_encode(source, tmp_path / "out", fast_profile)
    import av

    with av.open(str(tmp_path / "out" / "360p.mp4")) as container:
        assert container.streams.video[0].codec_context.field_order in (0, 1)  # progressive
    assert read_video(tmp_path / "out" / "360p.mp4").frames == 50


def test_interlaced_source_at_field_rate(
    make_media: MakeMedia, fast_profile: Profile, tmp_path: Path
) -> None:
    """deinterlace = "field": 25i becomes 50p, one picture per field, in every output."""
    import av
    import m3u8

    source = make_media(
        "interlaced.mp4",
        "-f", "lavfi", "-i", "testsrc2=s=720x576:r=50:d=2,interlace",
        "-c:v", "libx264", "-preset", "ultrafast", "-flags", "+ildct+ilme",
    )  # fmt: skip
    profile = fast_profile.model_copy(update={"deinterlace": "field"})
    run_encode(source, tmp_path / "out", profile)
    mp4 = tmp_path / "out" / "360p.mp4"
    with av.open(str(mp4)) as container:
        assert container.streams.video[0].codec_context.field_order in (0, 1)  # progressive
    track = read_video(mp4)
    assert track.frames == 100 and track.duration == pytest.approx(2.0, abs=0.02)
    assert [float(k) for k in track.keyframes] == [0.0]  # 2 s GOP at 50 fps: 100 frames
    master = m3u8.load(str(tmp_path / "out" / "master.m3u8"))
    assert master.playlists[0].stream_info.frame_rate == pytest.approx(50.0)
    hls = read_video(tmp_path / "out" / "360p_00000.ts")
    assert hls.frames == 100


def test_very_short_clip(make_media: MakeMedia, fast_profile: Profile, tmp_path: Path) -> None:
    source = make_media("short.mp4", *video_args(duration=0.4))
    result = run_encode(source, tmp_path / "out", fast_profile)
    assert read_video(tmp_path / "out" / "360p.mp4").frames == 10
    assert len(kinds(result)["thumbnail"]) == 3
    assert "overview_sprite" not in kinds(result)


def test_video_without_audio(make_media: MakeMedia, fast_profile: Profile, tmp_path: Path) -> None:
    source = make_media("silent.mp4", *video_args(audio=False))
    result = run_encode(source, tmp_path / "out", fast_profile)
    found = kinds(result)
    assert "audio" not in found  # no MP3 without audio
    assert found["hls_variant"][0]["codecs"].startswith("avc1.")
    assert "mp4a" not in found["hls_variant"][0]["codecs"]
    assert audio_codec(tmp_path / "out" / "360p.mp4") is None


def test_audio_only_with_cover(
    make_media: MakeMedia, fast_profile: Profile, tmp_path: Path
) -> None:
    cover = make_media("cover.jpg", "-f", "lavfi", "-i", "testsrc2=s=300x300", "-frames:v", "1")
    source = make_media(
        "song.mp3",
        "-f",
        "lavfi",
        "-i",
        "sine=f=330:d=3",
        "-i",
        str(cover),
        "-map",
        "0:a",
        "-map",
        "1:v",
        "-c:a",
        "libmp3lame",
        "-c:v",
        "copy",
        "-id3v2_version",
        "3",
        "-disposition:v",
        "attached_pic",
    )
    info = probe(source)
    assert info.is_audio_only and info.pictures
    result = run_encode(source, tmp_path / "out", fast_profile)
    found = kinds(result)
    assert sorted(e["path"] for e in found["audio"]) == ["audio.m4a", "audio.mp3"]
    assert [e["path"] for e in found["hls_variant"]] == ["audio.m3u8"]
    assert found["hls_variant"][0]["codecs"] == "mp4a.40.2"
    assert [e["path"] for e in found["thumbnail"]] == ["thumbnail_0.jpg"]  # the cover wins
    assert (tmp_path / "out" / "thumbnail_0.jpg").read_bytes() == cover.read_bytes()
    assert audio_codec(tmp_path / "out" / "audio.m4a") == "aac"
    master = (tmp_path / "out" / "master.m3u8").read_text()
    assert 'CODECS="mp4a.40.2"' in master and "RESOLUTION" not in master


def test_embedded_subtitles_become_webvtt(
    make_media: MakeMedia, fast_profile: Profile, tmp_path: Path
) -> None:
    srt = tmp_path / "subs.srt"
    srt.write_text(
        "1\n00:00:00,200 --> 00:00:01,000\nHello there\n\n"
        "2\n00:00:01,100 --> 00:00:01,900\nSecond line\n"
    )
    base = make_media("for-subs.mp4", *video_args())
    source = tmp_path / "subbed.mkv"
    run_ffmpeg_cli(
        "-i",
        str(base),
        "-i",
        str(srt),
        "-map",
        "0",
        "-map",
        "1",
        "-c",
        "copy",
        "-c:s",
        "srt",
        "-metadata:s:s:0",
        "language=fra",
        str(source),
    )
    result = run_encode(source, tmp_path / "out", fast_profile)
    subtitle = kinds(result)["subtitle"]
    assert [(e["path"], e["language"]) for e in subtitle] == [("subtitle_0_fra.vtt", "fra")]
    cues = webvtt_check.cues(tmp_path / "out" / "subtitle_0_fra.vtt")
    assert cues == [
        ("00:00:00.200", "00:00:01.000", "Hello there"),
        ("00:00:01.100", "00:00:01.900", "Second line"),
    ]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, hd_clip: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bad")
    files = {
        "empty": folder / "empty.mp4",
        "random": folder / "random.mp4",
        "text": folder / "notes.mp4",
        "still": folder / "picture.png",
        "truncated": folder / "truncated.mp4",
        "no_index": folder / "no-index.mp4",
    }
    files["empty"].write_bytes(b"")
    files["random"].write_bytes(os.urandom(64 * 1024))
    files["text"].write_text("this is not a video\n" * 100)
    run_ffmpeg_cli("-f", "lavfi", "-i", "testsrc2=s=320x240", "-frames:v", "1", str(files["still"]))
    faststart = folder / "faststart.mp4"
    run_ffmpeg_cli("-i", str(hd_clip), "-c", "copy", "-movflags", "+faststart", str(faststart))
    data = faststart.read_bytes()
    files["truncated"].write_bytes(data[: len(data) // 2])
    index_last = folder / "index-last.mp4"  # ffmpeg's default: the moov box after the media
    run_ffmpeg_cli("-i", str(hd_clip), "-c", "copy", str(index_last))
    data = index_last.read_bytes()
    files["no_index"].write_bytes(data[: len(data) // 2])
    return files


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty", "the file is empty"),
        ("random", "not a media file"),
        ("text", "not a media file"),
        ("still", "still image"),
        ("truncated", "truncated"),
        ("no_index", "truncated or incomplete"),
    ],
)
def test_bad_input_fails_permanently_with_one_line(
    bad_files: dict[str, Path], fast_profile: Profile, tmp_path: Path, name: str, reason: str
) -> None:
    with pytest.raises(InvalidMedia) as caught:
        run_encode(bad_files[name], tmp_path / "out", fast_profile)
    message = str(caught.value)
    assert reason in message and "\n" not in message
    assert caught.value.permanent
    assert list(tmp_path.iterdir()) == []  # nothing half-written

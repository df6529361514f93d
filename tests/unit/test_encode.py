"""Real encodes of generated media, checked by reading every output back."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import av
import m3u8
import numpy as np
import pytest

from fixtures_media import MakeMedia, video_args
from readback import audio_codec, image_size, read_timeline, read_video, top_level_atoms
from vidfarm.errors import InvalidParameters, JobCancelled, JobTimedOut
from vidfarm.media.encode import EncodeResult, encode
from vidfarm.media.profiles import Profile
from vidfarm.media.tools import ffmpeg_executable


def run_encode(source: Path, out: Path, profile: Profile, **kwargs: Any) -> EncodeResult:
    return encode(source, out, profile=profile, ffmpeg=ffmpeg_executable(), **kwargs)


def kinds(manifest: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for entry in manifest["outputs"]:
        found.setdefault(entry["kind"], []).append(entry["path"])
    return found


def segments_of(playlist: Path) -> list[Path]:
    parsed = m3u8.load(str(playlist))
    return [playlist.parent / segment.uri for segment in parsed.segments]


@pytest.fixture(scope="module")
def hd_encode(
    hd_clip: Path, fast_profile: Profile, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, EncodeResult, list[float]]:
    """The 1080p source through Pod's whole ladder. "superfast" is the fastest x264 preset
    with B-frames (like the default "medium"): MP4 edit lists and TS timestamps then differ
    by the B-frame delay, which the timing test must see through."""
    progress: list[float] = []
    out = tmp_path_factory.mktemp("hd") / "out"
    profile = fast_profile.model_copy(update={"preset": "superfast"})
    result = run_encode(hd_clip, out, profile, on_progress=lambda p: progress.append(p) or True)
    return out, result, progress


def test_hd_manifest_lists_every_output_with_true_size_and_checksum(hd_encode) -> None:  # type: ignore[no-untyped-def]
    out, result, _ = hd_encode
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == json.loads(json.dumps(result.manifest))
    assert abs(manifest["duration"] - 12.0) < 0.05
    found = kinds(manifest)
    assert found["hls_master"] == ["master.m3u8"]
    assert found["hls_variant"] == ["360p.m3u8", "720p.m3u8", "1080p.m3u8"]
    assert found["mp4"] == ["360p.mp4", "720p.mp4"]  # 1080p is HLS only in Pod's ladder
    assert found["audio"] == ["audio.mp3"]
    assert found["thumbnail"] == ["thumbnail_1.jpg", "thumbnail_2.jpg", "thumbnail_3.jpg"]
    assert found["overview_sprite"] == ["overview.png"]
    assert found["overview_vtt"] == ["overview.vtt"]
    for entry in manifest["outputs"]:
        data = (out / entry["path"]).read_bytes()
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
    assert not list(out.parent.glob(".*partial*")), "staging folder left behind"


def test_master_playlist_carries_measured_attributes(hd_encode) -> None:  # type: ignore[no-untyped-def]
    out, _, _ = hd_encode
    master = m3u8.load(str(out / "master.m3u8"))
    assert master.is_variant
    seen = []
    for playlist in master.playlists:
        info = playlist.stream_info
        seen.append(info.resolution)
        assert info.bandwidth >= info.average_bandwidth > 0
        assert info.frame_rate == pytest.approx(30.0)
        video_codec, audio = info.codecs.split(",")
        assert video_codec.startswith("avc1.") and audio == "mp4a.40.2"
        # The peak really is the largest segment's bit rate, audio included.
        variant = m3u8.load(str(out / playlist.uri))
        peak = max((out / s.uri).stat().st_size * 8 / s.duration for s in variant.segments)
        assert info.bandwidth == pytest.approx(peak, rel=0.001)
    assert seen == [(640, 360), (1280, 720), (1920, 1080)]


HD_SIZES = {"360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080)}


def test_renditions_have_right_size_duration_codecs_and_aligned_keyframes(hd_encode) -> None:  # type: ignore[no-untyped-def]
    out, _, _ = hd_encode
    expected_keys = [0, 2, 4, 6, 8, 10]
    for name, (width, height) in {
        "360p": (640, 360),
        "720p": (1280, 720),
        "1080p": (1920, 1080),
    }.items():
        variant = m3u8.load(str(out / f"{name}.m3u8"))
        assert variant.is_independent_segments and variant.playlist_type == "vod"
        assert variant.target_duration <= 4
        assert [round(s.duration, 3) for s in variant.segments] == [4.0, 4.0, 4.0]
        track = read_video(*segments_of(out / f"{name}.m3u8"))
        assert (track.codec, track.width, track.height) == ("h264", width, height)
        assert track.duration == pytest.approx(12.0, abs=1 / 30)
        assert [float(k) for k in track.keyframes] == expected_keys
        assert audio_codec(segments_of(out / f"{name}.m3u8")[0]) == "aac"
        # Every segment starts on a keyframe, and on the same one in every rendition.
        for index, segment in enumerate(segments_of(out / f"{name}.m3u8")):
            with av.open(str(segment)) as container:
                first = next(p for p in container.demux(video=0) if p.pts is not None)
                assert first.is_keyframe, f"{segment.name} does not start on a keyframe"
            assert index * 4 in expected_keys
    for name, (width, height) in {"360p": (640, 360), "720p": (1280, 720)}.items():
        mp4 = out / f"{name}.mp4"
        atoms = top_level_atoms(mp4)
        assert atoms.index("moov") < atoms.index("mdat"), f"{name}.mp4 is not fast-start"
        track = read_video(mp4)
        assert (track.width, track.height, track.frames) == (width, height, 360)
        assert [float(k) for k in track.keyframes] == expected_keys
        assert audio_codec(mp4) == "aac"


def test_every_rendition_starts_and_switches_at_the_same_instants(hd_encode) -> None:  # type: ignore[no-untyped-def]
    """A 1080p source: HLS renditions share one timeline (the 1080p variant, muxed to HLS
    alone, once started 1.4 s late), MP4 renditions another, and both place the first frame
    and every keyframe at the same instants from where playback starts."""
    out, _, _ = hd_encode
    frame = 1 / 30
    hls = {name: read_timeline(*segments_of(out / f"{name}.m3u8")) for name in HD_SIZES}
    mp4 = {name: read_timeline(out / f"{name}.mp4") for name in ("360p", "720p")}
    reference = hls["360p"]
    assert reference.video_start is not None and reference.video_start < frame * 3
    for name, timeline in hls.items():
        assert timeline.video_start == pytest.approx(reference.video_start, abs=frame), name
        assert timeline.audio_start == pytest.approx(reference.audio_start, abs=frame), name
        assert timeline.keyframes == pytest.approx(reference.keyframes, abs=frame), name
    for name, timeline in mp4.items():
        assert timeline.video_start is not None
        assert timeline.video_start - timeline.origin == pytest.approx(
            reference.video_start - reference.origin, abs=frame
        ), name
        assert [k - timeline.origin for k in timeline.keyframes] == pytest.approx(
            [k - reference.origin for k in reference.keyframes], abs=frame
        ), name


def test_artwork_thumbnails_and_sprite(hd_encode) -> None:  # type: ignore[no-untyped-def]
    out, result, _ = hd_encode
    for n in (1, 2, 3):
        assert image_size(out / f"thumbnail_{n}.jpg") == (1920, 1080)
    assert image_size(out / "overview.png") == (10 * 160, 90)
    cues = [line for line in (out / "overview.vtt").read_text().splitlines() if "#xywh=" in line]
    assert cues == [f"overview.png#xywh={i * 160},0,160,90" for i in range(10)]
    vtt = (out / "overview.vtt").read_text()
    assert vtt.startswith("WEBVTT") and "00:00:10.800 --> 00:00:12.000" in vtt
    with av.open(str(out / "overview.png")) as container:
        pixels = next(container.decode(video=0)).to_ndarray(format="rgb24")
    for tile in range(10):  # every tile holds a picture, none is padding
        assert pixels[:, tile * 160 : (tile + 1) * 160].std() > 10
    # Thumbnails are different frames (25/50/75 %), not one frame thrice.
    digests = {
        hashlib.sha256((out / f"thumbnail_{n}.jpg").read_bytes()).digest() for n in (1, 2, 3)
    }
    assert len(digests) == 3
    assert result.manifest["source"]["path"] == "hd.mp4"


def gray(path: Path, at: float | None = None) -> np.ndarray:
    """The picture of an image, or of a video's frame at `at` seconds, as gray levels."""
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            if at is None or frame.time >= at - 1e-6:
                return frame.to_ndarray(format="gray").astype(float)
    raise AssertionError(f"no frame at {at} in {path}")


def test_thumbnails_show_the_frames_at_25_50_75_percent(hd_encode, hd_clip: Path) -> None:  # type: ignore[no-untyped-def]
    out, _, _ = hd_encode
    for n, at in ((1, 3.0), (2, 6.0), (3, 9.0)):
        thumbnail = gray(out / f"thumbnail_{n}.jpg")
        right = np.abs(thumbnail - gray(hd_clip, at)).mean()
        wrong = np.abs(thumbnail - gray(hd_clip, at + 1.0)).mean()
        assert right < 6 and wrong > 2 * right, (n, right, wrong)


def test_progress_is_reported_and_monotonic(hd_encode) -> None:  # type: ignore[no-untyped-def]
    _, _, progress = hd_encode
    assert progress, "no progress reported"
    assert progress == sorted(progress)
    assert progress[0] >= 0 and progress[-1] <= 100


def test_cut_keeps_only_the_asked_span(
    make_media: MakeMedia, fast_profile: Profile, tmp_path: Path
) -> None:
    source = make_media("six.mp4", *video_args(duration=6.0))
    result = run_encode(source, tmp_path / "out", fast_profile, start=1.0, end=4.0)
    assert result.manifest["duration"] == pytest.approx(3.0)
    track = read_video(*segments_of(tmp_path / "out" / "360p.m3u8"))
    assert track.duration == pytest.approx(3.0, abs=1 / 25)
    assert read_video(tmp_path / "out" / "360p.mp4").duration == pytest.approx(3.0, abs=1 / 25)
    with pytest.raises(InvalidParameters, match="past the end"):
        run_encode(source, tmp_path / "bad", fast_profile, start=1.0, end=60.0)
    assert not (tmp_path / "bad").exists()


def test_output_folder_must_be_empty(
    small_clip: Path, fast_profile: Profile, tmp_path: Path
) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(InvalidParameters, match="not empty"):
        run_encode(small_clip, tmp_path / "out", fast_profile)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_cancel_removes_partial_outputs(
    hd_clip: Path, fast_profile: Profile, tmp_path: Path
) -> None:
    calls: list[float] = []

    def stop_soon(percent: float) -> bool:
        calls.append(percent)
        return len(calls) < 2

    with pytest.raises(JobCancelled):
        run_encode(hd_clip, tmp_path / "out", fast_profile, on_progress=stop_soon)
    assert list(tmp_path.iterdir()) == []


def test_time_limit_from_duration_kills_and_cleans(
    hd_clip: Path, fast_profile: Profile, tmp_path: Path
) -> None:
    slow = fast_profile.model_copy(update={"preset": "veryslow"})
    with pytest.raises(JobTimedOut, match="time limit"):
        run_encode(hd_clip, tmp_path / "out", slow, time_limit_factor=0.02, time_limit_min=0.2)
    assert list(tmp_path.iterdir()) == []


def test_dash_packages_every_rendition_in_one_manifest(
    make_media: MakeMedia, fast_profile: Profile, tmp_path: Path
) -> None:
    import xml.etree.ElementTree as ET

    source = make_media("dash-src.mp4", *video_args("1280x720", 25, 4.0))
    result = run_encode(source, tmp_path / "out", fast_profile, formats=["dash"])
    found = kinds(result.manifest)
    assert found["dash_manifest"] == ["manifest.mpd"]
    assert "hls_master" not in found and "mp4" not in found
    ns = {"d": "urn:mpeg:dash:schema:mpd:2011"}
    root = ET.parse(tmp_path / "out" / "manifest.mpd").getroot()
    sizes = [
        (r.get("width"), r.get("height"))
        for r in root.iterfind(".//d:Representation", ns)
        if r.get("mimeType") == "video/mp4"
    ]
    assert sizes == [("640", "360"), ("1280", "720")]
    assert root.find(".//d:AdaptationSet[@contentType='audio']", ns) is not None
    entry = next(e for e in result.manifest["outputs"] if e["kind"] == "dash_manifest")
    assert {s["path"] for s in entry["segments"]} == {
        p.name for p in (tmp_path / "out").glob("*.m4s")
    }


def test_one_resolution_as_mp4_only(
    make_media: MakeMedia, fast_profile: Profile, tmp_path: Path
) -> None:
    from vidfarm.media.profiles import rendition_for

    source = make_media("dash-src.mp4", *video_args("1280x720", 25, 4.0))
    only = rendition_for(fast_profile, "854:480")
    result = run_encode(source, tmp_path / "out", fast_profile, formats=["mp4"], only=only)
    assert kinds(result.manifest)["mp4"] == ["480p.mp4"]
    assert not list((tmp_path / "out").glob("*.m3u8"))
    track = read_video(tmp_path / "out" / "480p.mp4")
    assert (track.width, track.height) == (854, 480)


@pytest.mark.parametrize(
    ("formats", "message"),
    [(["webm"], "unknown format webm"), (["dash", "hls"], "cannot be combined"), ([], "(none)")],
)
def test_bad_format_choices(
    small_clip: Path, fast_profile: Profile, tmp_path: Path, formats: list[str], message: str
) -> None:
    with pytest.raises(InvalidParameters, match=message):
        run_encode(small_clip, tmp_path / "out", fast_profile, formats=formats)


def test_image_outputs_pass_frames_through(hd_clip: Path, fast_profile: Profile) -> None:
    """Regression: with ffmpeg's default constant-rate output, each thumbnail and the sprite
    repeated their picture at every frame tick (hundreds of 1080p JPEGs per thumbnail)."""
    from vidfarm.media.arguments import build_ffmpeg_args
    from vidfarm.media.plan import plan_encode
    from vidfarm.media.probe import probe

    args = build_ffmpeg_args(plan_encode(probe(hd_clip), fast_profile), hd_clip)
    images = [i for i, a in enumerate(args) if a.endswith((".jpg", ".png"))]
    assert len(images) == 4  # three thumbnails and the sprite
    for index in images:
        output_options = args[max(j for j in range(index) if args[j] == "-map") : index]
        assert output_options[output_options.index("-fps_mode") + 1] == "passthrough"

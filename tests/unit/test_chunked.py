"""Chunked encodes read back against a single pass of the same source and profile.

The source is the 1080p clip (12 s, 30 fps); the ladder is tiny (the 1080p size is not the
point here: decoding and seeking in it is), chunks last 4 s on a 2 s segment grid, so there
are three chunks and two boundaries. The preset has B-frames, so timestamps around each
boundary are really exercised.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import pytest

from fixtures_media import MakeMedia, video_args
from readback import read_video, top_level_atoms
from vidfarm.errors import InvalidMedia, JobCancelled
from vidfarm.media.chunks import ChunkRange, encode_chunk, plan_chunks
from vidfarm.media.encode import EncodeResult, encode
from vidfarm.media.hls import read_media_playlist
from vidfarm.media.parallel import encode_parallel
from vidfarm.media.plan import plan_encode
from vidfarm.media.probe import probe
from vidfarm.media.profiles import Profile, RenditionSpec
from vidfarm.media.stitch import stitch
from vidfarm.media.tools import ffmpeg_executable

FPS = 30
CHUNK_SECONDS = 4.0
BOUNDARIES = (4.0, 8.0)


@pytest.fixture(scope="module")
def tiny_profile() -> Profile:
    def rung(height: int, video: str, audio: str, mp4: bool) -> RenditionSpec:
        return RenditionSpec(
            height=height,
            min_video_bitrate="50k",
            video_bitrate=video,
            max_video_bitrate="2M",
            audio_bitrate=audio,
            mp4=mp4,
        )

    return Profile(
        name="tiny",
        preset="veryfast",
        keyframe_interval=2.0,
        segment_duration=2.0,
        renditions=[rung(144, "200k", "64k", True), rung(240, "400k", "96k", False)],
    )


@dataclass(frozen=True)
class Pair:
    single: Path
    chunked: Path
    chunked_result: EncodeResult


@pytest.fixture(scope="module")
def pair(hd_clip: Path, tiny_profile: Profile, tmp_path_factory: pytest.TempPathFactory) -> Pair:
    root = tmp_path_factory.mktemp("chunked")
    ffmpeg = ffmpeg_executable()
    encode(hd_clip, root / "single", profile=tiny_profile, ffmpeg=ffmpeg)
    result = encode_parallel(
        hd_clip,
        root / "chunked",
        profile=tiny_profile,
        ffmpeg=ffmpeg,
        workers=2,
        chunk_seconds=CHUNK_SECONDS,
        min_seconds=0,
    )
    return Pair(root / "single", root / "chunked", result)


def segments(folder: Path, name: str) -> list[Path]:
    return [folder / s.uri for s in read_media_playlist(folder / f"{name}.m3u8")]


def packet_times(paths: list[Path], kind: str) -> list[Fraction]:
    """Presentation times of every packet of the first `kind` stream, in file order."""
    times: list[Fraction] = []
    for path in paths:
        with av.open(str(path)) as container:
            stream = getattr(container.streams, kind)[0]
            times += [
                p.pts * stream.time_base for p in container.demux(stream) if p.pts is not None
            ]
    return times


def test_plan_chunks_on_the_segment_grid() -> None:
    ranges = plan_chunks(130.0, 4.0, chunk_seconds=62.0, min_seconds=120.0)
    assert [(c.start, c.end) for c in ranges] == [(0, 64), (64, 130.0)]  # tail 2 s joins
    assert plan_chunks(119.0, 4.0, chunk_seconds=60.0, min_seconds=120.0) == []
    assert plan_chunks(70.0, 4.0, chunk_seconds=60.0, min_seconds=0) == []  # one chunk
    ranges = plan_chunks(100.0, 4.0, chunk_seconds=40.0, min_seconds=0)
    assert [(c.start, c.end) for c in ranges] == [(0, 40), (40, 80), (80, 100.0)]


def test_same_layout_and_manifest_records_the_chunks(pair: Pair) -> None:
    single = sorted(p.name for p in pair.single.iterdir())
    assert sorted(p.name for p in pair.chunked.iterdir()) == single
    manifest = json.loads((pair.chunked / "manifest.json").read_text())
    assert manifest["chunks"] == [
        {"start": 0, "end": 4},
        {"start": 4, "end": 8},
        {"start": 8, "end": 12.0},
    ]
    assert "chunks" not in json.loads((pair.single / "manifest.json").read_text())
    assert pair.chunked_result.manifest == manifest
    leftovers = [p.name for p in pair.chunked.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # chunk folders and stitch scratch are gone


@pytest.mark.parametrize("rendition", ["144p", "240p"])
def test_frames_and_timestamps_continuous_with_keyframes_on_the_grid(
    pair: Pair, rendition: str
) -> None:
    single, chunked = segments(pair.single, rendition), segments(pair.chunked, rendition)
    assert len(chunked) == len(single)
    assert read_video(*chunked).frames == read_video(*single).frames == 12 * FPS
    times = sorted(packet_times(chunked, "video"))
    steps = {b - a for a, b in itertools.pairwise(times)}
    assert steps == {Fraction(1, FPS)}  # no gap, no duplicate, across every boundary
    keys = read_video(*chunked).keyframes
    assert keys == read_video(*single).keyframes == [Fraction(2 * k) for k in range(6)]
    for path in chunked:  # each .ts starts on a keyframe
        with av.open(str(path)) as container:
            first = next(
                p for p in container.demux(container.streams.video[0]) if p.pts is not None
            )
            assert first.is_keyframe, path.name


def test_audio_continuous_and_in_sync(pair: Pair) -> None:
    for folder_times in (pair.single, pair.chunked):
        audio = packet_times(segments(folder_times, "240p"), "audio")
        steps = {b - a for a, b in itertools.pairwise(audio)}
        assert steps == {Fraction(1024, 48000)}, folder_times.name  # no gap at a boundary

    def offsets(folder: Path) -> tuple[Fraction, Fraction]:
        paths = segments(folder, "240p")
        video, audio = packet_times(paths, "video"), packet_times(paths, "audio")
        return min(audio) - min(video), max(audio) - max(video)

    start, finish = offsets(pair.chunked)
    single_start, single_finish = offsets(pair.single)
    assert abs(start - single_start) < Fraction(1, FPS)
    assert abs(finish - single_finish) < Fraction(1, FPS)


def test_mp4_is_fast_start_and_lasts_as_long_as_the_single_pass(pair: Pair) -> None:
    chunked, single = pair.chunked / "144p.mp4", pair.single / "144p.mp4"
    atoms = top_level_atoms(chunked)
    assert atoms.index("moov") < atoms.index("mdat")
    ours, theirs = read_video(chunked), read_video(single)
    assert ours.frames == theirs.frames
    assert abs(ours.duration - theirs.duration) <= 1 / FPS
    assert ours.keyframes == theirs.keyframes
    with av.open(str(chunked)) as container:
        assert container.streams.audio[0].codec_context.name == "aac"


def psnr_per_frame(ffmpeg: str, encoded: list[Path], source: Path, size: str) -> list[float]:
    """Per-frame PSNR (luma+chroma average) of HLS segments against the source scaled alike."""
    concat = "concat:" + "|".join(str(p) for p in encoded)
    graph = (
        f"[0:v]setpts=PTS-STARTPTS[a];[1:v]scale={size}:flags=bicubic,format=yuv420p,"
        "setpts=PTS-STARTPTS[b];[a][b]psnr=stats_file=-"
    )
    done = subprocess.run(
        [ffmpeg, "-hide_banner", "-nostdin", "-i", concat, "-i", str(source),
         "-filter_complex", graph, "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return [float(v) for v in re.findall(r"psnr_avg:([\d.]+|inf)", done.stdout)]


def test_quality_and_bitrate_match_the_single_pass(pair: Pair, hd_clip: Path) -> None:
    ffmpeg = ffmpeg_executable()
    ours = psnr_per_frame(ffmpeg, segments(pair.chunked, "240p"), hd_clip, "426:240")
    theirs = psnr_per_frame(ffmpeg, segments(pair.single, "240p"), hd_clip, "426:240")
    assert len(ours) == len(theirs) == 12 * FPS
    assert abs(sum(ours) / len(ours) - sum(theirs) / len(theirs)) < 0.3
    for boundary in BOUNDARIES:
        frame = int(boundary * FPS)
        for n in (frame - 1, frame):  # the last frame of a chunk and the first of the next
            assert abs(ours[n] - theirs[n]) < 0.3, (boundary, n, ours[n], theirs[n])
    for rendition in ("144p", "240p"):
        size = sum(p.stat().st_size for p in segments(pair.chunked, rendition))
        reference = sum(p.stat().st_size for p in segments(pair.single, rendition))
        assert abs(size / reference - 1) < 0.03, rendition


def test_artwork_comes_from_the_chunks(pair: Pair) -> None:
    for name in ("thumbnail_1.jpg", "thumbnail_2.jpg", "thumbnail_3.jpg", "overview.png"):
        assert read_video(pair.chunked / name).frames == 1
    with (
        av.open(str(pair.chunked / "overview.png")) as ours,
        av.open(str(pair.single / "overview.png")) as theirs,
    ):
        a, b = next(ours.decode(video=0)), next(theirs.decode(video=0))
        assert (a.width, a.height) == (b.width, b.height)
        difference = abs(a.to_ndarray(format="gray").astype(int) - b.to_ndarray(format="gray"))
        assert difference.mean() < 3  # the same frames, encoded by different chunks


def test_stitch_refuses_missing_chunks(
    hd_clip: Path, tiny_profile: Profile, tmp_path: Path
) -> None:
    plan = plan_encode(probe(hd_clip), tiny_profile)
    ranges = plan_chunks(plan.duration, 2.0, chunk_seconds=CHUNK_SECONDS, min_seconds=0)
    first = tmp_path / "c0"
    encode_chunk(hd_clip, plan, ranges[0], first, ffmpeg=ffmpeg_executable())
    with pytest.raises(InvalidMedia, match="chunks end at 4"):
        stitch(hd_clip, plan, [(ranges[0], first)], tmp_path / "out", ffmpeg=ffmpeg_executable())
    gap = ChunkRange(index=2, start=8.0, end=12.0)
    with pytest.raises(InvalidMedia, match=r"starts at 8\.0, expected 4"):
        stitch(
            hd_clip, plan, [(ranges[0], first), (gap, first)], tmp_path / "out",
            ffmpeg=ffmpeg_executable(),
        )  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c0"]


def test_short_media_is_one_pass(small_clip: Path, tiny_profile: Profile, tmp_path: Path) -> None:
    result = encode_parallel(
        small_clip, tmp_path / "out", profile=tiny_profile, ffmpeg=ffmpeg_executable(),
        workers=2, chunk_seconds=CHUNK_SECONDS, min_seconds=120,
    )  # fmt: skip
    assert "chunks" not in result.manifest


def test_overview_tiles_never_come_from_a_post_roll(
    make_media: MakeMedia, tiny_profile: Profile, tmp_path: Path
) -> None:
    """At `medium` a chunk encodes 42 frames past its end: tiles starting there (every 1.2 s)
    belong to the next chunk, and the sprite must be the single pass's."""
    clip = make_media("chunk-sprite.mp4", *video_args("320x180", FPS, 12.0))
    profile = tiny_profile.model_copy(update={"preset": "medium"})
    ffmpeg = ffmpeg_executable()
    encode(clip, tmp_path / "single", profile=profile, ffmpeg=ffmpeg)
    encode_parallel(
        clip, tmp_path / "chunked", profile=profile, ffmpeg=ffmpeg, workers=2,
        chunk_seconds=CHUNK_SECONDS, min_seconds=0,
    )  # fmt: skip
    with (
        av.open(str(tmp_path / "chunked" / "overview.png")) as ours,
        av.open(str(tmp_path / "single" / "overview.png")) as theirs,
    ):
        a = next(ours.decode(video=0)).to_ndarray(format="gray").astype(int)
        b = next(theirs.decode(video=0)).to_ndarray(format="gray").astype(int)
    assert a.shape == b.shape
    width = a.shape[1] // 10
    for tile in range(10):  # each tile shows the same instant (a moving test pattern)
        part = slice(tile * width, (tile + 1) * width)
        assert abs(a[:, part] - b[:, part]).mean() < 3, tile


def test_cancel_stops_every_chunk_and_leaves_nothing(
    hd_clip: Path, tiny_profile: Profile, tmp_path: Path
) -> None:
    calls: list[float] = []

    def stop_soon(percent: float) -> bool:
        calls.append(percent)
        return len(calls) < 2

    with pytest.raises(JobCancelled):
        encode_parallel(
            hd_clip, tmp_path / "out", profile=tiny_profile, ffmpeg=ffmpeg_executable(),
            workers=2, chunk_seconds=CHUNK_SECONDS, min_seconds=0, on_progress=stop_soon,
        )  # fmt: skip
    assert list(tmp_path.iterdir()) == []


def test_frames_off_the_chunk_grid_keep_their_times(
    make_media: MakeMedia, tiny_profile: Profile, tmp_path: Path
) -> None:
    """At 29.97 fps the first frame of the chunk starting at 4 s is at 4.004 s: it stays there."""
    clip = make_media("chunk-ntsc.mp4", *video_args("320x180", 30000 / 1001, 12.0))
    ffmpeg = ffmpeg_executable()
    encode(clip, tmp_path / "single", profile=tiny_profile, ffmpeg=ffmpeg)
    encode_parallel(
        clip, tmp_path / "chunked", profile=tiny_profile, ffmpeg=ffmpeg, workers=2,
        chunk_seconds=CHUNK_SECONDS, min_seconds=0,
    )  # fmt: skip
    ours = sorted(packet_times(segments(tmp_path / "chunked", "144p"), "video"))
    theirs = sorted(packet_times(segments(tmp_path / "single", "144p"), "video"))
    assert {b - a for a, b in itertools.pairwise(ours)} == {Fraction(1001, 30000)}
    assert [t - ours[0] for t in ours] == [t - theirs[0] for t in theirs]

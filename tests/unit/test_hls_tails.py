"""HLS segment tails and BANDWIDTH: no sub-second last segment, peak as RFC 8216 defines it.

Sources that last a hair more than a multiple of the segment length used to end in a segment of
one audio frame or one video frame; its header-heavy bit rate then set BANDWIDTH (1.8x the real
peak for audio, 1.3x for video), and players picked a lower rendition than the network allows.
"""

from __future__ import annotations

from pathlib import Path

import av
import m3u8
import pytest

from fixtures_media import MakeMedia
from readback import read_timeline
from vidfarm.media.encode import EncodeResult, encode
from vidfarm.media.profiles import Profile
from vidfarm.media.tools import ffmpeg_executable


def run_encode(source: Path, out: Path, profile: Profile) -> EncodeResult:
    return encode(source, out, profile=profile, ffmpeg=ffmpeg_executable())


def rfc8216_peak(playlist: Path) -> float:
    """Section 4.3.4.2, computed independently: the highest bit rate of any run of contiguous
    segments lasting between 0.5 and 1.5 target durations (all of them if none does)."""
    parsed = m3u8.load(str(playlist))
    target = float(parsed.target_duration)
    sized = [((playlist.parent / s.uri).stat().st_size * 8, s.duration) for s in parsed.segments]
    rates = []
    for i in range(len(sized)):
        for j in range(i + 1, len(sized) + 1):
            bits = sum(b for b, _ in sized[i:j])
            seconds = sum(d for _, d in sized[i:j])
            if 0.5 * target <= seconds <= 1.5 * target:
                rates.append(bits / seconds)
    if not rates:
        rates.append(sum(b for b, _ in sized) / sum(d for _, d in sized))
    return max(rates)


def check_variants(out: Path, segment_length: float) -> None:
    master = m3u8.load(str(out / "master.m3u8"))
    for variant in master.playlists:
        playlist = out / variant.uri
        parsed = m3u8.load(str(playlist))
        durations = [s.duration for s in parsed.segments]
        assert min(durations) >= segment_length / 2, (variant.uri, durations)
        for duration in durations:  # RFC 8216 4.3.3.1
            assert round(duration) <= parsed.target_duration
        info = variant.stream_info
        assert info.bandwidth == pytest.approx(rfc8216_peak(playlist), rel=0.001)
        # Every file on disk is in the playlist: the merged tail left nothing behind.
        stem = playlist.stem
        assert sorted(p.name for p in out.glob(f"{stem}_*.ts")) == sorted(
            s.uri for s in parsed.segments
        )


def test_audio_only_source_has_no_tiny_tail(
    make_media: MakeMedia, fast_profile: Profile, tmp_path: Path
) -> None:
    source = make_media(
        "tail-audio.m4a", "-f", "lavfi", "-i", "sine=f=440:sample_rate=44100:d=12", "-c:a", "aac"
    )
    run_encode(source, tmp_path / "out", fast_profile)
    out = tmp_path / "out"
    check_variants(out, fast_profile.segment_duration)
    parsed = m3u8.load(str(out / "audio.m3u8"))
    assert len(parsed.segments) == 3  # 4.01 + 3.99 + 4.03: the 0.02 s remainder is merged
    assert sum(s.duration for s in parsed.segments) == pytest.approx(12.0, abs=0.05)
    master = m3u8.load(str(out / "master.m3u8"))
    info = master.playlists[0].stream_info
    assert info.bandwidth < 1.1 * info.average_bandwidth
    # The merged last segment plays to the end: its audio covers its whole EXTINF.
    last = out / parsed.segments[-1].uri
    with av.open(str(last)) as container:
        stream = container.streams.audio[0]
        times = [float(p.pts * stream.time_base) for p in container.demux(stream) if p.pts]
    assert max(times) - min(times) == pytest.approx(parsed.segments[-1].duration, abs=0.05)


def test_one_frame_tail_of_a_fragmented_mp4_is_merged(
    make_media: MakeMedia, fast_profile: Profile, tmp_path: Path
) -> None:
    """A fragmented MP4 whose video starts 23 ms in: its last frame lands on the 4 s keyframe
    grid and used to make a 0.067 s segment of its own."""
    source = make_media(
        "tail-frag.mp4",
        "-f", "lavfi", "-i", "testsrc2=s=640x360:r=30:d=4",
        "-f", "lavfi", "-i", "sine=f=440:sample_rate=44100:d=4",
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-c:a", "aac", "-shortest", "-movflags", "frag_keyframe+empty_moov",
    )  # fmt: skip
    run_encode(source, tmp_path / "out", fast_profile)
    out = tmp_path / "out"
    check_variants(out, fast_profile.segment_duration)
    parsed = m3u8.load(str(out / "360p.m3u8"))
    assert [round(s.duration, 3) for s in parsed.segments] == [4.067]
    timeline = read_timeline(out / parsed.segments[0].uri)
    assert len(timeline.keyframes) >= 2  # the merged frame kept its keyframe, and plays
    master = m3u8.load(str(out / "master.m3u8"))
    info = master.playlists[0].stream_info
    assert info.bandwidth == info.average_bandwidth  # one segment: peak is the mean

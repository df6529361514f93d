"""Single-file HLS (`hls_single_file`): one `<stem>.ts` per playlist, addressed by byte ranges.

Esup-Pod's runner import needs `<stem>.m3u8` next to `<stem>.ts`. Everything that reads
playlists must then count bytes by range, not by file: the tail merge, BANDWIDTH (RFC 8216
4.3.4.2 over the ranges), the manifest's segment files.
"""

from __future__ import annotations

import io
from pathlib import Path

import av
import m3u8
import pytest

from fixtures_media import MakeMedia, video_args
from vidfarm.media.encode import encode
from vidfarm.media.hls import measure_bandwidth, merge_short_tail, read_media_playlist
from vidfarm.media.profiles import Profile, profile_for_params
from vidfarm.media.tools import ffmpeg_executable


@pytest.fixture
def single_file(fast_profile: Profile) -> Profile:
    return fast_profile.model_copy(update={"hls_single_file": True})


def ranges(playlist: Path) -> list[tuple[str, int, int, float]]:
    """(uri, offset, length, duration) per segment, read with the m3u8 package."""
    parsed = m3u8.load(str(playlist))
    found = []
    end = 0
    for segment in parsed.segments:
        assert segment.byterange, f"{playlist.name}: a segment without EXT-X-BYTERANGE"
        length, _, offset = segment.byterange.partition("@")
        start = int(offset) if offset else end
        found.append((segment.uri, start, int(length), segment.duration))
        end = start + int(length)
    return found


def rfc8216_peak(playlist: Path) -> float:
    target = float(m3u8.load(str(playlist)).target_duration)
    sized = [(length * 8, duration) for _, _, length, duration in ranges(playlist)]
    rates = [
        sum(b for b, _ in sized[i:j]) / sum(d for _, d in sized[i:j])
        for i in range(len(sized))
        for j in range(i + 1, len(sized) + 1)
        if 0.5 * target <= sum(d for _, d in sized[i:j]) <= 1.5 * target
    ]
    return max(rates or [sum(b for b, _ in sized) / sum(d for _, d in sized)])


def first_packets(data: bytes) -> tuple[bool, int]:
    """(first video packet is a keyframe, video packets) of one byte range, demuxed alone."""
    with av.open(io.BytesIO(data), format="mpegts") as container:
        packets = [p for p in container.demux(container.streams.video[0]) if p.size]
    return packets[0].is_keyframe, len(packets)


def test_single_file_hls_is_one_ts_per_rendition_with_byte_ranges(
    make_media: MakeMedia, single_file: Profile, tmp_path: Path
) -> None:
    # 8.1 s: segments of 4 + 4 + 0.1 s; the 0.1 s tail must join its neighbour's byte range.
    source = make_media("single-file.mp4", *video_args("640x360", 30, 8.1))
    out = tmp_path / "out"
    result = encode(source, out, profile=single_file, ffmpeg=ffmpeg_executable())

    assert sorted(p.name for p in out.glob("*.ts")) == ["360p.ts"]  # no 360p_00000.ts
    playlist = out / "360p.m3u8"
    found = ranges(playlist)
    assert {uri for uri, *_ in found} == {"360p.ts"}
    # The ranges tile the file: contiguous, no gap, nothing after the last one.
    assert [start for _, start, _, _ in found] == [0] + [s + n for _, s, n, _ in found[:-1]]
    assert sum(n for _, _, n, _ in found) == (out / "360p.ts").stat().st_size
    durations = [d for *_, d in found]
    assert len(durations) == 2 and min(durations) >= 2.0, durations  # the tail was merged
    assert sum(durations) == pytest.approx(8.1, abs=0.05)
    data = (out / "360p.ts").read_bytes()
    for _, start, length, _ in found:  # each range plays alone, from a keyframe
        keyframe, packets = first_packets(data[start : start + length])
        assert keyframe and packets >= 60

    master = m3u8.load(str(out / "master.m3u8"))
    (variant,) = master.playlists
    assert variant.uri == "360p.m3u8"
    assert variant.stream_info.bandwidth == pytest.approx(rfc8216_peak(playlist), rel=0.001)
    assert (
        variant.stream_info.codecs.startswith("avc1.") and "mp4a.40.2" in variant.stream_info.codecs
    )

    (entry,) = [o for o in result.manifest["outputs"] if o["kind"] == "hls_variant"]
    (segment_file,) = entry["segments"]
    assert segment_file["path"] == "360p.ts" and segment_file["byteranges"] == 2
    assert segment_file["size"] == len(data)
    assert segment_file["duration"] == pytest.approx(sum(durations), abs=0.001)
    # The MP4 of the same rendition is unaffected.
    with av.open(str(out / "360p.mp4")) as container:
        assert container.streams.video[0].codec_context.height == 360


def test_single_file_alternate_audio_and_audio_only(
    make_media: MakeMedia, single_file: Profile, tmp_path: Path
) -> None:
    source = make_media(
        "single-file-2audio.mkv",
        *("-f", "lavfi", "-i", "testsrc2=s=320x180:r=25:d=5"),
        *("-f", "lavfi", "-i", "sine=f=440:d=5", "-f", "lavfi", "-i", "sine=f=660:d=5"),
        *("-map", "0", "-map", "1", "-map", "2", "-c:v", "libx264", "-preset", "ultrafast"),
        *("-c:a", "aac", "-metadata:s:a:1", "language=fra"),
    )  # fmt: skip
    out = tmp_path / "two"
    encode(source, out, profile=single_file, ffmpeg=ffmpeg_executable())
    master = m3u8.load(str(out / "master.m3u8"))
    (alternate,) = [m for m in master.media if m.uri]
    assert {u for u, *_ in ranges(out / alternate.uri)} == {alternate.uri[:-5] + ".ts"}
    with av.open(str(out / (alternate.uri[:-5] + ".ts"))) as container:
        assert container.streams.audio and not container.streams.video
    assert sorted(p.name for p in out.glob("*.ts")) == ["360p.ts", "audio-track-1.ts"]

    audio = make_media("single-file.m4a", "-f", "lavfi", "-i", "sine=f=440:d=9.05", "-c:a", "aac")
    out = tmp_path / "audio"
    encode(audio, out, profile=single_file, ffmpeg=ffmpeg_executable())
    assert sorted(p.name for p in out.glob("*.ts")) == ["audio.ts"]
    found = ranges(out / "audio.m3u8")
    assert min(d for *_, d in found) >= 2.0  # 4 + 4 + 1.05: the tail is long enough to stay
    assert sum(n for _, _, n, _ in found) == (out / "audio.ts").stat().st_size


def test_byte_range_tail_merge_and_bandwidth_from_ranges(tmp_path: Path) -> None:
    """A playlist written by hand: ranges without offsets continue the previous one."""
    (tmp_path / "v.ts").write_bytes(b"\0" * 3000)
    playlist = tmp_path / "v.m3u8"
    playlist.write_text(
        "#EXTM3U\n#EXT-X-VERSION:4\n#EXT-X-TARGETDURATION:4\n#EXT-X-PLAYLIST-TYPE:VOD\n"
        "#EXTINF:4.0,\n#EXT-X-BYTERANGE:1000@0\nv.ts\n"
        "#EXTINF:4.0,\n#EXT-X-BYTERANGE:1800\nv.ts\n"
        "#EXTINF:0.1,\n#EXT-X-BYTERANGE:200\nv.ts\n#EXT-X-ENDLIST\n",
        encoding="utf-8",
    )
    segments = read_media_playlist(playlist)
    assert [s.byterange for s in segments] == [(1000, 0), (1800, 1000), (200, 2800)]
    # The peak run is the last two ranges (4.1 s, 2000 bytes): sizes come from the ranges.
    assert measure_bandwidth(tmp_path, segments, 4) == (
        round(2000 * 8 / 4.1),
        round(3000 * 8 / 8.1),
    )
    merge_short_tail(playlist, 2.0)
    assert [(s.byterange, s.duration) for s in read_media_playlist(playlist)] == [
        ((1000, 0), 4.0),
        ((2000, 1000), 4.1),
    ]
    assert (tmp_path / "v.ts").stat().st_size == 3000  # nothing appended to the file
    assert ranges(playlist)[-1][1:3] == (1000, 2000)  # the m3u8 package reads it the same


def test_hls_single_file_job_param(fast_profile: Profile) -> None:
    profile = profile_for_params({"hls_single_file": True}, "default", None)
    assert profile.hls_single_file and not fast_profile.hls_single_file
    with pytest.raises(Exception, match="hls_single_file"):
        profile_for_params({"hls_single_file": "yes"}, "default", None)

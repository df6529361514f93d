"""Chunked encoding: cut one encode into ranges that different workers encode at once.

Every boundary lies on the profile's segment grid, which is also its keyframe grid (a segment
is a whole number of keyframe intervals), so each chunk starts on a keyframe in every rendition
and the stitch can cut HLS segments exactly where a single pass would. A chunk decodes only its
range (ffmpeg seeks to the keyframe before it and trims exactly) and encodes the video of every
rendition in one pass, plus the thumbnails and overview tiles whose times it holds. Audio is
not a chunk's business: the stitch encodes it once for the whole media (stitch.py).

x264's rate control and lookahead behave differently at the ends of a stream (no history at
the start, no future at the end): a chunk encoded alone came out 1.5 to 2.4 dB worse than the
single pass at its boundary frames. So a chunk encodes one keyframe interval of its neighbours
too (pre-roll, post-roll) and then keeps only its own packets: its range starts and ends on
closed-GOP keyframes, so the kept packets decode alone and are the ones a single pass makes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av

from vidfarm.media.arguments import x264_args
from vidfarm.media.ffmpeg import FFmpegRun, ProgressCallback, run_ffmpeg
from vidfarm.media.plan import EncodePlan
from vidfarm.media.staging import staged

#: A last range shorter than this fraction of a chunk joins the one before.
SHORT_TAIL_FRACTION = 0.5


@dataclass(frozen=True, kw_only=True)
class ChunkRange:
    """Seconds of the output (after the plan's cut), `start` inclusive, `end` exclusive."""

    index: int
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start

    def to_dict(self) -> dict[str, float]:
        return {"start": round(self.start, 6), "end": round(self.end, 6)}


def chunk_size(segment_duration: float, chunk_seconds: float) -> float:
    """`chunk_seconds` rounded to the nearest whole number of segments (at least one)."""
    return max(1, round(chunk_seconds / segment_duration)) * segment_duration


def plan_chunks(
    duration: float, segment_duration: float, *, chunk_seconds: float, min_seconds: float
) -> list[ChunkRange]:
    """The ranges of a chunked encode, or [] when one pass is the better choice (short media,
    or a single chunk)."""
    if duration < min_seconds:
        return []
    size = chunk_size(segment_duration, chunk_seconds)
    count = max(1, math.floor(duration / size + 1e-9))
    if duration - count * size >= size * SHORT_TAIL_FRACTION - 1e-9:
        count += 1  # a long enough tail is a chunk of its own
    if count < 2:
        return []
    return [
        ChunkRange(index=i, start=i * size, end=duration if i == count - 1 else (i + 1) * size)
        for i in range(count)
    ]


def chunk_refusal(plan: EncodePlan) -> str | None:
    """Why this plan cannot be chunked (then it is encoded in one pass), or None."""
    if plan.ladder is None:
        return "an audio-only encode is one cheap pass"
    if plan.dash:
        return "DASH is packaged in one pass"
    if not plan.hls:
        return "chunked encodes package HLS"
    if plan.extra_audio:
        return "several audio tracks are encoded in one pass"
    if plan.cover is not None:
        return "a cover picture is copied in one pass"
    return None


#: x264's rc-lookahead per preset (frames): how far past a chunk's end its rate control looks.
X264_LOOKAHEAD = {
    "ultrafast": 0, "superfast": 0, "veryfast": 10, "faster": 20, "fast": 30,
    "medium": 40, "slow": 50, "slower": 60, "veryslow": 60,
}  # fmt: skip


def margins(plan: EncodePlan, chunk: ChunkRange) -> tuple[float, float]:
    """(pre-roll, post-roll) seconds encoded around the chunk and dropped afterwards.

    The pre-roll is one keyframe interval (the chunk's encode then starts on the grid); the
    post-roll covers x264's lookahead and a couple of frames, never more than an interval."""
    interval = plan.profile.keyframe_interval
    fps = (plan.ladder.fps or plan.ladder.source_fps if plan.ladder else None) or 25.0
    ahead = (X264_LOOKAHEAD.get(plan.profile.preset, 60) + 2) / fps
    return min(chunk.start, interval), min(max(0.0, plan.duration - chunk.end), interval, ahead)


def chunk_file(chunk: ChunkRange, rendition: str) -> str:
    return f"chunk_{chunk.index:05d}_{rendition}.mp4"


def sprite_strip(chunk: ChunkRange) -> str:
    return f"chunk_{chunk.index:05d}_overview.png"


def sprite_tiles(plan: EncodePlan, chunk: ChunkRange) -> range:
    """The overview tiles this chunk holds: tile k shows the first frame at or after
    k * step, as in a single pass, so it belongs to the chunk holding that frame."""
    if plan.sprite is None:
        return range(0)
    step = plan.sprite.step
    held = [k for k in range(plan.sprite.tiles) if _holds(plan, chunk, k * step)]
    return range(held[0], held[-1] + 1) if held else range(0)


def thumbnails_in(plan: EncodePlan, chunk: ChunkRange) -> list[tuple[int, float]]:
    """(number, time) of the thumbnails this chunk holds: number n is `thumbnail_<n>.jpg`."""
    return [(j + 1, at) for j, at in enumerate(plan.thumbnails_at) if _holds(plan, chunk, at)]


def _holds(plan: EncodePlan, chunk: ChunkRange, at: float) -> bool:
    """Whether the first frame at or after `at` falls in the chunk (the last chunk also
    takes what lies past its last frame)."""
    first = first_frame_at(plan, at)
    return chunk.start <= first < chunk.end or (
        chunk.end >= plan.duration - 1e-6 and first >= chunk.end
    )


def first_frame_at(plan: EncodePlan, at: float) -> float:
    """The output time of the first frame at or after `at`, on a constant frame grid from the
    source's start (29.97 fps: 4.004 for 4); `at` itself when the rate is unknown."""
    fps = plan.ladder.fps or plan.ladder.source_fps if plan.ladder else None
    if not fps:
        return at
    return math.ceil((plan.start + at) * fps - 1e-6) / fps - plan.start


def build_chunk_args(plan: EncodePlan, source: Path, chunk: ChunkRange) -> list[str]:
    """One ffmpeg pass for a chunk: the video of every rendition (MP4, no audio), its
    thumbnails and its strip of overview tiles; names relative to the chunk's folder."""
    ladder = plan.ladder
    video = plan.info.main_video
    assert ladder is not None and video is not None
    profile = plan.profile
    pre, post = margins(plan, chunk)
    begin = plan.start + chunk.start - pre
    args = ["-ss", f"{begin:.6f}", "-t", f"{pre + chunk.duration + post:.6f}"]
    args += ["-i", f"file:{source.resolve()}"]
    prelude: list[str] = []
    if video.interlaced:
        mode = "send_field" if profile.deinterlace == "field" else "send_frame"
        prelude.append(f"bwdif=mode={mode}:deint=interlaced")
    if ladder.fps:
        prelude.append(f"fps={ladder.fps:.6f}")
    thumbnails = thumbnails_in(plan, chunk)
    tiles = sprite_tiles(plan, chunk)
    branches = len(ladder.renditions) + len(thumbnails) + (1 if tiles else 0)
    labels = "".join(f"[b{i}]" for i in range(branches))
    graph = [f"[0:{video.index}]{','.join([*prelude, f'split={branches}'])}{labels}"]
    for i, rendition in enumerate(ladder.renditions):
        graph.append(
            f"[b{i}]scale={rendition.width}:{rendition.height}:flags=bicubic,setsar=1,"
            f"format=yuv420p[v{i}]"
        )
    top = ladder.top
    offset = len(ladder.renditions)
    for j, (_, at) in enumerate(thumbnails):
        local = at - chunk.start + pre  # the chunk's frames are timed from its pre-roll
        graph.append(
            f"[b{offset + j}]select='eq(n,0)+gte(t,{local:.3f})*lt(prev_selected_t,{local:.3f})',"
            f"scale={top.width}:{top.height},setsar=1,format=yuvj420p[t{j}]"
        )
    if tiles and plan.sprite is not None:
        sprite = plan.sprite
        step, shift = f"{sprite.step:.6f}", f"{chunk.start - pre:.6f}"
        count = len(tiles)
        # Never a frame of the post-roll: a tile starting there is the next chunk's.
        before_end = f"lt(t+{shift},{chunk.end:.6f})*" if post > 0 else ""
        graph.append(
            f"[b{branches - 1}]select='{before_end}gte(t+{shift},{tiles.start}*{step})*"
            f"(isnan(prev_selected_t)+gt(floor((t+{shift})/{step}),"
            f"floor((prev_selected_t+{shift})/{step})))',"
            f"scale={sprite.tile_width}:{sprite.tile_height},setsar=1,"
            f"tile={count}x1:overlap={count - 1}:init_padding={count - 1}[sprite]"
        )
    args += ["-filter_complex", ";".join(graph)]
    for i, rendition in enumerate(ladder.renditions):
        args += ["-map", f"[v{i}]", "-an", *x264_args(profile, ladder, rendition)]
        args += [chunk_file(chunk, rendition.name)]
    image = ["-fps_mode", "passthrough", "-update", "1"]
    for j, (number, _) in enumerate(thumbnails):
        args += ["-map", f"[t{j}]", *image, "-q:v", "3", f"thumbnail_{number}.jpg"]
    if tiles:
        args += ["-map", "[sprite]", *image, sprite_strip(chunk)]
    return args


def encode_chunk(
    source: Path,
    plan: EncodePlan,
    chunk: ChunkRange,
    out_dir: Path,
    *,
    ffmpeg: str,
    on_progress: ProgressCallback | None = None,
    time_limit_factor: float = 20.0,
    time_limit_min: float = 300.0,
) -> FFmpegRun:
    """Encode one range into `out_dir`, which appears complete or not at all."""
    with staged(out_dir, replace=True) as staging:
        run = run_ffmpeg(
            ffmpeg,
            build_chunk_args(plan, source, chunk),
            duration=chunk.duration,
            cwd=staging,
            on_progress=on_progress,
            time_limit=max(time_limit_min, time_limit_factor * chunk.duration),
        )
        pre, _ = margins(plan, chunk)
        assert plan.ladder is not None
        for rendition in plan.ladder.renditions:
            keep_range(staging / chunk_file(chunk, rendition.name), pre, pre + chunk.duration)
    return run


def keep_range(path: Path, start: float, end: float) -> None:
    """Keep the packets presented in [start, end) seconds, re-timed from 0 (stream copy).

    Both ends are keyframes of closed GOPs (x264's forced keyframes are IDR frames), so no
    kept packet refers to a dropped one."""
    trimmed = path.with_name(f"{path.stem}.trim{path.suffix}")
    with av.open(str(path)) as source, av.open(str(trimmed), "w") as sink:
        stream = source.streams.video[0]
        out = sink.add_stream_from_template(stream)
        base = stream.time_base
        assert base is not None
        first, last = round(start / base), round(end / base)
        for packet in source.demux(stream):
            if packet.pts is None or not first <= packet.pts < last:
                continue
            packet.pts -= first
            if packet.dts is not None:
                packet.dts -= first
            packet.stream = out
            sink.mux(packet)
    trimmed.replace(path)

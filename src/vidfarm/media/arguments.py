"""An encode plan as one ffmpeg argument list (never a shell string).

Output names are relative: ffmpeg runs in the encode's staging folder.
"""

from __future__ import annotations

from pathlib import Path

from vidfarm.media.compose import ComposedGraph, split_label
from vidfarm.media.ladder import Ladder, Rendition
from vidfarm.media.plan import EncodePlan
from vidfarm.media.profiles import Profile

DASH_MANIFEST = "manifest.mpd"
#: x264's VBV buffer, in seconds at its rate (Pod's bufsize = maxrate is one second).
VBV_BUFFER_SECONDS = 1.0


def build_ffmpeg_args(
    plan: EncodePlan, source: Path, composed: ComposedGraph | None = None
) -> list[str]:
    """The whole pass as an argument list; output names are relative to the output folder.

    With `composed` (Pod's dressing or studio, see compose.py), its inputs replace the source
    and its labels replace the source's first video and audio streams; `plan` must then be
    planned on `composed.info`, with no cut of its own (the composition holds it)."""
    if composed is None:
        args = _input_args(plan, source)
        audio = _SourceAudio()
    else:
        args = list(composed.inputs)
        audio = _SourceAudio(composed, plan)
    if plan.ladder is not None:
        args += _video_args(plan, plan.ladder, composed, audio)
    else:
        args += _audio_only_args(plan)
    if plan.has_audio:
        args += [
            "-map",
            audio.next(),
            "-vn",
            "-c:a",
            "libmp3lame",
            "-q:a",
            str(plan.profile.mp3_quality),
            "audio.mp3",
        ]
    if plan.cover is not None:
        extension = "png" if plan.cover.codec == "png" else "jpg"
        args += [
            "-map",
            f"0:{plan.cover.index}",
            "-c",
            "copy",
            "-frames:v",
            "1",
            "-update",
            "1",
            f"thumbnail_0.{extension}",
        ]
    return args


def build_subtitle_args(plan: EncodePlan, source: Path) -> list[str]:
    """Subtitles get their own quick demux-only pass: a subtitle output receives its first
    packet only when the first cue comes, and ffmpeg reports no progress until every output
    has one. This pass decodes no video."""
    args = _input_args(plan, source)
    for stream, name in plan.subtitles:
        args += ["-map", f"0:{stream.index}", "-c:s", "webvtt", name]
    return args


def _input_args(plan: EncodePlan, source: Path) -> list[str]:
    args: list[str] = []
    if plan.start > 0:
        args += ["-ss", f"{plan.start:.3f}"]
    if plan.start > 0 or plan.duration < plan.info.duration - 0.001:
        args += ["-t", f"{plan.duration:.3f}"]
    # "file:" stops ffmpeg from reading a crafted name as a protocol (http:, concat:, ...).
    return [*args, "-i", f"file:{source.resolve()}"]


class _SourceAudio:
    """The main audio's map: `0:a:0`, or one split of the composed audio per consumer."""

    def __init__(self, composed: ComposedGraph | None = None, plan: EncodePlan | None = None):
        self.graph = ""
        self.labels = ["0:a:0"]
        if composed is not None and composed.audio is not None and plan is not None:
            ladder_outputs = 1 if plan.dash or plan.ladder is None else len(plan.ladder.renditions)
            self.graph, self.labels = split_label(
                composed.audio, ladder_outputs + 1, audio=True, prefix="ca"
            )
        self.composed = composed is not None

    def next(self) -> str:
        return self.labels.pop(0) if self.composed else self.labels[0]


def _video_args(
    plan: EncodePlan,
    ladder: Ladder,
    composed: ComposedGraph | None = None,
    audio: _SourceAudio | None = None,
) -> list[str]:
    audio = audio or _SourceAudio()
    video = plan.info.main_video
    assert video is not None
    profile = plan.profile
    prelude: list[str] = []
    if video.interlaced:
        mode = "send_field" if profile.deinterlace == "field" else "send_frame"
        prelude.append(f"bwdif=mode={mode}:deint=interlaced")
    if ladder.fps:
        prelude.append(f"fps={ladder.fps:.6f}")
    branches = len(ladder.renditions) + len(plan.thumbnails_at) + (1 if plan.sprite else 0)
    labels = [f"[b{i}]" for i in range(branches)]
    head = ",".join([*prelude, f"split={branches}"])
    source = f"[0:{video.index}]" if composed is None else composed.video
    graph = [f"{source}{head}{''.join(labels)}"]
    if composed is not None:
        graph = [composed.graph, *([audio.graph] if audio.graph else []), *graph]
    for i, rendition in enumerate(ladder.renditions):
        graph.append(
            f"[b{i}]scale={rendition.width}:{rendition.height}:flags=bicubic,setsar=1,"
            f"format=yuv420p[v{i}]"
        )
    top = ladder.top
    offset = len(ladder.renditions)
    for j, at in enumerate(plan.thumbnails_at):
        # The first frame goes out at once, then the wanted one overwrites it (-update 1):
        # ffmpeg reports no progress until every output has received a frame.
        graph.append(
            f"[b{offset + j}]select='eq(n,0)+gte(t,{at:.3f})*lt(prev_selected_t,{at:.3f})',"
            f"scale={top.width}:{top.height},setsar=1,format=yuvj420p[t{j}]"
        )
    if plan.sprite:
        sprite = plan.sprite
        step = f"{sprite.step:.6f}"
        # A sliding tile emits at every picked frame (again for progress); the last one wins.
        graph.append(
            f"[b{branches - 1}]select='isnan(prev_selected_t)+gt(floor(t/{step}),"
            f"floor(prev_selected_t/{step}))',scale={sprite.tile_width}:{sprite.tile_height},"
            f"setsar=1,tile={sprite.tiles}x1:overlap={sprite.tiles - 1}:"
            f"init_padding={sprite.tiles - 1}[sprite]"
        )
    args = ["-filter_complex", ";".join(graph)]
    if plan.dash:
        args += _dash_args(plan, ladder, audio)
    for i, rendition in enumerate([] if plan.dash else ladder.renditions):
        args += ["-map", f"[v{i}]"]
        if plan.has_audio:
            args += ["-map", audio.next()]
        # Every further audio track in the MP4s (a composition has one track: none here).
        extras = plan.extra_audio if rendition.mp4 else []
        for stream, _ in extras:
            args += ["-map", f"0:{stream.index}"]
        args += x264_args(profile, ladder, rendition)
        if plan.has_audio:
            args += aac_args(profile, rendition.audio_bitrate)
        muxers = []
        if plan.hls:
            hls = hls_options(profile, rendition.name)
            if extras:  # the variant carries video and the first audio; the rest are alternates
                hls = f"select={'0,1' if plan.has_audio else '0'}:{hls}"
            muxers.append((hls, f"{rendition.name}.m3u8"))
        if rendition.mp4:
            muxers.append(("f=mp4:movflags=+faststart", f"{rendition.name}.mp4"))
        if len(muxers) == 1:
            options, name = muxers[0]
            args += [*as_flags(options), name]
        else:  # one encoded stream, several files: ffmpeg's tee muxer
            args += ["-f", "tee", "|".join(f"[{options}]{name}" for options, name in muxers)]
    if plan.hls and not plan.dash:
        for stream, name in plan.extra_audio:  # encoded once, an HLS alternate rendition
            args += ["-map", f"0:{stream.index}", "-vn"]
            args += aac_args(profile, ladder.top.audio_bitrate)
            args += [*as_flags(hls_options(profile, name)), f"{name}.m3u8"]
    # Image outputs pass frames through as they come: the default (constant frame rate) would
    # repeat the last picture at every frame tick until the next one, encoding thousands.
    image = ["-fps_mode", "passthrough", "-update", "1"]
    for j in range(len(plan.thumbnails_at)):
        args += ["-map", f"[t{j}]", *image, "-q:v", "3", f"thumbnail_{j + 1}.jpg"]
    if plan.sprite:
        args += ["-map", "[sprite]", *image, "overview.png"]
    return args


def _dash_args(plan: EncodePlan, ladder: Ladder, audio: _SourceAudio) -> list[str]:
    """All renditions in one DASH output (one adaptation set each for video and audio)."""
    args: list[str] = []
    for i, rendition in enumerate(ladder.renditions):
        args += ["-map", f"[v{i}]", *x264_args(plan.profile, ladder, rendition, f"v:{i}")]
    sets = "id=0,streams=v"
    if plan.has_audio:
        args += ["-map", audio.next(), *aac_args(plan.profile, ladder.top.audio_bitrate)]
        sets += " id=1,streams=a"
    return [
        *args,
        "-f",
        "dash",
        "-seg_duration",
        f"{plan.profile.segment_duration:g}",
        "-use_template",
        "1",
        "-use_timeline",
        "1",
        "-adaptation_sets",
        sets,
        "-init_seg_name",
        "init-$RepresentationID$.m4s",
        "-media_seg_name",
        "chunk-$RepresentationID$-$Number%05d$.m4s",
        DASH_MANIFEST,
    ]


def _audio_only_args(plan: EncodePlan) -> list[str]:
    profile = plan.profile
    hls = hls_options(profile, "audio")
    return [
        "-map",
        "0:a:0",
        "-vn",
        *aac_args(profile, profile.audio_only_bitrate),
        "-f",
        "tee",
        f"[f=ipod:movflags=+faststart]audio.m4a|[{hls}]audio.m3u8",
    ]


def x264_args(profile: Profile, ladder: Ladder, rendition: Rendition, spec: str = "v") -> list[str]:
    """x264 options for the video stream(s) matching `spec` in the current output."""
    maxrate, bufsize = vbv_limits(rendition.max_video_bitrate, ladder.segment_duration)
    options = {
        "c": "libx264",
        "preset": profile.preset,
        "profile": profile.x264_profile,
        "crf": str(profile.crf),
        "maxrate": str(maxrate),
        "bufsize": str(bufsize),
        "g": str(ladder.gop_frames),
        "sc_threshold": "0",
        "force_key_frames": f"expr:gte(t,n_forced*{ladder.keyframe_interval:g})",
        # Keep the source's frame timing: never invent frames to fill gaps in VFR sources.
        "fps_mode": "vfr",
    }
    return [part for key, value in options.items() for part in (f"-{key}:{spec}", value)]


def vbv_limits(max_bitrate: int, segment_duration: float) -> tuple[int, int]:
    """x264 (maxrate, bufsize) that make the profile's maximum a real cap on every segment.

    Over any span of t seconds VBV lets through at most maxrate * t + bufsize bits. With
    x264's maxrate at the profile's, a full buffer let a segment's video run 1 + buffer /
    segment times over it (1.25x, 1.5x with the former 2 s buffer); the first segment always
    does, x264 starting 90 % full. Solving maxrate * (segment + buffer) = max * segment
    keeps every full segment at or under the profile's maximum.
    """
    rate = round(max_bitrate * segment_duration / (segment_duration + VBV_BUFFER_SECONDS))
    return rate, round(rate * VBV_BUFFER_SECONDS)


def aac_args(profile: Profile, bitrate: int) -> list[str]:
    return ["-c:a", "aac", "-b:a", str(bitrate), "-ar", str(profile.audio_sample_rate), "-ac", "2"]


def hls_options(profile: Profile, name: str) -> str:
    """HLS muxer options, the same whether the HLS muxer is an output of its own or a slave
    of the tee muxer.

    `max_delay=0`: the MPEG-TS muxer shifts every timestamp by twice its muxing delay. The
    ffmpeg CLI gives a direct output 0.7 s (`-muxdelay`), a tee slave gets 0: a rendition
    muxed to HLS alone (1080p, HLS only in Pod's ladder) started 1.4 s after the others.
    With `hls_single_file`, every segment is a byte range of one `<name>.ts` (Pod's layout).
    """
    flags = (
        "independent_segments+single_file" if profile.hls_single_file else "independent_segments"
    )
    segments = f"{name}.ts" if profile.hls_single_file else f"{name}_%05d.ts"
    return ":".join(
        [
            "f=hls",
            "max_delay=0",
            f"hls_time={profile.segment_duration:g}",
            "hls_playlist_type=vod",
            f"hls_flags={flags}",
            "hls_segment_type=mpegts",
            f"hls_segment_filename={segments}",
        ]
    )


def as_flags(tee_options: str) -> list[str]:
    flags: list[str] = []
    for option in tee_options.split(":"):
        key, _, value = option.partition("=")
        if key != "f":
            flags += [f"-{key}", value]
    return flags

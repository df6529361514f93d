"""Encode one source into the whole delivery set in a single ffmpeg pass.

The source is decoded once; each rendition is encoded once and muxed to HLS and, when the
profile asks, to a fast-start MP4 through ffmpeg's tee muxer. Thumbnails, the overview sprite,
MP3 and subtitles come out of the same pass. (Pod decodes twice and encodes MP4 renditions
twice; see shared/reference/pod-encoding.md.)
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vidfarm.errors import InvalidMedia, InvalidParameters
from vidfarm.media.ffmpeg import FFmpegRun, run_ffmpeg
from vidfarm.media.hls import (
    AAC_LC,
    Variant,
    codecs_of,
    master_playlist,
    measure_bandwidth,
    read_media_playlist,
)
from vidfarm.media.ladder import Ladder, Rendition, even, plan_ladder
from vidfarm.media.probe import AttachedPicture, MediaInfo, SubtitleStreamInfo, probe
from vidfarm.media.profiles import Profile, RenditionSpec

MANIFEST_NAME = "manifest.json"
MASTER_PLAYLIST = "master.m3u8"
THUMBNAIL_POSITIONS = (0.25, 0.50, 0.75)
SPRITE_MIN_DURATION = 10.0
SPRITE_TILE_HEIGHT = 90
FORMATS = ("hls", "mp4", "dash")
#: Without an explicit choice: HLS for every rendition, MP4 for those the profile flags.
DEFAULT_FORMATS = frozenset({"hls", "mp4"})
DASH_MANIFEST = "manifest.mpd"


@dataclass(frozen=True, kw_only=True)
class SpritePlan:
    tiles: int
    tile_width: int
    tile_height: int
    step: float  # seconds of media per tile


@dataclass(frozen=True, kw_only=True)
class EncodePlan:
    info: MediaInfo
    profile: Profile
    ladder: Ladder | None  # None for audio-only sources
    start: float
    duration: float  # of the output, after the cut
    thumbnails_at: list[float] = field(default_factory=list)
    sprite: SpritePlan | None = None
    subtitles: list[tuple[SubtitleStreamInfo, str]] = field(default_factory=list)
    cover: AttachedPicture | None = None
    formats: frozenset[str] = DEFAULT_FORMATS

    @property
    def has_audio(self) -> bool:
        return self.info.main_audio is not None

    @property
    def hls(self) -> bool:
        return "hls" in self.formats

    @property
    def dash(self) -> bool:
        return "dash" in self.formats


@dataclass(frozen=True, kw_only=True)
class EncodeResult:
    manifest: dict[str, Any]
    run: FFmpegRun


def plan_encode(
    info: MediaInfo,
    profile: Profile,
    *,
    start: float | None = None,
    end: float | None = None,
    only: RenditionSpec | None = None,
    formats: Collection[str] | None = None,
) -> EncodePlan:
    """Decide every output. `formats` None means the profile's choice (HLS + flagged MP4);
    an explicit set makes exactly those formats for every rendition (DASH only alone)."""
    chosen = check_formats(formats)
    cut_start, cut_end = _check_cut(info.duration, start, end)
    duration = cut_end - cut_start
    cover = info.pictures[0] if info.pictures else None
    subtitles = [
        (stream, f"subtitle_{n}_{stream.language or 'und'}.vtt")
        for n, stream in enumerate(s for s in info.subtitles if s.text_based)
    ]
    if info.main_video is None:
        return EncodePlan(
            info=info,
            profile=profile,
            ladder=None,
            start=cut_start,
            duration=duration,
            subtitles=subtitles,
            cover=cover,
            formats=frozenset({"hls"}),
        )
    ladder = plan_ladder(info, profile, only=only)
    if formats is not None:
        wants_mp4 = "mp4" in chosen
        ladder = replace(ladder, renditions=[replace(r, mp4=wants_mp4) for r in ladder.renditions])
    sprite = None
    if duration >= SPRITE_MIN_DURATION:
        tiles = 100 if duration >= 100 else 10
        sprite = SpritePlan(
            tiles=tiles,
            tile_width=even(SPRITE_TILE_HEIGHT * info.main_video.display_aspect),
            tile_height=SPRITE_TILE_HEIGHT,
            step=duration / tiles,
        )
    return EncodePlan(
        info=info,
        profile=profile,
        ladder=ladder,
        start=cut_start,
        duration=duration,
        thumbnails_at=[] if cover else [duration * p for p in THUMBNAIL_POSITIONS],
        sprite=sprite,
        subtitles=subtitles,
        cover=cover,
        formats=chosen,
    )


def check_formats(formats: Collection[str] | None) -> frozenset[str]:
    if formats is None:
        return DEFAULT_FORMATS
    chosen = frozenset(formats)
    unknown = sorted(chosen - set(FORMATS))
    if unknown or not chosen:
        raise InvalidParameters(
            f"unknown format {', '.join(unknown) or '(none)'} (allowed: {', '.join(FORMATS)})"
        )
    if "dash" in chosen and len(chosen) > 1:
        raise InvalidParameters("dash cannot be combined with other formats in one encode")
    return chosen


def _check_cut(
    media_duration: float, start: float | None, end: float | None
) -> tuple[float, float]:
    begin = 0.0 if start is None else float(start)
    finish = media_duration if end is None else float(end)
    if begin < 0 or not math.isfinite(begin):
        raise InvalidParameters(f"cut start {begin} must be >= 0")
    if finish > media_duration + 0.001:
        raise InvalidParameters(
            f"cut end {finish} is past the end of the media ({media_duration:.3f} s)"
        )
    if finish - begin < 0.1:
        raise InvalidParameters(f"cut {begin}..{finish} leaves nothing to encode")
    return begin, min(finish, media_duration)


def build_ffmpeg_args(plan: EncodePlan, source: Path) -> list[str]:
    """The whole pass as an argument list; output names are relative to the output folder."""
    args = _input_args(plan, source)
    if plan.ladder is not None:
        args += _video_args(plan, plan.ladder)
    else:
        args += _audio_only_args(plan)
    if plan.has_audio:
        args += [
            "-map",
            "0:a:0",
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


def _video_args(plan: EncodePlan, ladder: Ladder) -> list[str]:
    video = plan.info.main_video
    assert video is not None
    profile = plan.profile
    prelude: list[str] = []
    if video.interlaced:
        prelude.append("bwdif=mode=send_frame:deint=interlaced")
    if ladder.fps:
        prelude.append(f"fps={ladder.fps:.6f}")
    branches = len(ladder.renditions) + len(plan.thumbnails_at) + (1 if plan.sprite else 0)
    labels = [f"[b{i}]" for i in range(branches)]
    head = ",".join([*prelude, f"split={branches}"])
    graph = [f"[0:{video.index}]{head}{''.join(labels)}"]
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
        args += _dash_args(plan, ladder)
    for i, rendition in enumerate([] if plan.dash else ladder.renditions):
        args += ["-map", f"[v{i}]"]
        if plan.has_audio:
            args += ["-map", "0:a:0"]
        args += _x264_args(profile, ladder, rendition)
        if plan.has_audio:
            args += _aac_args(profile, rendition.audio_bitrate)
        muxers = []
        if plan.hls:
            muxers.append((_hls_options(profile, rendition.name), f"{rendition.name}.m3u8"))
        if rendition.mp4:
            muxers.append(("f=mp4:movflags=+faststart", f"{rendition.name}.mp4"))
        if len(muxers) == 1:
            options, name = muxers[0]
            args += [*_as_flags(options), name]
        else:  # one encoded stream, several files: ffmpeg's tee muxer
            args += ["-f", "tee", "|".join(f"[{options}]{name}" for options, name in muxers)]
    # Image outputs pass frames through as they come: the default (constant frame rate) would
    # repeat the last picture at every frame tick until the next one, encoding thousands.
    image = ["-fps_mode", "passthrough", "-update", "1"]
    for j in range(len(plan.thumbnails_at)):
        args += ["-map", f"[t{j}]", *image, "-q:v", "3", f"thumbnail_{j + 1}.jpg"]
    if plan.sprite:
        args += ["-map", "[sprite]", *image, "overview.png"]
    return args


def _dash_args(plan: EncodePlan, ladder: Ladder) -> list[str]:
    """All renditions in one DASH output (one adaptation set each for video and audio)."""
    args: list[str] = []
    for i, rendition in enumerate(ladder.renditions):
        args += ["-map", f"[v{i}]", *_x264_args(plan.profile, ladder, rendition, f"v:{i}")]
    sets = "id=0,streams=v"
    if plan.has_audio:
        args += ["-map", "0:a:0", *_aac_args(plan.profile, ladder.top.audio_bitrate)]
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
    hls = _hls_options(profile, "audio")
    return [
        "-map",
        "0:a:0",
        "-vn",
        *_aac_args(profile, profile.audio_only_bitrate),
        "-f",
        "tee",
        f"[f=ipod:movflags=+faststart]audio.m4a|[{hls}]audio.m3u8",
    ]


def _x264_args(
    profile: Profile, ladder: Ladder, rendition: Rendition, spec: str = "v"
) -> list[str]:
    """x264 options for the video stream(s) matching `spec` in the current output."""
    options = {
        "c": "libx264",
        "preset": profile.preset,
        "profile": profile.x264_profile,
        "crf": str(profile.crf),
        "maxrate": str(rendition.max_video_bitrate),
        "bufsize": str(rendition.max_video_bitrate * 2),
        "g": str(ladder.gop_frames),
        "sc_threshold": "0",
        "force_key_frames": f"expr:gte(t,n_forced*{ladder.keyframe_interval:g})",
        # Keep the source's frame timing: never invent frames to fill gaps in VFR sources.
        "fps_mode": "vfr",
    }
    return [part for key, value in options.items() for part in (f"-{key}:{spec}", value)]


def _aac_args(profile: Profile, bitrate: int) -> list[str]:
    return ["-c:a", "aac", "-b:a", str(bitrate), "-ar", str(profile.audio_sample_rate), "-ac", "2"]


def _hls_options(profile: Profile, name: str) -> str:
    return ":".join(
        [
            "f=hls",
            f"hls_time={profile.segment_duration:g}",
            "hls_playlist_type=vod",
            "hls_flags=independent_segments",
            "hls_segment_type=mpegts",
            f"hls_segment_filename={name}_%05d.ts",
        ]
    )


def _as_flags(tee_options: str) -> list[str]:
    flags: list[str] = []
    for option in tee_options.split(":"):
        key, _, value = option.partition("=")
        if key != "f":
            flags += [f"-{key}", value]
    return flags


ProgressCallback = Callable[[float], bool]


def encode(
    source: Path,
    out_dir: Path,
    *,
    profile: Profile,
    ffmpeg: str,
    start: float | None = None,
    end: float | None = None,
    only: RenditionSpec | None = None,
    formats: Collection[str] | None = None,
    on_progress: ProgressCallback | None = None,
    time_limit_factor: float = 20.0,
    time_limit_min: float = 300.0,
    info: MediaInfo | None = None,
) -> EncodeResult:
    """Encode `source` into `out_dir`, which appears complete or not at all.

    Work happens in a hidden sibling folder renamed into place at the end; any failure,
    cancellation or time-out removes it, so no half-written output is ever left behind.
    """
    info = info or probe(source)
    plan = plan_encode(info, profile, start=start, end=end, only=only, formats=formats)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise InvalidParameters(f"output folder {out_dir} is not empty")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        run = run_ffmpeg(
            ffmpeg,
            build_ffmpeg_args(plan, source),
            duration=plan.duration,
            cwd=staging,
            on_progress=on_progress,
            time_limit=max(time_limit_min, time_limit_factor * plan.duration),
        )
        if plan.subtitles:
            run_ffmpeg(
                ffmpeg,
                build_subtitle_args(plan, source),
                duration=plan.duration,
                cwd=staging,
                time_limit=max(time_limit_min, plan.duration),
            )
        manifest = describe_outputs(plan, staging)
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if out_dir.exists():
            out_dir.rmdir()
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return EncodeResult(manifest=manifest, run=run)


def describe_outputs(plan: EncodePlan, folder: Path) -> dict[str, Any]:
    """Write the master playlist and list every output with its size and checksum."""
    outputs: list[dict[str, Any]] = []
    if plan.ladder is None:
        outputs += _hls_outputs(plan, folder)
        outputs.append(
            _entry(
                folder,
                "audio.m4a",
                "audio",
                codecs=AAC_LC,
                bandwidth=plan.profile.audio_only_bitrate,
            )
        )
    elif plan.dash:
        outputs.append(_dash_entry(folder))
    else:
        if plan.hls:
            outputs += _hls_outputs(plan, folder)
        for rendition in plan.ladder.renditions:
            if rendition.mp4:
                name = f"{rendition.name}.mp4"
                outputs.append(
                    _entry(
                        folder,
                        name,
                        "mp4",
                        width=rendition.width,
                        height=rendition.height,
                        codecs=codecs_of(folder / name),
                    )
                )
    if (folder / "audio.mp3").exists():
        outputs.append(_entry(folder, "audio.mp3", "audio", codecs="mp3"))
    for thumbnail in sorted(folder.glob("thumbnail_*")):
        outputs.append(_entry(folder, thumbnail.name, "thumbnail"))
    if plan.sprite and (folder / "overview.png").exists():
        sprite = plan.sprite
        (folder / "overview.vtt").write_text(overview_vtt(sprite, plan.duration), encoding="utf-8")
        outputs.append(
            _entry(
                folder,
                "overview.png",
                "overview_sprite",
                width=sprite.tile_width * sprite.tiles,
                height=sprite.tile_height,
            )
        )
        outputs.append(_entry(folder, "overview.vtt", "overview_vtt"))
    for stream, name in plan.subtitles:
        if (folder / name).exists():
            entry = _entry(folder, name, "subtitle")
            entry["language"] = stream.language
            outputs.append(entry)
    source = plan.info.to_dict()
    source["path"] = Path(source["path"]).name
    return {"duration": round(plan.duration, 3), "source": source, "outputs": outputs}


def _hls_outputs(plan: EncodePlan, folder: Path) -> list[dict[str, Any]]:
    """Measure each variant, write the master playlist, and describe both."""
    entries: list[dict[str, Any]] = []
    variants: list[Variant] = []
    if plan.ladder is None:
        variant = _variant(folder, "audio.m3u8", plan)
        variants.append(variant)
        entries.append(_hls_entry(folder, variant, None, None))
    else:
        fps = plan.ladder.fps or plan.ladder.source_fps
        for rendition in plan.ladder.renditions:
            variant = replace(
                _variant(folder, f"{rendition.name}.m3u8", plan),
                resolution=(rendition.width, rendition.height),
                frame_rate=fps,
            )
            variants.append(variant)
            entries.append(_hls_entry(folder, variant, rendition.width, rendition.height))
    (folder / MASTER_PLAYLIST).write_text(master_playlist(variants), encoding="utf-8")
    peak = max(v.bandwidth for v in variants)
    return [_entry(folder, MASTER_PLAYLIST, "hls_master", bandwidth=peak), *entries]


def _dash_entry(folder: Path) -> dict[str, Any]:
    if not (folder / DASH_MANIFEST).exists():
        raise InvalidMedia("ffmpeg produced no DASH manifest: the source has nothing to encode")
    entry = _entry(folder, DASH_MANIFEST, "dash_manifest")
    entry["segments"] = [
        {"path": p.name, "size": p.stat().st_size, "sha256": sha256_of(p)}
        for p in sorted(folder.glob("*.m4s"))
    ]
    return entry


def _variant(folder: Path, playlist: str, plan: EncodePlan) -> Variant:
    if not (folder / playlist).exists():
        raise InvalidMedia(f"ffmpeg produced no {playlist}: the source has nothing to encode")
    segments = read_media_playlist(folder / playlist)
    if not segments:
        raise InvalidMedia(f"{playlist} has no segment: the source has no decodable frames")
    peak, average = measure_bandwidth(folder, segments)
    return Variant(
        playlist=playlist,
        bandwidth=peak,
        average_bandwidth=average,
        codecs=codecs_of(folder / segments[0].uri),
    )


def _hls_entry(
    folder: Path, variant: Variant, width: int | None, height: int | None
) -> dict[str, Any]:
    entry = _entry(
        folder,
        variant.playlist,
        "hls_variant",
        width=width,
        height=height,
        bandwidth=variant.bandwidth,
        codecs=variant.codecs,
    )
    entry["average_bandwidth"] = variant.average_bandwidth
    entry["segments"] = [
        {
            "path": s.uri,
            "size": (folder / s.uri).stat().st_size,
            "sha256": sha256_of(folder / s.uri),
            "duration": s.duration,
        }
        for s in read_media_playlist(folder / variant.playlist)
    ]
    return entry


def _entry(
    folder: Path,
    name: str,
    kind: str,
    *,
    width: int | None = None,
    height: int | None = None,
    bandwidth: int | None = None,
    codecs: str | None = None,
) -> dict[str, Any]:
    path = folder / name
    return {
        "kind": kind,
        "path": name,
        "width": width,
        "height": height,
        "bandwidth": bandwidth,
        "codecs": codecs,
        "size": path.stat().st_size,
        "sha256": sha256_of(path),
    }


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def overview_vtt(sprite: SpritePlan, duration: float) -> str:
    lines = ["WEBVTT", ""]
    for i in range(sprite.tiles):
        begin = i * sprite.step
        finish = min(duration, (i + 1) * sprite.step)
        lines += [
            f"{_timestamp(begin)} --> {_timestamp(finish)}",
            f"overview.png#xywh={i * sprite.tile_width},0,{sprite.tile_width},{sprite.tile_height}",
            "",
        ]
    return "\n".join(lines)


def _timestamp(seconds: float) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}.{millis:03d}"

"""Benchmark vidfarm's single-pass encode against Esup-Pod's passes and a bare-ffmpeg floor.

Usage (from the repository root):

    .venv/bin/python bench/encode_vs_pod.py [--duration 30] [--preset veryfast] [--crf 20]
                                            [--repeat 1] [--breakdown]

One 1920x1080 30 fps source with noise and a stereo sine is generated once (not timed), then
these are run side by side, interleaved, with the same x264 preset and CRF:

  vidfarm  vidfarm.media.encode.encode(): one ffmpeg (decode once, each rendition encoded once,
           HLS + MP4 through the tee muxer, MP3, thumbnails and sprite from the same pass), plus
           the Python work around it (probe, master playlist, manifest hashing).
  pod      Esup-Pod's way (shared/reference/pod-encoding.md): one ffmpeg for the MP4 renditions,
           a second for the HLS renditions, one for the MP3, one per thumbnail (input seeking)
           and one for the overview sprite.
  floor    the least work that yields the same ladder: one ffmpeg, decode once, the three
           renditions with vidfarm's exact x264/AAC options, written to null outputs.

With --breakdown, variants of vidfarm's own ffmpeg command (taken from build_ffmpeg_args) are
run as well, adding one piece at a time to the floor, to show where any overhead goes.

CPU time is user + system time: ffmpeg children through os.wait4, the Python process through
getrusage(RUSAGE_SELF) deltas. Medians over --repeat runs are reported, and the results are
written to bench/results/encode_vs_pod.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, get_args

from vidfarm.media.arguments import build_ffmpeg_args
from vidfarm.media.encode import encode
from vidfarm.media.plan import EncodePlan, plan_encode
from vidfarm.media.probe import probe
from vidfarm.media.profiles import Profile, load_profile
from vidfarm.media.tools import ffmpeg_executable

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_FILE = BENCH_DIR / "results" / "encode_vs_pod.json"
FFMPEG_FLAGS = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning", "-y"]
PRESETS = get_args(Profile.model_fields["preset"].annotation)  # what a profile accepts

# Esup-Pod's default VIDEO_RENDITIONS (shared/reference/pod-encoding.md).
POD_RENDITIONS = (
    # height, maxrate, audio bitrate, also as MP4
    (360, "1000k", "96k", True),
    (720, "3000k", "128k", True),
    (1080, "4500k", "192k", False),
)
POD_VIDEO_BITRATES = {360: 750_000, 720: 2_000_000, 1080: 3_000_000}
POD_THUMBNAIL_POSITIONS = (0.25, 0.50, 0.75)
POD_SPRITE_TILE_HEIGHT = 90

TARGETS = {
    "vidfarm_cpu_over_pod_cpu": ("<=", 0.70),
    "vidfarm_wall_over_pod_wall": ("<", 1.00),
    "vidfarm_cpu_over_floor_cpu": ("<=", 1.10),
}
EXPECTED_VIDFARM_KINDS = {
    "hls_master": 1,
    "hls_variant": 3,
    "mp4": 2,
    "audio": 1,
    "thumbnail": 3,
    "overview_sprite": 1,
}


# --------------------------------------------------------------------------- measurement


@dataclass
class ProcessRun:
    label: str
    cpu_seconds: float
    wall_seconds: float
    max_rss_mib: float


@dataclass
class Measurement:
    approach: str
    cpu_seconds: float  # everything: ffmpeg children and, for vidfarm, the Python side
    wall_seconds: float
    processes: list[ProcessRun] = field(default_factory=list)
    python_cpu_seconds: float = 0.0
    output_bytes: int = 0
    notes: dict[str, Any] = field(default_factory=dict)


class BenchError(RuntimeError):
    pass


def run_process(label: str, command: Sequence[str], cwd: Path | None = None) -> ProcessRun:
    """Run one command to completion, measuring it with wait4 (CPU of it and its threads)."""
    with tempfile.TemporaryFile() as errors:
        started = time.monotonic()
        process = subprocess.Popen(
            list(command),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            errors.seek(0)
            tail = errors.read().decode(errors="replace").strip().splitlines()[-15:]
            raise BenchError(f"{label} failed (exit {process.returncode}):\n" + "\n".join(tail))
    return ProcessRun(
        label=label,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        wall_seconds=wall,
        max_rss_mib=usage.ru_maxrss / 1024,
    )


def self_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def system_busy_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, from /proc/stat (0 if absent)."""
    try:
        fields = Path("/proc/stat").read_text(encoding="ascii").splitlines()[0].split()[1:]
    except OSError:
        return 0.0, 0.0
    ticks = [int(x) for x in fields] + [0] * 10
    user, nice, system, _idle, _iowait, irq, softirq, steal = ticks[:8]
    hz = os.sysconf("SC_CLK_TCK")
    return (user + nice + system + irq + softirq) / hz, steal / hz


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# --------------------------------------------------------------------------- the source


def make_source(
    ffmpeg: str, path: Path, *, duration: float, crf: int, maxrate: str, gop: int
) -> None:
    """A high-quality H.264 + AAC source, capped like a camcorder or mezzanine upload."""
    command = [
        ffmpeg,
        *FFMPEG_FLAGS,
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=size=1920x1080:rate=30:duration={duration:g}",
        "-f",
        "lavfi",
        "-i",
        f"sine=frequency=440:sample_rate=48000:duration={duration:g}",
        "-vf",
        "noise=alls=8:allf=t",
        "-c:v",
        "libx264",
        "-preset",
        "veryfast",
        "-crf",
        str(crf),
        "-maxrate",
        maxrate,
        "-bufsize",
        maxrate,
        "-pix_fmt",
        "yuv420p",
        "-g",
        str(gop),
        "-c:a",
        "aac",
        "-b:a",
        "192k",
        "-ac",
        "2",
        "-movflags",
        "+faststart",
        str(path),
    ]
    run_process("make source", command)


# --------------------------------------------------------------------------- a. vidfarm


def run_vidfarm(ffmpeg: str, source: Path, work: Path, profile: Profile) -> Measurement:
    out_dir = work / "vidfarm"
    cpu_before = self_cpu()
    started = time.monotonic()
    result = encode(source, out_dir, profile=profile, ffmpeg=ffmpeg)
    wall = time.monotonic() - started
    python_cpu = self_cpu() - cpu_before
    kinds = Counter(str(o["kind"]) for o in result.manifest["outputs"])
    missing = {
        kind: (count, kinds.get(kind, 0))
        for kind, count in EXPECTED_VIDFARM_KINDS.items()
        if kinds.get(kind, 0) < count
    }
    if missing:
        raise BenchError(f"vidfarm's manifest lacks outputs (expected, found): {missing}")
    for output in result.manifest["outputs"]:
        path = out_dir / str(output["path"])
        if not path.is_file() or path.stat().st_size == 0:
            raise BenchError(f"vidfarm's manifest lists {path.name}, which is missing or empty")
    run = result.run
    return Measurement(
        approach="vidfarm",
        cpu_seconds=run.cpu_seconds + python_cpu,
        wall_seconds=wall,
        processes=[ProcessRun("ffmpeg (single pass)", run.cpu_seconds, run.wall_seconds, 0.0)],
        python_cpu_seconds=python_cpu,
        output_bytes=folder_bytes(out_dir),
        notes={"manifest_kinds": dict(kinds), "python_wall_seconds": wall - run.wall_seconds},
    )


# --------------------------------------------------------------------------- b. Esup-Pod


def pod_rendition_args(
    height: int, maxrate: str, audio_bitrate: str, *, preset: str, crf: int, level: bool
) -> list[str]:
    """Pod's per-rendition options (reference), with the benchmark's preset and CRF."""
    return [
        "-map",
        "0:v:0",
        "-map",
        "0:a:0",
        "-c:v",
        "libx264",
        "-vf",
        f"scale=-2:{height}",
        "-preset",
        preset,
        "-profile:v",
        "high",
        "-pix_fmt",
        "yuv420p",
        *(["-level", "3"] if level else []),
        "-crf",
        str(crf),
        "-maxrate",
        maxrate,
        "-bufsize",
        maxrate,
        "-sc_threshold",
        "0",
        "-force_key_frames",
        "expr:gte(t,n_forced*1)",
        "-max_muxing_queue_size",
        "4000",
        "-c:a",
        "aac",
        "-ar",
        "48000",
        "-b:a",
        audio_bitrate,
    ]


def pod_commands(
    ffmpeg: str,
    source: Path,
    duration: float,
    *,
    preset: str,
    crf: int,
    level: bool,
    sprite_tile_width: int,
) -> list[tuple[str, list[str]]]:
    head = [ffmpeg, *FFMPEG_FLAGS]
    mp4 = [*head, "-i", str(source)]
    hls = [*head, "-i", str(source)]
    for height, maxrate, audio, as_mp4 in POD_RENDITIONS:
        options = pod_rendition_args(height, maxrate, audio, preset=preset, crf=crf, level=level)
        if as_mp4:
            mp4 += [*options, "-movflags", "faststart", f"{height}p.mp4"]
        hls += [
            *options,
            "-hls_playlist_type",
            "vod",
            "-hls_time",
            "2",
            "-hls_flags",
            "single_file",
            f"{height}p.m3u8",
        ]
    commands = [("MP4 pass (360p, 720p)", mp4), ("HLS pass (360p, 720p, 1080p)", hls)]
    commands.append(
        (
            "MP3",
            [
                *head,
                "-i",
                str(source),
                "-vn",
                "-codec:a",
                "libmp3lame",
                "-qscale:a",
                "2",
                "audio_192k.mp3",
            ],
        )
    )
    for n, position in enumerate(POD_THUMBNAIL_POSITIONS, start=1):
        at = duration * position
        commands.append(
            (
                f"thumbnail {n} ({position:.0%})",
                [
                    *head,
                    "-ss",
                    f"{at:.3f}",
                    "-i",
                    str(source),
                    "-an",
                    "-frames:v",
                    "1",
                    "-q:v",
                    "3",
                    f"thumbnail_{n}.jpg",
                ],
            )
        )
    tiles = 100 if duration >= 100 else 10
    commands.append(
        (
            "overview sprite",
            [
                *head,
                "-i",
                str(source),
                "-an",
                "-vf",
                f"fps={tiles}/{duration:.6f},scale={sprite_tile_width}:{POD_SPRITE_TILE_HEIGHT},"
                f"setsar=1,tile={tiles}x1",
                "-frames:v",
                "1",
                "overview.png",
            ],
        )
    )
    return commands


def pod_master_playlist() -> str:
    """Pod concatenates text: BANDWIDTH from the video bitrate alone, no CODECS."""
    lines = ["#EXTM3U", "#EXT-X-VERSION:3"]
    for height, *_ in POD_RENDITIONS:
        width = round(height * 16 / 9 / 2) * 2
        lines += [
            f"#EXT-X-STREAM-INF:BANDWIDTH={POD_VIDEO_BITRATES[height]},RESOLUTION={width}x{height}",
            f"{height}p.m3u8",
        ]
    return "\n".join(lines) + "\n"


def run_pod(
    ffmpeg: str,
    source: Path,
    work: Path,
    duration: float,
    *,
    preset: str,
    crf: int,
    level: bool,
    sprite_tile_width: int,
) -> Measurement:
    out_dir = work / "pod"
    out_dir.mkdir()
    started = time.monotonic()
    processes = [
        run_process(label, command, cwd=out_dir)
        for label, command in pod_commands(
            ffmpeg,
            source,
            duration,
            preset=preset,
            crf=crf,
            level=level,
            sprite_tile_width=sprite_tile_width,
        )
    ]
    (out_dir / "livestream.m3u8").write_text(pod_master_playlist(), encoding="utf-8")
    wall = time.monotonic() - started
    expected = [
        "360p.mp4",
        "720p.mp4",
        "360p.m3u8",
        "360p.ts",
        "720p.m3u8",
        "720p.ts",
        "1080p.m3u8",
        "1080p.ts",
        "audio_192k.mp3",
        "thumbnail_1.jpg",
        "thumbnail_2.jpg",
        "thumbnail_3.jpg",
        "overview.png",
        "livestream.m3u8",
    ]
    bad = [n for n in expected if not (out_dir / n).is_file() or (out_dir / n).stat().st_size == 0]
    if bad:
        raise BenchError(f"Pod's way did not produce: {', '.join(bad)}")
    return Measurement(
        approach="pod",
        cpu_seconds=sum(p.cpu_seconds for p in processes),
        wall_seconds=wall,
        processes=processes,
        output_bytes=folder_bytes(out_dir),
    )


# --------------------------------------------------------------------------- c. the floor
# The floor and the breakdown variants are cut out of vidfarm's own argument list, so they use
# exactly its x264, AAC and filter options whatever they are today.

_FLAG_OPTIONS = {"-vn", "-an", "-sn", "-dn"}
_SPLIT = re.compile(r"^(?P<input>\[[^\]]+\])(?P<prelude>.*?)split=\d+(?P<labels>(?:\[[^\]]+\])+)$")
_LABELS = re.compile(r"\[([^\]]+)\]")


@dataclass
class OutputGroup:
    kind: str  # rendition, thumbnail, sprite, mp3, other
    options: list[str]  # everything before the output name
    target: str


@dataclass
class ParsedArgs:
    inputs: list[str]
    head: str  # "[0:0]split=N[b0]..." without the labels
    prelude: str
    chains: dict[str, str]  # output label ("v0", "t1", "sprite") -> "[bK]...[label]"
    branch_of: dict[str, str]  # output label -> split label
    outputs: list[OutputGroup]


def parse_vidfarm_args(args: list[str]) -> ParsedArgs:
    i = args.index("-filter_complex")
    inputs, graph = args[:i], args[i + 1]
    parts = graph.split(";")
    split = _SPLIT.match(parts[0])
    if not split:
        raise BenchError(f"unexpected head of vidfarm's filter graph: {parts[0]}")
    chains: dict[str, str] = {}
    branch_of: dict[str, str] = {}
    for chain in parts[1:]:
        labels = _LABELS.findall(chain)
        chains[labels[-1]] = chain
        branch_of[labels[-1]] = labels[0]
    outputs: list[OutputGroup] = []
    pending: list[str] = []
    rest = args[i + 2 :]
    j = 0
    while j < len(rest):
        token = rest[j]
        if token.startswith("-") and token != "-":
            pending.append(token)
            if token not in _FLAG_OPTIONS:
                pending.append(rest[j + 1])
                j += 1
        else:
            outputs.append(OutputGroup(_kind_of(pending), pending, token))
            pending = []
        j += 1
    return ParsedArgs(
        inputs, split.group("input"), split.group("prelude"), chains, branch_of, outputs
    )


def _kind_of(options: list[str]) -> str:
    maps = [options[k + 1] for k, t in enumerate(options) if t == "-map"]
    if any(re.fullmatch(r"\[v\d+\]", m) for m in maps):
        return "rendition"
    if any(re.fullmatch(r"\[t\d+\]", m) for m in maps):
        return "thumbnail"
    if "[sprite]" in maps:
        return "sprite"
    if "libmp3lame" in options:
        return "mp3"
    return "other"


def _strip_format(options: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for k, token in enumerate(options):
        if skip:
            skip = False
            continue
        if token == "-f" or (token.startswith("-hls") and k + 1 < len(options)):
            skip = True
            continue
        kept.append(token)
    return kept


def variant_args(
    parsed: ParsedArgs, kinds: set[str], *, null_renditions: bool, image_passthrough: bool = False
) -> list[str]:
    """vidfarm's command keeping only the output groups of `kinds` (renditions always)."""
    groups = [g for g in parsed.outputs if g.kind == "rendition" or g.kind in kinds]
    labels = [
        m
        for g in groups
        for k, m in enumerate(g.options)
        if k > 0 and g.options[k - 1] == "-map" and m.startswith("[")
    ]
    labels = [m.strip("[]") for m in labels]
    branches = [parsed.branch_of[label] for label in labels]
    head = (
        parsed.head
        + parsed.prelude
        + f"split={len(branches)}"
        + "".join(f"[{b}]" for b in branches)
    )
    graph = ";".join([head, *(parsed.chains[label] for label in labels)])
    args = [*parsed.inputs, "-filter_complex", graph]
    for group in groups:
        if group.kind == "rendition" and null_renditions:
            args += [*_strip_format(group.options), "-f", "null", "-"]
        elif (
            group.kind in ("thumbnail", "sprite")
            and image_passthrough
            and "-fps_mode" not in group.options
        ):
            args += [*group.options, "-fps_mode", "passthrough", group.target]
        else:
            args += [*group.options, group.target]
    return args


def run_plain(label: str, ffmpeg: str, args: list[str], cwd: Path) -> Measurement:
    cwd.mkdir()
    started = time.monotonic()
    process = run_process(label, [ffmpeg, *FFMPEG_FLAGS, *args], cwd=cwd)
    return Measurement(
        approach=label,
        cpu_seconds=process.cpu_seconds,
        wall_seconds=time.monotonic() - started,
        processes=[process],
        output_bytes=folder_bytes(cwd),
    )


BREAKDOWN: tuple[tuple[str, set[str], bool, bool], ...] = (
    # label, output kinds added to the renditions, renditions to null?, image outputs with
    # -fps_mode passthrough? (without it ffmpeg pads an image output to constant frame rate,
    # so a thumbnail picked at t is written about t * fps times)
    ("floor + MP3", {"mp3"}, True, False),
    ("floor + thumbnails", {"thumbnail"}, True, False),
    ("floor + thumbnails, no frame dup", {"thumbnail"}, True, True),
    ("floor + sprite", {"sprite"}, True, False),
    ("floor + sprite, no frame dup", {"sprite"}, True, True),
    ("floor + HLS/MP4 muxing", set(), False, False),
    ("vidfarm's ffmpeg alone", {"mp3", "thumbnail", "sprite", "other"}, False, False),
    ("vidfarm's ffmpeg, no frame dup", {"mp3", "thumbnail", "sprite", "other"}, False, True),
)


# --------------------------------------------------------------------------- report


def median_of(runs: list[Measurement]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "cpu_seconds": statistics.median(r.cpu_seconds for r in runs),
        "wall_seconds": statistics.median(r.wall_seconds for r in runs),
        "python_cpu_seconds": statistics.median(r.python_cpu_seconds for r in runs),
        "output_bytes": runs[-1].output_bytes,
        "others_cpu_seconds": statistics.median(
            float(r.notes.get("others_cpu_seconds", 0.0)) for r in runs
        ),
        "processes": [],
    }
    for k, process in enumerate(runs[0].processes):
        summary["processes"].append(
            {
                "label": process.label,
                "cpu_seconds": statistics.median(r.processes[k].cpu_seconds for r in runs),
                "wall_seconds": statistics.median(r.processes[k].wall_seconds for r in runs),
                "max_rss_mib": max(r.processes[k].max_rss_mib for r in runs),
            }
        )
    return summary


def check(ratio: float, target: tuple[str, float]) -> bool:
    op, bound = target
    return ratio <= bound if op == "<=" else ratio < bound


def machine() -> dict[str, Any]:
    model = platform.processor() or ""
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in lscpu.splitlines()
                if line.startswith("Model name")
            ),
            model,
        )
    except (OSError, subprocess.CalledProcessError):
        pass
    return {
        "nproc": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)),
        "cpu": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def vidfarm_media_digest() -> str:
    """SHA-256 over vidfarm's media package sources: which code was measured."""
    import hashlib

    import vidfarm.media

    digest = hashlib.sha256()
    for path in sorted(Path(vidfarm.media.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def ffmpeg_version(ffmpeg: str) -> str:
    out = subprocess.run(
        [ffmpeg, "-hide_banner", "-version"], capture_output=True, text=True, check=True
    ).stdout
    return out.splitlines()[0] if out else "?"


def print_table(medians: dict[str, dict[str, Any]], repeat: int) -> None:
    print(f"\nMedian of {repeat} run(s):")
    print(f"{'approach':<28} {'CPU s':>8} {'wall s':>8} {'outputs MB':>11} {'others CPU s':>13}")
    for name, m in medians.items():
        print(
            f"{name:<28} {m['cpu_seconds']:>8.2f} {m['wall_seconds']:>8.2f} "
            f"{m['output_bytes'] / 1e6:>11.1f} {m['others_cpu_seconds']:>13.1f}"
        )
    for name in ("vidfarm", "pod"):
        print(f"\n{name}, per process (median):")
        for p in medians[name]["processes"]:
            rss = f"{p['max_rss_mib']:.0f} MiB" if p["max_rss_mib"] else "-"
            print(
                f"  {p['label']:<32} CPU {p['cpu_seconds']:>7.2f} s  "
                f"wall {p['wall_seconds']:>7.2f} s  max RSS {rss}"
            )
        if name == "vidfarm":
            print(
                f"  {'Python (probe, playlists, hashes)':<32} CPU "
                f"{medians[name]['python_cpu_seconds']:>7.2f} s"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=30.0, help="source length, seconds")
    parser.add_argument("--preset", default="veryfast", choices=PRESETS)
    parser.add_argument("--crf", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--source-crf", type=int, default=16, help="x264 CRF of the generated source (high quality)"
    )
    parser.add_argument(
        "--source-maxrate",
        default="25M",
        help="bitrate cap of the generated source (noise makes it huge otherwise)",
    )
    parser.add_argument(
        "--source-gop",
        type=int,
        default=60,
        help="keyframe interval of the generated source, frames",
    )
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="also run vidfarm's command piece by piece on top of the floor",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        help="keep the source and the last outputs in this folder",
    )
    parser.add_argument("--output", type=Path, default=RESULTS_FILE)
    options = parser.parse_args(argv)
    if options.repeat < 1 or options.duration < 1:
        parser.error("--repeat and --duration must be at least 1")

    ffmpeg = ffmpeg_executable()
    media_digest = vidfarm_media_digest()  # before running: the code that gets imported
    profile = load_profile("default").model_copy(
        update={"preset": options.preset, "crf": options.crf}
    )
    root = Path(tempfile.mkdtemp(prefix="vidfarm-bench-"))
    try:
        source = root / "source.mp4"
        print(
            f"ffmpeg: {ffmpeg}\nGenerating a {options.duration:g} s 1080p30 source...", flush=True
        )
        make_source(
            ffmpeg,
            source,
            duration=options.duration,
            crf=options.source_crf,
            maxrate=options.source_maxrate,
            gop=options.source_gop,
        )
        info = probe(source)
        plan: EncodePlan = plan_encode(info, profile)
        vidfarm_args = build_ffmpeg_args(plan, source)
        parsed = parse_vidfarm_args(vidfarm_args)
        floor_args = variant_args(parsed, set(), null_renditions=True)
        sprite_width = plan.sprite.tile_width if plan.sprite else 160
        source_bitrate = source.stat().st_size * 8 / info.duration
        print(
            f"source: {source.stat().st_size / 1e6:.1f} MB, {source_bitrate / 1e6:.1f} Mb/s, "
            f"{info.duration:.2f} s"
        )

        approaches: list[str] = ["vidfarm", "pod", "floor"]
        if options.breakdown:
            approaches += [b[0] for b in BREAKDOWN]
        runs: dict[str, list[Measurement]] = {name: [] for name in approaches}
        for r in range(options.repeat):
            for name in approaches:
                work = root / f"run-{r}-{re.sub(r'[^a-z0-9]+', '-', name.lower())}"
                work.mkdir()
                print(f"[{r + 1}/{options.repeat}] {name}...", end=" ", flush=True)
                busy_before, steal_before = system_busy_seconds()
                if name == "vidfarm":
                    m = run_vidfarm(ffmpeg, source, work, profile)
                elif name == "pod":
                    m = run_pod(
                        ffmpeg,
                        source,
                        work,
                        info.duration,
                        preset=options.preset,
                        crf=options.crf,
                        level=True,
                        sprite_tile_width=sprite_width,
                    )
                elif name == "floor":
                    m = run_plain("floor", ffmpeg, floor_args, work / "out")
                else:
                    label, kinds, null, passthrough = next(b for b in BREAKDOWN if b[0] == name)
                    args = variant_args(
                        parsed, kinds, null_renditions=null, image_passthrough=passthrough
                    )
                    m = run_plain(label, ffmpeg, args, work / "out")
                    m.notes["args"] = args
                busy_after, steal_after = system_busy_seconds()
                # CPU the rest of the machine used meanwhile: how noisy this run was.
                m.notes["others_cpu_seconds"] = max(0.0, busy_after - busy_before - m.cpu_seconds)
                m.notes["steal_seconds"] = steal_after - steal_before
                print(
                    f"CPU {m.cpu_seconds:.2f} s, wall {m.wall_seconds:.2f} s "
                    f"(others used {m.notes['others_cpu_seconds']:.1f} CPU s meanwhile)",
                    flush=True,
                )
                runs[name].append(m)
                if options.keep and r == options.repeat - 1:
                    options.keep.mkdir(parents=True, exist_ok=True)
                    shutil.copytree(work, options.keep / work.name, dirs_exist_ok=True)
                shutil.rmtree(work)
        if options.keep:
            shutil.copy2(source, options.keep / source.name)

        medians = {name: median_of(rs) for name, rs in runs.items()}
        v, p, f = medians["vidfarm"], medians["pod"], medians["floor"]
        ratios = {
            "vidfarm_cpu_over_pod_cpu": v["cpu_seconds"] / p["cpu_seconds"],
            "vidfarm_wall_over_pod_wall": v["wall_seconds"] / p["wall_seconds"],
            "vidfarm_cpu_over_floor_cpu": v["cpu_seconds"] / f["cpu_seconds"],
            "vidfarm_ffmpeg_cpu_over_floor_cpu": v["processes"][0]["cpu_seconds"]
            / f["cpu_seconds"],
            "pod_cpu_over_floor_cpu": p["cpu_seconds"] / f["cpu_seconds"],
        }
        fixed = medians.get("vidfarm's ffmpeg, no frame dup")
        if fixed:
            # What vidfarm would cost with -fps_mode passthrough on its image outputs.
            projected = fixed["cpu_seconds"] + v["python_cpu_seconds"]
            ratios["projected_fixed_vidfarm_cpu_over_pod_cpu"] = projected / p["cpu_seconds"]
            ratios["projected_fixed_vidfarm_cpu_over_floor_cpu"] = projected / f["cpu_seconds"]
        met = {name: check(ratios[name], target) for name, target in TARGETS.items()}
        print_table(medians, options.repeat)
        print("\nRatios:")
        for name, value in ratios.items():
            target = TARGETS.get(name)
            verdict = ""
            if target:
                verdict = f"  target {target[0]} {target[1]:.2f}: " + (
                    "met" if met[name] else "NOT met"
                )
            print(f"  {name:<36} {value:.3f}{verdict}")

        result = {
            "benchmark": "encode_vs_pod",
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "command": " ".join(
                [
                    ".venv/bin/python",
                    "bench/encode_vs_pod.py",
                    *(argv if argv is not None else sys.argv[1:]),
                ]
            ),
            "options": {
                k: (str(val) if isinstance(val, Path) else val) for k, val in vars(options).items()
            },
            "machine": machine(),
            "vidfarm_media_sha256": media_digest,
            "ffmpeg": {"path": ffmpeg, "version": ffmpeg_version(ffmpeg)},
            "source": {
                "width": 1920,
                "height": 1080,
                "fps": 30,
                "duration": info.duration,
                "bytes": source.stat().st_size,
                "bitrate": round(source_bitrate),
            },
            "vidfarm_ffmpeg_args": vidfarm_args,
            "floor_ffmpeg_args": floor_args,
            "pod_commands": [
                {"label": label, "args": command[1:]}
                for label, command in pod_commands(
                    ffmpeg,
                    source,
                    info.duration,
                    preset=options.preset,
                    crf=options.crf,
                    level=True,
                    sprite_tile_width=sprite_width,
                )
            ],
            "medians": medians,
            "ratios": ratios,
            "targets": {
                name: {"op": op, "bound": bound, "met": met[name]}
                for name, (op, bound) in TARGETS.items()
            },
            "runs": {name: [asdict(m) for m in rs] for name, rs in runs.items()},
        }
        options.output.parent.mkdir(parents=True, exist_ok=True)
        options.output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"\nWrote {options.output}")
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

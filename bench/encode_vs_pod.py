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
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, get_args

from _floor import BREAKDOWN, parse_vidfarm_args, run_plain, variant_args
from _harness import (
    BenchError,
    Measurement,
    ProcessRun,
    check,
    ffmpeg_version,
    folder_bytes,
    machine,
    make_source,
    median_of,
    self_cpu,
    system_busy_seconds,
    vidfarm_media_digest,
)
from _pod_passes import pod_commands, run_pod
from vidfarm.media.arguments import build_ffmpeg_args
from vidfarm.media.encode import encode
from vidfarm.media.plan import EncodePlan, plan_encode
from vidfarm.media.probe import probe
from vidfarm.media.profiles import Profile, load_profile
from vidfarm.media.tools import ffmpeg_executable

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_FILE = BENCH_DIR / "results" / "encode_vs_pod.json"
PRESETS = get_args(Profile.model_fields["preset"].annotation)  # what a profile accepts

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

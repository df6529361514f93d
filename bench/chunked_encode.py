"""Chunked encoding: turnaround and CPU against a single pass, and a model for N workers.

    .venv/bin/python bench/chunked_encode.py [--duration 120] [--preset veryfast]

On one generated 1080p source (the default profile's ladder, 360p/720p/1080p, at `--preset`),
side by side in one run:

1. `single`: `media.encode.encode()`, one ffmpeg pass (what one single-slot worker does).
2. `chunked x2`: the chunks (`media.chunks.encode_chunk`) two at a time, as two single-slot
   workers take them, then `media.stitch.stitch` - the functions the `encode_chunk` and
   `stitch` job kinds and `vidfarm encode --parallel` run.
3. `one chunk alone`: the first chunk with the machine to itself, for the model.

`--pin`: each worker is a process on a core of its own (the single pass, the stitch and the
chunk alone on one core): two one-core machines, the "1 vs 2 single-slot workers" without the
two sharing cores, which the multi-threaded single pass otherwise partly fills. CPU then
counts the ffmpeg children and this process, not the workers' own Python (PyAV trims).

CPU is user + system of the ffmpeg children plus this process's own (PyAV trims, checksums).
The model takes a one-hour lecture (60 chunks of `--chunk` s) on N single-slot workers, each
on a machine like this one: critical path = ceil(chunks / N) x (one chunk alone) + the stitch
(scaled by duration); single pass = this run's single pass scaled by duration.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from _harness import chunk_options, machine, make_source, self_cpu, system_busy_seconds
from vidfarm.media.chunks import encode_chunk, plan_chunks
from vidfarm.media.encode import encode
from vidfarm.media.plan import plan_encode
from vidfarm.media.probe import probe
from vidfarm.media.profiles import load_profile
from vidfarm.media.stitch import stitch
from vidfarm.media.tools import ffmpeg_executable

LECTURE_SECONDS = 3600.0
WORKERS = (1, 2, 4, 8, 16)


class Timer:
    """Wall, own CPU and the rest of the machine's CPU around a block."""

    def __enter__(self) -> Timer:
        self.wall, self.cpu, self.busy = time.monotonic(), self_cpu(), system_busy_seconds()[0]
        return self

    def __exit__(self, *_: object) -> None:
        self.wall = time.monotonic() - self.wall
        self.cpu = self_cpu() - self.cpu
        self.busy = system_busy_seconds()[0] - self.busy


def pinned(core: int) -> ProcessPoolExecutor:
    """--pin: a worker process on one core; the ffmpeg it starts inherits the affinity (its
    spawner thread is born in that process after the initializer pinned it)."""
    return ProcessPoolExecutor(1, initializer=os.sched_setaffinity, initargs=(0, {core}))


def on_cores(pin: bool, fn: Any, jobs: list[tuple[Any, ...]]) -> list[Any]:
    """Run fn(*args) for each job: two at a time on threads, or with --pin on two one-core
    worker processes, job n on worker n % 2 (a single-slot worker takes one at a time)."""
    if not pin:
        with ThreadPoolExecutor(max_workers=2) as pool:
            return list(pool.map(lambda args: fn(*args), jobs))
    with pinned(0) as first, pinned(1) as second:
        workers = (first, second)
        futures = [workers[n % 2].submit(fn, *args) for n, args in enumerate(jobs)]
        return [future.result() for future in futures]


def alone(pin: bool, fn: Any, *args: Any) -> Any:
    """fn(*args) here, or with --pin in a worker process on one core."""
    if not pin:
        return fn(*args)
    with pinned(0) as worker:
        return worker.submit(fn, *args).result()


def _encode(source: Path, out: Path, profile: Any, ffmpeg: str) -> Any:
    return encode(source, out, profile=profile, ffmpeg=ffmpeg)


def _chunk(source: Path, plan: Any, chunk: Any, out: Path, ffmpeg: str) -> Any:
    return encode_chunk(source, plan, chunk, out, ffmpeg=ffmpeg)


def _stitch(source: Path, plan: Any, parts: Any, out: Path, ffmpeg: str) -> Any:
    return stitch(source, plan, parts, out, ffmpeg=ffmpeg)


def main() -> None:
    parser = chunk_options(__doc__, "chunked_encode.json", "each worker (the single pass too)")
    parser.add_argument("--summarise", action="store_true", help="only re-read --output")
    args = parser.parse_args()
    if args.summarise:
        saved = json.loads(args.output.read_text(encoding="utf-8"))
        args.duration, args.chunk = saved["summary"]["duration"], saved["chunk"]
        args.preset = saved["summary"]["preset"]
        report = summarise(saved["results"], args)
        args.output.write_text(json.dumps(report, indent=2), encoding="utf-8")
        print(json.dumps(report["summary"], indent=2))
        return
    ffmpeg = ffmpeg_executable()
    profile = load_profile("default").model_copy(update={"preset": args.preset})
    with tempfile.TemporaryDirectory(prefix="vidfarm-chunked-") as scratch:
        root = Path(scratch)
        source = root / "source.mp4"
        make_source(ffmpeg, source, duration=args.duration, crf=18, maxrate="25M", gop=60)
        plan = plan_encode(probe(source), profile)
        chunks = plan_chunks(
            plan.duration, profile.segment_duration, chunk_seconds=args.chunk, min_seconds=0
        )
        results: dict[str, Any] = {}

        with Timer() as single:
            run = alone(args.pin, _encode, source, root / "single", profile, ffmpeg)
        results["single"] = {
            "wall_seconds": single.wall,
            "cpu_seconds": run.run.cpu_seconds + single.cpu,
            "machine_busy_seconds": single.busy,
        }

        with Timer() as parallel:
            runs = on_cores(
                args.pin, _chunk, [(source, plan, c, root / f"c{c.index}", ffmpeg) for c in chunks]
            )
            stitch_began = time.monotonic()
            parts = [(c, root / f"c{c.index}") for c in chunks]
            stitched = alone(args.pin, _stitch, source, plan, parts, root / "chunked", ffmpeg)
            stitch_wall = time.monotonic() - stitch_began
        chunk_bytes = sum(
            p.stat().st_size for c in chunks for p in (root / f"c{c.index}").iterdir()
        )
        results["chunked_x2"] = {
            "wall_seconds": parallel.wall,
            "cpu_seconds": sum(r.cpu_seconds for r in runs) + stitched.cpu_seconds + parallel.cpu,
            "machine_busy_seconds": parallel.busy,
            "chunks": [
                {**c.to_dict(), "cpu_seconds": r.cpu_seconds, "wall_seconds": r.wall_seconds}
                for c, r in zip(chunks, runs, strict=True)
            ],
            "stitch_wall_seconds": stitch_wall,
            "stitch_ffmpeg_cpu_seconds": stitched.cpu_seconds,
            "chunk_output_bytes": chunk_bytes,
        }

        with Timer() as by_itself:
            lone = alone(args.pin, _chunk, source, plan, chunks[0], root / "alone", ffmpeg)
        results["one_chunk_alone"] = {
            **chunks[0].to_dict(),
            "wall_seconds": by_itself.wall,
            "cpu_seconds": lone.cpu_seconds + by_itself.cpu,
            "machine_busy_seconds": by_itself.busy,
        }

    report = summarise(results, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(report["summary"], indent=2))


def summarise(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    single, chunked, alone = results["single"], results["chunked_x2"], results["one_chunk_alone"]
    scale = LECTURE_SECONDS / args.duration
    chunk_seconds = alone["end"] - alone["start"]
    count = math.ceil(LECTURE_SECONDS / args.chunk)
    chunk_wall = alone["wall_seconds"] * args.chunk / chunk_seconds
    stitch_wall = chunked["stitch_wall_seconds"] * scale
    single_wall = single["wall_seconds"] * scale
    model = []
    for workers in WORKERS:
        path = math.ceil(count / workers) * chunk_wall + stitch_wall
        model.append(
            {
                "workers": workers,
                "critical_path_seconds": round(path, 1),
                "stitch_share": round(stitch_wall / path, 3),
                "predicted_speedup": round(single_wall / path, 2),
            }
        )
    # The same on CPU seconds (one core per worker): immune to what else the machine runs.
    chunk_cpu = statistics.mean(c["cpu_seconds"] for c in chunked["chunks"])
    chunk_cpu *= args.chunk / chunk_seconds
    stitch_cpu = chunked["stitch_ffmpeg_cpu_seconds"] * scale
    single_cpu = single["cpu_seconds"] * scale
    cpu_model = []
    for workers in (*WORKERS, count):
        path = math.ceil(count / workers) * chunk_cpu + stitch_cpu
        cpu_model.append(
            {
                "workers": workers,
                "critical_path_cpu_seconds": round(path, 1),
                "stitch_share": round(stitch_cpu / path, 3),
                "predicted_speedup": round(single_cpu / path, 2),
            }
        )
    summary = {
        "duration": args.duration,
        "preset": args.preset,
        "pinned": bool(getattr(args, "pin", False)),
        "turnaround_speedup_2_workers": round(single["wall_seconds"] / chunked["wall_seconds"], 2),
        "target_speedup": ">= 1.7",
        "cpu_ratio_chunked_vs_single": round(chunked["cpu_seconds"] / single["cpu_seconds"], 3),
        "target_cpu_ratio": "<= 1.05",
        "single_wall_seconds": round(single["wall_seconds"], 1),
        "chunked_wall_seconds": round(chunked["wall_seconds"], 1),
        "single_cpu_seconds": round(single["cpu_seconds"], 1),
        "chunked_cpu_seconds": round(chunked["cpu_seconds"], 1),
        "per_chunk_cpu_seconds": [round(c["cpu_seconds"], 1) for c in chunked["chunks"]],
        "one_chunk_alone_wall_seconds": round(alone["wall_seconds"], 1),
        "stitch_wall_seconds": round(chunked["stitch_wall_seconds"], 2),
        "chunk_output_mib": round(chunked["chunk_output_bytes"] / 2**20, 1),
        "others_cpu_seconds": {
            name: round(r["machine_busy_seconds"] - r["cpu_seconds"], 1)
            for name, r in (("single", single), ("chunked_x2", chunked), ("alone", alone))
        },
        "lecture_model": {
            "seconds": LECTURE_SECONDS,
            "chunks": count,
            "single_pass_seconds": round(single_wall, 1),
            "chunk_wall_seconds": round(chunk_wall, 1),
            "stitch_seconds": round(stitch_wall, 1),
            "by_workers": model,
            "chunk_cpu_seconds": round(chunk_cpu, 1),
            "stitch_cpu_seconds": round(stitch_cpu, 1),
            "single_pass_cpu_seconds": round(single_cpu, 1),
            "by_workers_cpu": cpu_model,
        },
    }
    return {"summary": summary, "chunk": args.chunk, "results": results, "machine": machine()}


if __name__ == "__main__":
    main()

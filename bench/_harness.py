"""What every encode benchmark shares: running ffmpeg with its CPU counted, a reproducible
source, medians, ratio checks and a description of the machine the numbers came from."""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FFMPEG_FLAGS = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning", "-y"]


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


def chunk_options(
    doc: str | None,
    output: str | None,
    pinned: str | None,
    *,
    duration: float = 120.0,
    chunk: float = 60.0,
) -> argparse.ArgumentParser:
    """The options the chunked-encoding benchmarks share: source, chunk, preset, and where
    they apply, pinning (`pinned`: who is pinned) and the results file."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    parser.add_argument("--duration", type=float, default=duration)
    parser.add_argument("--chunk", type=float, default=chunk, help="VIDFARM_CHUNK_SECONDS")
    parser.add_argument("--preset", default="veryfast")
    if pinned:
        parser.add_argument(
            "--pin", action="store_true", help=f"{pinned} on a core of its own: one-core machines"
        )
    if output:
        parser.add_argument("--output", type=Path, default=Path("bench/results") / output)
    return parser


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

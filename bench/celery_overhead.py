"""What the Celery transport costs next to the embedded pool, and what a second worker buys.

Measured side by side on this machine, same control plane, same jobs (a 1 s clip, one 240p
rendition at preset ultrafast), same SQLite database kind:

1. submit-to-start latency on an idle worker (p50/p99 of started_at - created_at);
2. N short jobs through Celery (Redis) versus the same N on the embedded pool: wall time from
   the first submission to the last completion, and their ratio (target <= 1.1);
3. Celery with 1 worker versus 2 workers (concurrency 1 each): jobs per minute.

A "short job" is a --clip-seconds clip (default 10 s, 640x360) encoded to one 240p rendition
at preset ultrafast; `--clip-seconds 1` measures the worst case, where the fixed cost of a
remote job (broker round trip, claim and completion over HTTP, ~0.1 s of CPU) is most of it.

Needs Redis on 127.0.0.1:6379. Results: bench/results/celery.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from _server import PYTHON, ROOT, Server, report, run_ffmpeg, write_section

RESULTS = ROOT / "bench" / "results" / "celery.md"
PROFILE = (
    'preset = "ultrafast"\nkeyframe_interval = 1\nsegment_duration = 2\n'
    '[[renditions]]\nheight = 240\nmin_video_bitrate = "300k"\nvideo_bitrate = "400k"\n'
    'max_video_bitrate = "500k"\naudio_bitrate = "64k"\nmp4 = true\n'
)


@contextmanager
def farm(workdir: Path, transport: str, workers: int) -> Iterator[Server]:
    data = workdir / f"{transport}-{workers}-{uuid.uuid4().hex[:6]}"
    (data / "profiles").mkdir(parents=True)
    (data / "profiles" / "default.toml").write_text(PROFILE)
    env = {"VIDFARM_POLL_SECONDS": "1"}
    if transport == "celery":
        prefix = f"bench{uuid.uuid4().hex[:6]}"
        env |= {
            "VIDFARM_BROKER_URL": "redis://127.0.0.1:6379/12",
            "VIDFARM_QUEUE_ENCODING": f"{prefix}-encoding",
            "VIDFARM_QUEUE_TRANSCRIPTION": f"{prefix}-transcription",
            "VIDFARM_QUEUE_XAPI": f"{prefix}-xapi",
        }
    else:
        env["VIDFARM_WORKER_CONCURRENCY"] = str(workers)
    server = Server(data, env=env).start()
    processes: list[subprocess.Popen[bytes]] = []
    try:
        if transport == "celery":
            token = subprocess.run(
                [PYTHON, "-m", "vidfarm", "token", "create", "--role", "worker"],
                env=server.environment(),
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            worker_env = server.environment() | {
                "VIDFARM_API_URL": server.url,
                "VIDFARM_WORKER_TOKEN": token,
                "VIDFARM_DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            }
            for index in range(workers):
                log = (workdir / f"{data.name}-worker{index}.log").open("wb")
                processes.append(
                    subprocess.Popen(
                        [PYTHON, "-m", "vidfarm", "worker", "--name", f"bench{index}"],
                        env=worker_env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
                wait_ready(workdir / f"{data.name}-worker{index}.log")
        yield server
    finally:
        for process in processes:
            process.terminate()
            process.wait(30)
        server.stop()


def wait_ready(log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if " ready." in log.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise RuntimeError(f"worker did not start: {log}")


def upload(server: Server, clip: Path) -> str:
    with clip.open("rb") as handle:
        answer = httpx.post(
            f"{server.url}/videos/upload",
            headers=server.headers,
            files={"file": (clip.name, handle)},
            timeout=60,
        )
    answer.raise_for_status()
    return str(answer.json()["job_id"])


def job(server: Server, job_id: str) -> dict[str, Any]:
    answer = httpx.get(f"{server.url}/api/v1/jobs/{job_id}", headers=server.headers, timeout=30)
    answer.raise_for_status()
    return dict(answer.json())


def wait_all(server: Server, ids: list[str], timeout: float = 600) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    pending = set(ids)
    while pending and time.monotonic() < deadline:
        for job_id in list(pending):
            state = job(server, job_id)["status"]
            if state in ("completed", "failed", "timeout", "cancelled"):
                pending.discard(job_id)
        time.sleep(0.2)
    if pending:
        raise RuntimeError(f"{len(pending)} jobs did not finish")
    done = [job(server, job_id) for job_id in ids]
    bad = [j for j in done if j["status"] != "completed"]
    if bad:
        raise RuntimeError(f"jobs failed: {bad[0]['error']}")
    return done


def at(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


def latencies(server: Server, clip: Path, count: int) -> list[float]:
    """Submit-to-start of `count` jobs, one at a time, each on an idle worker."""
    found = []
    for _ in range(count):
        (done,) = wait_all(server, [upload(server, clip)])
        found.append(at(done["started_at"]) - at(done["created_at"]))
    return found


def batch(server: Server, clip: Path, count: int) -> float:
    """Seconds from the first submission to the last completion of `count` jobs."""
    ids = [upload(server, clip) for _ in range(count)]
    done = wait_all(server, ids)
    return max(at(j["finished_at"]) for j in done) - min(at(j["created_at"]) for j in done)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50, help="short jobs per batch")
    parser.add_argument("--latency-samples", type=int, default=20)
    parser.add_argument("--clip-seconds", type=float, default=10.0)
    parser.add_argument("--size", default="640x360")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vidfarm-bench-celery-") as tmp:
        workdir = Path(tmp)
        clip = workdir / "clip.mp4"
        run_ffmpeg(
            [
                "-f", "lavfi", "-i", f"testsrc2=s={args.size}:r=25:d={args.clip_seconds}",
                "-f", "lavfi", "-i", f"sine=f=440:d={args.clip_seconds}",
                "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", "-shortest",
                str(clip),
            ],
            timeout=60,
        )  # fmt: skip
        rows: list[list[str]] = []
        measured: dict[str, float] = {}
        for transport in ("local", "celery"):
            with farm(workdir, transport, 1) as server:
                lat = latencies(server, clip, args.latency_samples)
                wall = batch(server, clip, args.jobs)
            measured[f"{transport}-1"] = wall
            rows.append(
                [
                    transport if transport == "celery" else "embedded pool",
                    "1",
                    f"{statistics.median(lat) * 1000:.0f} ms",
                    f"{percentile(lat, 0.99) * 1000:.0f} ms",
                    f"{wall:.1f} s",
                    f"{args.jobs / wall * 60:.0f}",
                ]
            )
            print(rows[-1], file=sys.stderr)
        with farm(workdir, "celery", 2) as server:
            wall = batch(server, clip, args.jobs)
        measured["celery-2"] = wall
        rows.append(["celery", "2", "-", "-", f"{wall:.1f} s", f"{args.jobs / wall * 60:.0f}"])
        overhead = measured["celery-1"] / measured["local-1"]
        scale = measured["celery-1"] / measured["celery-2"]
        verdict = (
            f"Celery / embedded wall time for {args.jobs} short jobs: {overhead:.2f}x "
            f"(target <= 1.1x: {'met' if overhead <= 1.1 else 'NOT met'}); "
            f"2 workers / 1 worker throughput: {scale:.2f}x"
        )
        section = report(
            f"Celery transport overhead ({args.clip_seconds:g} s clips)",
            ["transport", "workers", "submit->start p50", "p99", f"{args.jobs} jobs", "jobs/min"],
            rows,
            verdict,
            [
                f"Each job: upload of a {args.clip_seconds:g} s {args.size} clip, one 240p "
                "rendition at preset ultrafast.",
                "Celery workers run with an unreachable database URL (they use the API only).",
                "2 workers share this 2-core machine with the control plane and ffmpeg.",
            ],
        )
        if not RESULTS.exists():
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text("# Celery benchmarks\n\n")
        write_section(f"celery-overhead-{args.clip_seconds:g}s", section, RESULTS)
        print(section)


if __name__ == "__main__":
    main()

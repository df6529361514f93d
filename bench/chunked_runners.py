"""Chunked encoding on runner managers: what the runner transport adds to the chunks.

    .venv/bin/python bench/chunked_runners.py [--duration 120] [--chunk 60] [--preset veryfast]

Real processes on loopback, side by side in one run, on one generated 1080p source:

1. `whole`: `vidfarm serve` (VIDFARM_DISPATCHER=runners, chunking off) and two `vidfarm
   runner` managers of one slot each: the encode goes whole to one of them.
2. `chunked`: the same processes with chunking on: the managers share the chunks, one of
   them stitches; every chunk's files are imported into the control plane's storage, then
   downloaded again by the stitching manager (docs/runners.md).

`--pin` puts each manager (and its ffmpeg) on a core of its own (sched_setaffinity), like two
one-core machines: "1 vs 2 single-slot workers" without the two sharing cores, which on this
2-core machine the whole encode alone already nearly fills.

Turnaround is upload to `completed`; CPU is user + system of every process (control plane,
managers) and their ffmpeg children (cutime/cstime from /proc). The transfer figures are the
bytes the chunks carried home and the stitch carried out, and the time each hop took, read
from the jobs' timestamps (a chunk's job ends when its import is done).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).parent))

from _harness import chunk_options, make_source, system_busy_seconds
from _server import PYTHON, Server, cpu_seconds, free_port
from vidfarm.media.profiles import load_profile
from vidfarm.media.tools import ffmpeg_executable

TOKEN = "bench-runner-token-0123456789"


def profile_toml(preset: str) -> str:
    """The default profile's ladder at `preset`, as a file every process loads."""
    profile = load_profile("default")
    lines = [
        f'preset = "{preset}"',
        f"crf = {profile.crf}",
        f"keyframe_interval = {profile.keyframe_interval}",
        f"segment_duration = {profile.segment_duration}",
    ]
    for spec in profile.renditions:
        lines += [
            "[[renditions]]",
            f"height = {spec.height}",
            f"min_video_bitrate = {spec.min_video_bitrate}",
            f"video_bitrate = {spec.video_bitrate}",
            f"max_video_bitrate = {spec.max_video_bitrate}",
            f"audio_bitrate = {spec.audio_bitrate}",
            f"mp4 = {'true' if spec.mp4 else 'false'}",
        ]
    return "\n".join(lines) + "\n"


class Runner:
    """`vidfarm runner` on a free port, one slot, its own data folder (SQLite)."""

    def __init__(self, data: Path, profile: str, core: int | None = None) -> None:
        (data / "profiles").mkdir(parents=True, exist_ok=True)
        (data / "profiles" / "bench.toml").write_text(profile)
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIDFARM_")}
        env.update(
            VIDFARM_DATA_DIR=str(data),
            VIDFARM_PORT=str(self.port),
            VIDFARM_RUNNER_TOKENS=TOKEN,
            VIDFARM_RUNNER_CAPACITY="1",
            VIDFARM_RUNNER_ALLOW_PRIVATE_URLS="true",
            VIDFARM_DEFAULT_PROFILE="bench",
            VIDFARM_POLL_SECONDS="0.5",
        )
        log = (data.parent / f"{data.name}.log").open("wb")
        self.process = subprocess.Popen(
            [PYTHON, "-m", "vidfarm", "runner"], env=env, stdout=log, stderr=subprocess.STDOUT,
            # --pin: this manager and its ffmpeg on one core, like a one-core machine
            preexec_fn=None if core is None else lambda: os.sched_setaffinity(0, {core}),
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"vidfarm runner did not start; see {log.name}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


@contextmanager
def farm(
    root: Path, name: str, profile: str, chunk: float | None, pin: bool
) -> Iterator[tuple[Server, list[Runner]]]:
    """A control plane and two managers, fresh; chunk None: chunking off."""
    data = root / name
    (data / "profiles").mkdir(parents=True)
    (data / "profiles" / "bench.toml").write_text(profile)
    port = free_port()
    env = {
        "VIDFARM_DISPATCHER": "runners",
        "VIDFARM_DEFAULT_PROFILE": "bench",
        "VIDFARM_RUNNERS_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "VIDFARM_RUNNERS_ALLOW_PRIVATE_URLS": "true",
        "VIDFARM_RUNNERS_CHECK_AFTER_SECONDS": "5",
        "VIDFARM_POLL_SECONDS": "0.5",
        "VIDFARM_CHUNK_MIN_SECONDS": "1000000000" if chunk is None else "0",
        "VIDFARM_CHUNK_SECONDS": str(chunk or 60),
    }
    with ExitStack() as stack:
        server = Server(data, env=env, port=port).start()
        stack.callback(server.stop)
        runners = []
        for index in range(2):
            runner = Runner(root / f"{name}-runner{index}", profile, index if pin else None)
            stack.callback(runner.stop)
            runners.append(runner)
            subprocess.run(
                [PYTHON, "-m", "vidfarm", "runners", "add", f"rm{index}", runner.url,
                 "--token", TOKEN, "--priority", "1"],
                env=server.environment(), capture_output=True, check=True, timeout=60,
            )  # fmt: skip
        admin = subprocess.run(
            [PYTHON, "-m", "vidfarm", "token", "create", "--role", "admin", "--name", "bench"],
            env=server.environment(), capture_output=True, text=True, check=True, timeout=60,
        ).stdout.strip().splitlines()[-1]  # fmt: skip
        headers = {"Authorization": f"Bearer {admin}"}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the plane learns what the managers run
            listed = httpx.get(f"{server.url}/api/v1/runners", headers=headers, timeout=10).json()
            if all("vidfarm_stitch" in m["task_types"] for m in listed):
                break
            time.sleep(0.2)
        else:
            raise RuntimeError("the control plane never learnt the managers' task types")
        server.token = admin
        yield server, runners


def api(server: Server, path: str) -> Any:
    answer = httpx.get(f"{server.url}{path}", headers=server.headers, timeout=30)
    answer.raise_for_status()
    return answer.json()


def seconds_between(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def measure(server: Server, runners: list[Runner], source: Path) -> dict[str, Any]:
    pids = [server.pid, *(r.process.pid for r in runners)]
    cpu_before = sum(cpu_seconds(pid, waited_children=True) for pid in pids)
    busy_before = system_busy_seconds()[0]
    began = time.monotonic()
    with source.open("rb") as handle:
        answer = httpx.post(
            f"{server.url}/videos/upload", headers=server.headers,
            files={"file": (source.name, handle)}, timeout=300,
        )  # fmt: skip
    answer.raise_for_status()
    job_id = answer.json()["job_id"]
    while (job := api(server, f"/api/v1/jobs/{job_id}"))["status"] not in (
        "completed", "failed", "cancelled", "timeout"
    ):  # fmt: skip
        time.sleep(0.2)
    wall = time.monotonic() - began
    if job["status"] != "completed":
        raise RuntimeError(f"the encode ended {job['status']}: {job['error']}")
    time.sleep(1.0)  # the managers' last bookkeeping (notifications) settles
    cpu = sum(cpu_seconds(pid, waited_children=True) for pid in pids) - cpu_before
    parts = []
    for child in job.get("chunks") or []:
        detail = api(server, f"/api/v1/jobs/{child['id']}")
        result = detail.get("result") or {}
        sums = result.get("sums") or {}
        parts.append(
            {
                "type": child["type"],
                "start": child["start"],
                "end": child["end"],
                "wall_seconds": round(
                    seconds_between(detail["started_at"], detail["finished_at"]), 1
                ),
                "encode_cpu_seconds": (result.get("encode") or {}).get("cpu_seconds"),
                # the stitch's is its stitch_wall_seconds: fetching the chunks is not in it
                "work_wall_seconds": (result.get("encode") or {}).get(
                    "wall_seconds", (result.get("encode") or {}).get("stitch_wall_seconds")
                ),
                "bytes_home": sum(int(s["size"]) for s in sums.values()),
                "stitch_bytes_out": sum(
                    int(s["size"]) for name, s in sums.items() if not name.startswith("preview_")
                ),
            }
        )
    return {
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "others_cpu_seconds": round(system_busy_seconds()[0] - busy_before - cpu, 1),
        "parts": parts,
    }


def main() -> None:
    parser = chunk_options(__doc__, "chunked_runners.json", "each manager (and its ffmpeg)")
    args = parser.parse_args()
    profile = profile_toml(args.preset)
    with tempfile.TemporaryDirectory(prefix="vidfarm-chunked-runners-") as scratch:
        root = Path(scratch)
        source = root / "lecture.mp4"
        make_source(
            ffmpeg_executable(), source, duration=args.duration, crf=18, maxrate="25M", gop=60
        )
        results: dict[str, dict[str, Any]] = {}
        for name, chunk in (("whole", None), ("chunked", args.chunk)):
            with farm(root, name, profile, chunk, args.pin) as (server, runners):
                results[name] = measure(server, runners, source)
        whole, chunked = results["whole"], results["chunked"]
        summary = summarise(args, source.stat().st_size, whole, chunked)
    report = {"summary": summary, "results": results}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2), encoding="utf-8")
    print(json.dumps(summary, indent=2))


def summarise(
    args: argparse.Namespace, source_bytes: int, whole: dict[str, Any], chunked: dict[str, Any]
) -> dict[str, Any]:
    chunks = [p for p in chunked["parts"] if p["type"] == "encode_chunk"]
    stitches = [p for p in chunked["parts"] if p["type"] == "stitch"]
    summary = {
        "duration": args.duration,
        "chunk": args.chunk,
        "preset": args.preset,
        "pinned": args.pin,
        "whole_wall_seconds": whole["wall_seconds"],
        "chunked_wall_seconds": chunked["wall_seconds"],
        "turnaround_speedup_2_managers": round(whole["wall_seconds"] / chunked["wall_seconds"], 2),
        "cpu_ratio_chunked_vs_whole": round(chunked["cpu_seconds"] / whole["cpu_seconds"], 3),
        "cores_used": {
            "whole": round(whole["cpu_seconds"] / whole["wall_seconds"], 2),
            "chunked": round(chunked["cpu_seconds"] / chunked["wall_seconds"], 2),
        },
        "chunk_bytes_home_mib": round(sum(p["bytes_home"] for p in chunks) / 2**20, 1),
        "stitch_bytes_out_mib": round(sum(p["stitch_bytes_out"] for p in chunks) / 2**20, 1),
        "source_mib_sent": {
            "whole": round(source_bytes / 2**20, 1),
            "chunked": round(source_bytes * len(chunked["parts"]) / 2**20, 1),
        },
        # Each part's job on the plane (handed over to imported) and its own work on the
        # manager: the difference is the transport (source download, news, import).
        "chunk_wall_seconds": [p["wall_seconds"] for p in chunks],
        "chunk_encode_wall_seconds": [round(p["work_wall_seconds"], 1) for p in chunks],
        "stitch_wall_seconds": [p["wall_seconds"] for p in stitches],
        "stitch_work_wall_seconds": [round(p["work_wall_seconds"], 1) for p in stitches],
        "others_cpu_seconds": {
            "whole": whole["others_cpu_seconds"],
            "chunked": chunked["others_cpu_seconds"],
        },
    }
    return summary


if __name__ == "__main__":
    main()

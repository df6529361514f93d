"""Status polling under load: GET /videos/status and /videos/task while an encode runs.

Starts `vidfarm serve` (uvicorn's single worker, VIDFARM_AUTO_ENCODE=true,
VIDFARM_WORKER_CONCURRENCY=1) on a free loopback port with a fresh data folder, uploads a
generated 1080p clip so its encode (default profile: 360p/720p/1080p ladder, preset medium)
runs, then hammers both endpoints from a separate process (asyncio httpx client,
`--connections` concurrent connections, each endpoint bounded by `--seconds` or `--requests`).
The task must be in state PROGRESS before and after the loaded measurement. The job is then
cancelled and, once no ffmpeg runs, the same measurement is repeated on the idle server as
the baseline.

    .venv/bin/python bench/api_status_throughput.py
    .venv/bin/python bench/api_status_throughput.py --seconds 10 --requests 5000 --connections 16

The client competes with the server and ffmpeg for the same cores: the figures are those of a
loopback client on the encoding machine, a worst case for the API.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from _server import (
    PYTHON,
    OthersCpu,
    Server,
    cpu_seconds,
    descendants,
    load_average,
    process_name,
    report,
    run_ffmpeg,
    table,
    write_section,
)

TOKEN_ENV = "VIDFARM_BENCH_TOKEN"
ENDPOINTS = ("status", "task")


# --- the load client (runs in its own process) -----------------------------------------------


async def _load(
    url: str, token: str, connections: int, seconds: float, limit: int
) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    issued = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(limits=limits, headers=headers, timeout=30.0) as client:
        # Warm-up: open every connection once, not counted.
        await asyncio.gather(*(client.get(url) for _ in range(connections)))
        deadline = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal issued
            while issued < limit and time.perf_counter() < deadline:
                issued += 1
                start = time.perf_counter()
                try:
                    response = await client.get(url)
                    if response.status_code != 200:
                        key = f"HTTP {response.status_code}"
                        errors[key] = errors.get(key, 0) + 1
                except httpx.HTTPError as error:
                    key = type(error).__name__
                    errors[key] = errors.get(key, 0) + 1
                latencies.append(time.perf_counter() - start)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed}


def client_main(args: argparse.Namespace) -> int:
    started = cpu_seconds(os.getpid())
    result = asyncio.run(
        _load(args.client, os.environ[TOKEN_ENV], args.connections, args.seconds, args.requests)
    )
    result["client_cpu"] = cpu_seconds(os.getpid()) - started
    json.dump(result, sys.stdout)
    return 0


# --- the driver -------------------------------------------------------------------------------


@dataclass
class Measure:
    endpoint: str
    requests: int
    errors: dict[str, int]
    elapsed: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    client_cpu: float
    server_cpu: float  # the vidfarm serve process (all its threads)
    ffmpeg_cpu: float  # its children
    others_cpu: float  # the rest of the machine (should be ~0)
    progress: tuple[int, int] = (0, 0)

    @property
    def rps(self) -> float:
        return self.requests / self.elapsed if self.elapsed else 0.0

    @property
    def cpu_ms_per_request(self) -> float:
        return self.server_cpu * 1000 / self.requests if self.requests else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def children_cpu(pid: int) -> float:
    return sum(cpu_seconds(child) for child in descendants(pid))


def hammer(server: Server, endpoint: str, path: str, args: argparse.Namespace) -> Measure:
    env = {**os.environ, TOKEN_ENV: server.token}
    command = [
        PYTHON,
        str(Path(__file__).resolve()),
        "--client",
        server.url + path,
        "--connections",
        str(args.connections),
        "--seconds",
        str(args.seconds),
        "--requests",
        str(args.requests),
    ]
    server_before, ffmpeg_before = cpu_seconds(server.pid), children_cpu(server.pid)
    others = OthersCpu(server.pid)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=args.seconds + 120, check=True
    )
    server_cpu = cpu_seconds(server.pid) - server_before
    ffmpeg_cpu = children_cpu(server.pid) - ffmpeg_before  # approximate: children may change
    data = json.loads(done.stdout)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_process_cpu = usage.ru_utime + usage.ru_stime - reaped.ru_utime - reaped.ru_stime
    others_cpu, _ = others.stop(extra_ours=client_process_cpu)
    latencies = sorted(data["latencies"])
    return Measure(
        endpoint=endpoint,
        requests=len(latencies),
        errors=data["errors"],
        elapsed=data["elapsed"],
        p50_ms=statistics.median(latencies) * 1000 if latencies else 0.0,
        p99_ms=percentile(latencies, 0.99) * 1000,
        max_ms=(latencies[-1] * 1000) if latencies else 0.0,
        client_cpu=data["client_cpu"],
        server_cpu=server_cpu,
        ffmpeg_cpu=max(0.0, ffmpeg_cpu),
        others_cpu=others_cpu,
    )


def task_state(server: Server, task_id: str) -> dict[str, Any]:
    response = httpx.get(f"{server.url}/videos/task/{task_id}", headers=server.headers, timeout=30)
    response.raise_for_status()
    return dict(response.json())


def ffmpeg_children(server: Server) -> list[int]:
    return [pid for pid in descendants(server.pid) if "ffmpeg" in process_name(pid)]


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise RuntimeError(f"timed out after {timeout:g} s waiting for {what}")


def make_clip(path: Path, seconds: float) -> float:
    start = time.perf_counter()
    run_ffmpeg(
        [
            "-f", "lavfi", "-i", "testsrc2=size=1920x1080:rate=30",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", str(seconds),
            "-c:v", "libx264", "-preset", "ultrafast", "-crf", "26", "-g", "60",
            "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "128k",
            "-movflags", "+faststart", str(path),
        ],
        timeout=240,
    )  # fmt: skip
    return time.perf_counter() - start


def upload(server: Server, clip: Path) -> tuple[str, str]:
    with clip.open("rb") as handle, httpx.Client(timeout=300.0) as client:
        response = client.post(
            server.url + "/videos/upload",
            headers=server.headers,
            files={"file": (clip.name, handle, "video/mp4")},
        )
    response.raise_for_status()
    body = response.json()
    if not body.get("job_id"):
        raise RuntimeError(f"the upload queued no encode: {body}")
    return str(body["file_id"]), str(body["job_id"])


def run(
    args: argparse.Namespace, work: Path
) -> tuple[list[Measure], list[Measure], dict[str, Any]]:
    info: dict[str, Any] = {}
    clip = work / "clip1080.mp4"
    info["clip_seconds"] = make_clip(clip, args.clip_seconds)
    info["clip_bytes"] = clip.stat().st_size
    print(
        f"clip: {info['clip_bytes']} bytes, generated in {info['clip_seconds']:.1f} s", flush=True
    )
    server = Server(
        work / "data",
        env={
            "VIDFARM_AUTO_ENCODE": "true",
            "VIDFARM_WORKER_CONCURRENCY": "1",
            "VIDFARM_DEFAULT_PROFILE": args.profile,
        },
    )
    server.start()
    try:
        file_id, task_id = upload(server, clip)
        status_path = f"/videos/status/{file_id}?format=hls"
        task_path = f"/videos/task/{task_id}"
        wait_for(
            lambda: task_state(server, task_id)["state"] == "PROGRESS" and ffmpeg_children(server),
            60,
            "the encode to start",
        )
        time.sleep(2.0)  # let ffmpeg ramp up
        loaded: list[Measure] = []
        states = [task_state(server, task_id)]
        for endpoint, path in zip(ENDPOINTS, (status_path, task_path), strict=True):
            print(f"loaded: {endpoint} ...", flush=True)
            before = task_state(server, task_id)
            measure = hammer(server, endpoint, path, args)
            after = task_state(server, task_id)
            measure.progress = (int(before["progress"]), int(after["progress"]))
            states += [before, after]
            loaded.append(measure)
        info["loaded_states"] = [s["state"] for s in states]
        info["encoding_throughout"] = all(s["state"] == "PROGRESS" for s in states) and bool(
            ffmpeg_children(server)
        )

        cancel = httpx.post(
            f"{server.url}/api/v1/jobs/{task_id}/cancel", headers=server.headers, timeout=30
        )
        info["cancel_status"] = cancel.status_code
        wait_for(lambda: not ffmpeg_children(server), 60, "ffmpeg to stop after the cancel")
        wait_for(lambda: task_state(server, task_id)["state"] == "FAILURE", 60, "the task to end")
        time.sleep(2.0)
        idle_cpu_before = cpu_seconds(server.pid)
        time.sleep(2.0)
        info["idle_server_cpu_per_s"] = (cpu_seconds(server.pid) - idle_cpu_before) / 2.0
        idle: list[Measure] = []
        for endpoint, path in zip(ENDPOINTS, (status_path, task_path), strict=True):
            print(f"idle: {endpoint} ...", flush=True)
            idle.append(hammer(server, endpoint, path, args))
        info["idle_state"] = task_state(server, task_id)["state"]
        info["ffmpeg_during_idle"] = bool(ffmpeg_children(server))
    finally:
        server.stop()
        info["findings"] = server.log_findings()
        info["access_statuses"] = server.access_status_counts()
    return loaded, idle, info


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0, help="per endpoint and phase")
    parser.add_argument("--requests", type=int, default=5000, help="per endpoint and phase")
    parser.add_argument("--clip-seconds", type=float, default=60.0)
    parser.add_argument("--profile", default="default", help="VIDFARM_DEFAULT_PROFILE")
    parser.add_argument("--no-write", action="store_true", help="do not update the results file")
    args = parser.parse_args()
    if args.client:
        return client_main(args)

    from vidfarm.media.profiles import load_profile

    profile = load_profile(args.profile, None)
    load_at_start = load_average()
    work = Path(tempfile.mkdtemp(prefix="vidfarm-bench-status-"))
    try:
        loaded, idle, info = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    headers = [
        "endpoint",
        "idle req/s",
        "encoding req/s",
        "ratio",
        "idle p50 ms",
        "encoding p50 ms",
        "idle p99 ms",
        "encoding p99 ms",
        "encoding max ms",
        "requests idle / encoding",
        "errors idle / encoding",
        "server CPU s idle / encoding",
        "server CPU ms/req idle / encoding",
        "client CPU s idle / encoding",
        "ffmpeg CPU s",
        "other processes CPU s idle / encoding",
        "progress %",
    ]
    names = {
        "status": "`GET /videos/status/{id}?format=hls`",
        "task": "`GET /videos/task/{id}`",
    }
    rows = []
    for base, load in zip(idle, loaded, strict=True):
        rows.append(
            [
                names[base.endpoint],
                f"{base.rps:.0f}",
                f"{load.rps:.0f}",
                f"{load.rps / base.rps:.2f}" if base.rps else "-",
                f"{base.p50_ms:.1f}",
                f"{load.p50_ms:.1f}",
                f"{base.p99_ms:.1f}",
                f"{load.p99_ms:.1f}",
                f"{load.max_ms:.0f}",
                f"{base.requests} / {load.requests}",
                f"{base.error_count} / {load.error_count}",
                f"{base.server_cpu:.1f} / {load.server_cpu:.1f}",
                f"{base.cpu_ms_per_request:.1f} / {load.cpu_ms_per_request:.1f}",
                f"{base.client_cpu:.1f} / {load.client_cpu:.1f}",
                f"{load.ffmpeg_cpu:.1f}",
                f"{base.others_cpu:.1f} / {load.others_cpu:.1f}",
                f"{load.progress[0]} -> {load.progress[1]}",
            ]
        )
    errors = sum(m.error_count for m in (*idle, *loaded))
    valid = info["encoding_throughout"] and not info["ffmpeg_during_idle"]
    busy = max(m.others_cpu / m.elapsed for m in (*idle, *loaded) if m.elapsed)
    ran = "ran" if info["encoding_throughout"] else "did NOT run"
    idle_ffmpeg = "ffmpeg STILL running" if info["ffmpeg_during_idle"] else "no ffmpeg"
    ratios = ", ".join(
        f"{load.endpoint} {load.rps / base.rps:.2f}"
        for base, load in zip(idle, loaded, strict=True)
        if base.rps
    )
    verdict = (
        f"{'VALID' if valid else 'INVALID'}: the encode {ran} throughout the loaded runs "
        f"(task states {' '.join(info['loaded_states'])}), {idle_ffmpeg} during the idle runs; "
        f"{errors} request errors; encoding/idle req/s: {ratios}"
    )
    if busy > 0.2:
        verdict += (
            f" -- WARNING: other processes used up to {busy:.2f} CPU s/s during the runs "
            "(busy machine; the figures are not reliable)"
        )
    error_kinds: dict[str, int] = {}
    for m in (*idle, *loaded):
        for key, count in m.errors.items():
            error_kinds[key] = error_kinds.get(key, 0) + count
    print()
    print(table(headers, rows))
    print()
    print(verdict)
    if error_kinds:
        print("errors:", error_kinds)
    print("server access log status codes:", info["access_statuses"])
    for line in info["findings"]:
        print("server log:", line)

    heights = "/".join(f"{r.height}p" for r in profile.renditions)
    notes = [
        f"- source: {args.clip_seconds:g} s 1920x1080 30 fps H.264 + AAC "
        f"({info['clip_bytes']} bytes, testsrc2, generated in {info['clip_seconds']:.0f} s, "
        f"not timed); encode profile `{profile.name}` (preset {profile.preset}, renditions "
        f"{heights}), `VIDFARM_WORKER_CONCURRENCY=1`, uvicorn's single worker "
        "(`vidfarm serve`, access log on).",
        f"- load: a separate process, asyncio httpx, {args.connections} connections, each endpoint "
        f"for {args.seconds:g} s or {args.requests} requests (whichever first), after a warm-up "
        "request per connection; loopback, on the same machine as the server and ffmpeg.",
        "- loaded: task state checked PROGRESS before and after each endpoint's run; idle: the "
        f"same file and task after the job was cancelled (HTTP {info['cancel_status']}) and "
        f"ffmpeg had exited (task state then {info['idle_state']}). Idle server CPU before the "
        f"idle runs: {info['idle_server_cpu_per_s']:.2f} CPU s/s.",
        "- server CPU = user+system of the `vidfarm serve` process (all threads) during the run; "
        "ffmpeg CPU = its child processes; client CPU = the load process; other processes = "
        "the machine's busy CPU time minus those (should be near 0 on a quiet machine); "
        "server CPU ms/req (server CPU / requests) is the figure least disturbed by a busy "
        "machine. "
        f"Load average at start: {load_at_start}.",
        "- server access log status codes over the whole run: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(info["access_statuses"].items())),
    ]
    if error_kinds:
        notes.append(f"- request errors: {error_kinds}")
    if info["findings"]:
        notes.append(
            "- server log warnings/errors: " + "; ".join(f"`{f}`" for f in info["findings"])
        )
    markdown = report(
        "Status polling during an encode (`bench/api_status_throughput.py`)",
        headers,
        rows,
        verdict,
        notes,
    )
    if not args.no_write:
        write_section("api_status_throughput", markdown)
        print("results written to bench/results/api.md")
    return 0 if valid and errors == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())

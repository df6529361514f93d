"""HLS viewers through nginx versus through vidfarm alone: p99 segment latency and the knee.

Starts one `vidfarm serve` (one uvicorn worker, signed URLs in the nginx scheme, auto-encode
off) on a loopback port, encodes one generated lecture (640x360, 4 s segments) once, then
starts the machine's nginx with the configuration `vidfarm deploy nginx` prints. For each
viewer count (`--viewers`) and each front (vidfarm's port, nginx's port) a separate client
process simulates the viewers for `--seconds`: master, variant, then one segment every 4 s on
one keep-alive connection each, plus `--pollers` clients polling a job once a second and one
upload every `--upload-every` seconds (those two always reach vidfarm, proxied by nginx in
the nginx runs). It reports p50/p99 segment latency, errors, how late the client itself was,
requests/s and requests per CPU-second of the process that served the media. The knee is the
largest viewer count whose p99 stays under 200 ms with no error.

    .venv/bin/python bench/load_viewers.py
    .venv/bin/python bench/load_viewers.py --viewers 100,400,1600 --seconds 20

Bounded: loopback only, at most 5000 viewers, every client stops after `--seconds`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
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
    free_port,
    load_average,
    report,
    run_ffmpeg,
    tree_cpu_seconds,
    write_section,
)

NGINX = "/usr/sbin/nginx"
MAX_VIEWERS = 5000
TARGET_P99_MS = 200.0
LECTURE_PROFILE = """\
preset = "ultrafast"
keyframe_interval = 2
segment_duration = 4
[[renditions]]
height = 360
min_video_bitrate = "500k"
video_bitrate = "800k"
max_video_bitrate = "1000k"
audio_bitrate = "96k"
mp4 = false
"""


@dataclass
class Step:
    front: str
    viewers: int
    segments: int
    p50_ms: float
    p99_ms: float
    poll_p99_ms: float
    late_p99_ms: float
    errors: dict[str, int]
    rps: float
    media_cpu: float  # CPU seconds of the process(es) that served the media
    vidfarm_cpu: float
    client_cpu: float
    others_cpu: float

    @property
    def ok(self) -> bool:
        return self.p99_ms < TARGET_P99_MS and not self.errors

    @property
    def per_core(self) -> float:
        return self.rps * self.seconds / self.media_cpu if self.media_cpu else 0.0

    seconds: float = 0.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_nginx(server: Server, folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    config = subprocess.run(
        [
            PYTHON,
            "-m",
            "vidfarm",
            "deploy",
            "nginx",
            "--listen",
            str(port),
            "--upstream",
            server.url,
            "--access-log",
            "off",
        ],
        env=server.environment(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "nginx.conf").write_text(config)
    options = f"daemon off; pid {folder}/nginx.pid; error_log {folder}/error.log; user root;"
    process = subprocess.Popen(
        [NGINX, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-g", options]
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/healthz", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("nginx did not start")


def prepare(server: Server, work: Path) -> tuple[str, str, Path]:
    """Encode one 60 s lecture; return its master path, a job id to poll, a clip to upload."""
    lecture, small = work / "lecture.mp4", work / "small.mp4"
    noise = "noise=alls=8:allf=t"
    run_ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=640x360:r=25:d=60",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:d=60",
            "-vf",
            noise,
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-shortest",
            str(lecture),
        ],
        timeout=300,
    )
    run_ffmpeg(
        [
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=320x180:r=25:d=2",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv420p",
            str(small),
        ],
        timeout=60,
    )
    with lecture.open("rb") as handle:
        video = httpx.post(
            f"{server.url}/videos/upload",
            headers=server.headers,
            files={"file": handle},
            timeout=120,
        ).json()["file_id"]
    job = httpx.post(
        f"{server.url}/api/v1/videos/{video}/encode", headers=server.headers, json={}, timeout=30
    ).json()
    job_id = job.get("id") or job.get("job_id")
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        state = httpx.get(f"{server.url}/api/v1/jobs/{job_id}", headers=server.headers).json()
        if state["status"] in ("completed", "failed"):
            break
        time.sleep(1)
    if state["status"] != "completed":
        raise RuntimeError(f"the lecture's encode did not complete: {state}")
    links = httpx.get(f"{server.url}/api/v1/videos/{video}/playback", headers=server.headers)
    master = str(httpx.URL(links.json()["master"]).raw_path.decode())
    return master, f"/api/v1/jobs/{job_id}", small


def measure(
    front: str, base: str, viewers: int, server: Server, media_pids: list[int], args: Any
) -> Step:
    spec = {
        "base": base,
        "master": args.master,
        "viewers": viewers,
        "seconds": args.seconds,
        "pollers": args.pollers,
        "poll_path": args.poll_path,
        "token": server.token,
        "upload_every": args.upload_every,
        "upload_file": str(args.upload_file),
    }
    before_media = sum(tree_cpu_seconds(pid) for pid in media_pids)
    before_vidfarm = tree_cpu_seconds(server.pid)
    others = OthersCpu(server.pid, *media_pids)
    reaped = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(
        [PYTHON, str(Path(__file__).resolve()), "--client", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=args.seconds + 120,
        check=True,
    )
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = usage.ru_utime + usage.ru_stime - reaped.ru_utime - reaped.ru_stime
    others_cpu, _ = others.stop(extra_ours=client_cpu)
    data = json.loads(done.stdout)
    media_cpu = sum(tree_cpu_seconds(pid) for pid in media_pids) - before_media
    step = Step(
        front=front,
        viewers=viewers,
        segments=len(data["segment_ms"]),
        p50_ms=percentile(data["segment_ms"], 0.5),
        p99_ms=percentile(data["segment_ms"], 0.99),
        poll_p99_ms=percentile(data["poll_ms"], 0.99),
        late_p99_ms=percentile(data["late_ms"], 0.99),
        errors=data["errors"],
        rps=data["requests"] / data["elapsed"],
        media_cpu=media_cpu,
        vidfarm_cpu=tree_cpu_seconds(server.pid) - before_vidfarm,
        client_cpu=client_cpu,
        others_cpu=others_cpu,
        seconds=data["elapsed"],
    )
    print(
        f"{front:8} {viewers:5} viewers: p50 {step.p50_ms:6.1f} ms, p99 {step.p99_ms:7.1f} ms,"
        f" {step.rps:6.0f} req/s, errors {step.errors}, client late p99 "
        f"{step.late_p99_ms:.0f} ms",
        flush=True,
    )
    return step


def drain(server: Server, timeout: float = 120.0) -> None:
    """Wait until vidfarm answers promptly again: a step must not inherit the last one's queue."""
    deadline = time.monotonic() + timeout
    quick = 0
    while time.monotonic() < deadline and quick < 3:
        start = time.perf_counter()
        try:
            httpx.get(server.url + "/healthz", timeout=10)
            quick = quick + 1 if time.perf_counter() - start < 0.05 else 0
        except httpx.HTTPError:
            quick = 0
        time.sleep(0.2)


def knee(steps: list[Step], front: str) -> str:
    held = [s.viewers for s in steps if s.front == front and s.ok]
    failed = [s.viewers for s in steps if s.front == front and not s.ok]
    if not held:
        return f"below {min(failed)}"
    if not failed or max(held) > max(failed):
        return f"at least {max(held)} (the most tested)"
    return f"between {max(v for v in held if v < min(failed))} and {min(failed)}"


def render(steps: list[Step], args: Any) -> str:
    rows = [
        [
            s.front,
            str(s.viewers),
            f"{s.p50_ms:.1f}",
            f"{s.p99_ms:.1f}",
            f"{s.poll_p99_ms:.0f}",
            f"{s.rps:.0f}",
            f"{s.per_core:.0f}",
            f"{s.vidfarm_cpu / s.seconds:.2f}",
            f"{s.client_cpu / s.seconds:.2f}",
            f"{s.late_p99_ms:.0f}",
            f"{s.others_cpu / s.seconds:.2f}",
            ", ".join(f"{k} x{v}" for k, v in s.errors.items()) or "0",
        ]
        for s in steps
    ]
    headers = [
        "front",
        "viewers",
        "segment p50 ms",
        "segment p99 ms",
        "poll p99 ms",
        "req/s",
        "media req per CPU-s",
        "vidfarm cores",
        "client cores",
        "client late p99 ms",
        "other load (cores)",
        "errors",
    ]
    verdict = (
        f"Knee (p99 < {TARGET_P99_MS:.0f} ms, no error): vidfarm alone "
        f"{knee(steps, 'vidfarm')} viewers; through nginx {knee(steps, 'nginx')} viewers."
    )
    notes = [
        "- Steps run one after the other, vidfarm then nginx for each count, each after vidfarm "
        "answers promptly again; vidfarm alone is not loaded further once a step failed.",
        f"- {args.seconds:.0f} s per step; {args.pollers} job pollers (1/s each) and one "
        f"upload every {args.upload_every:.0f} s in every step; one uvicorn worker, one embedded "
        "worker idle (auto-encode off); nginx with `worker_processes auto`.",
        "- `media req per CPU-s`: requests the front answered per CPU-second of the process "
        "tree that served the media (vidfarm, or nginx's workers); `client late`: how late the "
        "load client itself issued segment requests (a loaded client shows up here, not as "
        "server latency).",
        f"- load average at the end: {load_average()}. The machine is shared with other "
        "sessions running test suites: `other load` is CPU used by processes not ours during "
        "the step; figures are from a busy machine and understate what a dedicated host does.",
    ]
    return report("HLS viewers: nginx in front versus vidfarm alone", headers, rows, verdict, notes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--viewers", default="50,100,200,400,800,1600")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--pollers", type=int, default=10)
    parser.add_argument("--upload-every", type=float, default=5.0)
    args = parser.parse_args()
    if args.client:
        from _viewers import run

        json.dump(asyncio.run(run(json.loads(args.client))), sys.stdout)
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the clean-up below
    signal.signal(signal.SIGINT, signal.default_int_handler)
    counts = [int(x) for x in args.viewers.split(",")]
    if max(counts) > MAX_VIEWERS or min(counts) < 1 or not 1 <= args.seconds <= 300:
        parser.error(f"1..{MAX_VIEWERS} viewers and 1..300 s per step")
    if not Path(NGINX).exists():
        parser.error(f"{NGINX} is not installed (apt-get install -y nginx)")
    work = Path(tempfile.mkdtemp(prefix="vidfarm-viewers-"))
    (work / "data" / "profiles").mkdir(parents=True)
    (work / "data" / "profiles" / "default.toml").write_text(LECTURE_PROFILE)
    server = Server(
        work / "data",
        env={
            "VIDFARM_MEDIA_URL_SCHEME": "nginx",
            "VIDFARM_AUTO_ENCODE": "false",
            "VIDFARM_WORKER_CONCURRENCY": "1",
        },
    )
    nginx: subprocess.Popen[bytes] | None = None
    try:
        server.start()
        args.master, args.poll_path, args.upload_file = prepare(server, work)
        nginx, nginx_url = start_nginx(server, work / "nginx")
        steps: list[Step] = []
        for viewers in counts:
            if all(s.ok for s in steps if s.front == "vidfarm"):  # stop past its knee
                drain(server)
                steps.append(measure("vidfarm", server.url, viewers, server, [server.pid], args))
            drain(server)
            steps.append(measure("nginx", nginx_url, viewers, server, [nginx.pid], args))
        statuses = server.access_status_counts()
        markdown = render(steps, args) + (
            f"\n- vidfarm's access log over the whole run, by status: {statuses}; warnings and "
            f"errors in its log: {server.log_findings(4) or 'none'}.\n"
        )
        print(markdown)
        write_section("load_viewers", markdown)
    finally:
        if nginx is not None:
            nginx.terminate()
            nginx.wait(10)
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())

"""Server memory while receiving a large upload: POST /videos/upload must stream to disk.

Starts `vidfarm serve` (VIDFARM_AUTO_ENCODE=false) on a free loopback port with a fresh data
folder per upload size, then sends a multipart body built on the fly from a small generated
MPEG-TS repeated until the wanted size (concatenated MPEG-TS is still one valid stream, so the
probe accepts it). The client never holds more than the small TS in memory.

The server's VmRSS (plus that of any child process) is sampled every 50 ms during the upload;
VmHWM is read at the end. A thread also asks GET /healthz every 100 ms, to show how long the
event loop stops answering while an upload is received and stored.

    .venv/bin/python bench/api_upload_memory.py                 # 64 MiB and 1 GiB
    .venv/bin/python bench/api_upload_memory.py --sizes-mib 64 1024 4096

Target: peak RSS of the server < 150 MB, and not growing with the upload size.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from _server import (
    MIB,
    OthersCpu,
    RssSampler,
    Server,
    hwm_kib,
    iter_chunks,
    load_average,
    report,
    rss_kib,
    run_ffmpeg,
    table,
    write_section,
)

TARGET_PEAK_MB = 150.0
CHUNK = 256 * 1024


@dataclass
class Result:
    size_mib: int
    file_bytes: int = 0
    sent_bytes: int = 0
    status: int = 0
    baseline_kib: int = 0
    peak_kib: int = 0  # sampled VmRSS, server + children
    peak_children_kib: int = 0
    hwm_kib: int = 0  # the server's VmHWM at the end (its whole life)
    send_seconds: float = 0.0  # first byte to last byte written by the client
    total_seconds: float = 0.0  # first byte to response
    stored_bytes: int = 0
    leftovers: int = 0  # files left in <data>/uploads
    health_max_ms: float = 0.0  # worst /healthz latency while the body was being sent
    health_after_ms: float = 0.0  # worst /healthz latency asked after the last byte
    health_slow: int = 0  # /healthz answers slower than 1 s (or not at all)
    client_hwm_kib: int = 0
    others_cpu: float = 0.0  # CPU of the rest of the machine during the upload
    findings: list[str] = field(default_factory=list)

    @property
    def mb_per_s(self) -> float:
        return self.sent_bytes / 1e6 / self.total_seconds if self.total_seconds else 0.0

    @property
    def send_mb_per_s(self) -> float:
        return self.sent_bytes / 1e6 / self.send_seconds if self.send_seconds else 0.0


def make_ts(path: Path, seconds: float) -> bytes:
    run_ffmpeg(
        [
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000",
            "-t", str(seconds),
            "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "96k",
            "-f", "mpegts", str(path),
        ],
        timeout=120,
    )  # fmt: skip
    return path.read_bytes()


@dataclass
class Body:
    """A multipart/form-data body with one `file` field: the TS repeated `repeats` times."""

    ts: bytes
    repeats: int
    boundary: str = field(default_factory=lambda: "bench" + secrets.token_hex(12))
    finished_at: float = 0.0

    @property
    def head(self) -> bytes:
        return (
            f"--{self.boundary}\r\n"
            'Content-Disposition: form-data; name="file"; filename="big.ts"\r\n'
            "Content-Type: video/mp2t\r\n\r\n"
        ).encode()

    @property
    def tail(self) -> bytes:
        return f"\r\n--{self.boundary}--\r\n".encode()

    @property
    def file_bytes(self) -> int:
        return len(self.ts) * self.repeats

    @property
    def length(self) -> int:
        return len(self.head) + self.file_bytes + len(self.tail)

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        for _ in range(self.repeats):
            for chunk in iter_chunks(self.ts, CHUNK):
                yield bytes(chunk)
        yield self.tail
        self.finished_at = time.perf_counter()


class HealthProbe(threading.Thread):
    """GET /healthz every `interval` s; records each answer's latency (or a failure)."""

    def __init__(self, url: str, interval: float = 0.1) -> None:
        super().__init__(name="health-probe", daemon=True)
        self.url, self.interval = url, interval
        self.latencies: list[float] = []
        self.started: list[float] = []  # perf_counter() when each answered request was sent
        self.failures = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=30.0) as client:
            while not self._stop_event.is_set():
                start = time.perf_counter()
                try:
                    client.get(self.url + "/healthz").raise_for_status()
                    self.latencies.append(time.perf_counter() - start)
                    self.started.append(start)
                except httpx.HTTPError:
                    self.failures += 1
                self._stop_event.wait(self.interval)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def measure(ts: bytes, size_mib: int, work: Path, settle: float) -> Result:
    result = Result(size_mib=size_mib)
    repeats = max(1, round(size_mib * MIB / len(ts)))
    body = Body(ts, repeats)
    data_dir = work / f"data-{size_mib}"
    server = Server(
        data_dir,
        env={
            "VIDFARM_AUTO_ENCODE": "false",
            "VIDFARM_MAX_UPLOAD_BYTES": str(body.file_bytes + 16 * MIB),
            "VIDFARM_WORKER_CONCURRENCY": "1",
        },
    )
    server.start()
    try:
        time.sleep(settle)  # let start-up garbage settle
        idle = RssSampler(server.pid).start()
        time.sleep(1.0)
        idle.stop()
        result.baseline_kib = idle.peak_total_kib
        sampler = RssSampler(server.pid, interval=0.05).start()
        probe = HealthProbe(server.url)
        probe.start()
        headers = {
            **server.headers,
            "Content-Type": f"multipart/form-data; boundary={body.boundary}",
            "Content-Length": str(body.length),
        }
        others = OthersCpu(server.pid, os.getpid())
        start = time.perf_counter()
        with httpx.Client(timeout=httpx.Timeout(600.0)) as client:
            response = client.post(server.url + "/videos/upload", content=body, headers=headers)
        end = time.perf_counter()
        result.others_cpu, _ = others.stop()
        time.sleep(0.3)  # one more sample after the answer
        probe.stop()
        sampler.stop()
        result.status = response.status_code
        result.sent_bytes = body.length
        result.file_bytes = body.file_bytes
        result.total_seconds = end - start
        result.send_seconds = (body.finished_at or end) - start
        result.peak_kib = max(sampler.peak_total_kib, rss_kib(server.pid))
        result.peak_children_kib = sampler.peak_children_kib
        result.hwm_kib = hwm_kib(server.pid)
        last_byte = body.finished_at or end
        timeline = list(zip(probe.started, probe.latencies, strict=True))
        during = [min(x, last_byte - t) for t, x in timeline if t < last_byte]
        result.health_max_ms = max(during, default=0.0) * 1000
        result.health_after_ms = max((x for t, x in timeline if t >= last_byte), default=0) * 1000
        # A request sent during the body but answered after it covers both periods.
        stalled = [t + x - last_byte for t, x in timeline if t < last_byte < t + x]
        result.health_after_ms = max([result.health_after_ms, *(v * 1000 for v in stalled)])
        result.health_slow = probe.failures + sum(1 for x in probe.latencies if x > 1.0)
        if response.status_code == 200:
            file_id = response.json()["file_id"]
            stored = list((data_dir / "media" / "sources" / file_id).glob("*"))
            result.stored_bytes = sum(p.stat().st_size for p in stored)
        else:
            result.findings.append(f"upload answered {response.status_code}: {response.text[:200]}")
        uploads = data_dir / "uploads"
        result.leftovers = len(list(uploads.iterdir())) if uploads.exists() else 0
    finally:
        server.stop()
        result.findings += server.log_findings()
        shutil.rmtree(data_dir, ignore_errors=True)
    result.client_hwm_kib = hwm_kib_self()
    if result.stored_bytes and result.stored_bytes != body.file_bytes:
        result.findings.append(f"stored {result.stored_bytes} bytes, sent {body.file_bytes}")
    return result


def hwm_kib_self() -> int:
    return hwm_kib(os.getpid())


def mb(kib: int) -> str:
    return f"{kib * 1024 / 1e6:.1f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[64, 1024])
    parser.add_argument("--ts-seconds", type=float, default=10.0, help="length of the TS piece")
    parser.add_argument("--settle", type=float, default=2.0, help="idle seconds before baseline")
    parser.add_argument("--no-write", action="store_true", help="do not update the results file")
    args = parser.parse_args()

    load_at_start = load_average()
    work = Path(tempfile.mkdtemp(prefix="vidfarm-bench-upload-"))
    try:
        ts = make_ts(work / "piece.ts", args.ts_seconds)
        print(f"TS piece: {len(ts)} bytes ({args.ts_seconds:g} s, 640x360 H.264 + AAC)")
        results = []
        for size in args.sizes_mib:
            print(f"uploading {size} MiB ...", flush=True)
            results.append(measure(ts, size, work, args.settle))
    finally:
        shutil.rmtree(work, ignore_errors=True)

    headers = [
        "upload",
        "HTTP",
        "baseline RSS MB",
        "peak RSS MB (50 ms samples)",
        "VmHWM MB",
        "peak - baseline MB",
        "throughput MB/s",
        "client send MB/s",
        "after last byte s",
        "stored = sent",
        "temp files left",
        "/healthz max ms during body",
        "/healthz max ms after last byte",
        "/healthz > 1 s",
        "other processes CPU s",
    ]
    rows = [
        [
            f"{r.size_mib} MiB",
            str(r.status),
            mb(r.baseline_kib),
            mb(r.peak_kib)
            + (f" (children {mb(r.peak_children_kib)})" if r.peak_children_kib else ""),
            mb(r.hwm_kib),
            mb(r.peak_kib - r.baseline_kib),
            f"{r.mb_per_s:.0f}",
            f"{r.send_mb_per_s:.0f}",
            f"{r.total_seconds - r.send_seconds:.1f}",
            "yes" if r.stored_bytes == r.file_bytes else f"NO ({r.stored_bytes})",
            str(r.leftovers),
            f"{r.health_max_ms:.0f}",
            f"{r.health_after_ms:.0f}",
            str(r.health_slow),
            f"{r.others_cpu:.1f}",
        ]
        for r in results
    ]
    worst = max(max(r.peak_kib, r.hwm_kib) for r in results) * 1024 / 1e6
    growth = (
        (
            max(results, key=lambda r: r.size_mib).peak_kib
            - min(results, key=lambda r: r.size_mib).peak_kib
        )
        * 1024
        / 1e6
        if len(results) > 1
        else 0.0
    )
    ok = all(r.status == 200 for r in results) and worst < TARGET_PEAK_MB
    verdict = (
        f"{'PASS' if ok else 'FAIL'}: peak server RSS {worst:.1f} MB "
        f"(target < {TARGET_PEAK_MB:.0f} MB); peak grows by {growth:+.1f} MB from "
        f"{min(r.size_mib for r in results)} MiB to {max(r.size_mib for r in results)} MiB"
    )
    busy = max(r.others_cpu / r.total_seconds for r in results if r.total_seconds)
    if busy > 0.2:
        verdict += (
            f" -- WARNING: other processes used up to {busy:.2f} CPU s/s during the uploads "
            "(busy machine: throughput figures are not reliable)"
        )
    findings = sorted({f for r in results for f in r.findings})
    client_peak = max(r.client_hwm_kib for r in results)

    print()
    print(table(headers, rows))
    print()
    print(verdict)
    print(f"client (this process) VmHWM: {mb(client_peak)} MB")
    for line in findings:
        print("server log:", line)

    notes = [
        f"- TS piece {len(ts)} bytes, repeated; multipart body streamed from a generator with an "
        "explicit Content-Length; fresh `vidfarm serve` and data folder per size, "
        "`VIDFARM_AUTO_ENCODE=false`.",
        "- throughput = body bytes / (first byte sent -> response received), so it includes the "
        "server's probe and the copy of the upload into storage after the last byte; "
        "client send = body bytes / time until the client wrote its last byte; "
        "after last byte = time from the client's last byte to the response.",
        "- /healthz was requested every 100 ms during the upload: its worst latency shows how long "
        "the event loop was blocked.",
        f"- client (benchmark process) VmHWM: {mb(client_peak)} MB.",
        "- other processes CPU = the machine's busy CPU time minus the server's and the "
        f"client's during the upload (near 0 on a quiet machine). Load average at start: "
        f"{load_at_start}.",
    ]
    if findings:
        notes.append("- server log warnings/errors: " + "; ".join(f"`{f}`" for f in findings))
    markdown = report("Upload memory (`bench/api_upload_memory.py`)", headers, rows, verdict, notes)
    if not args.no_write:
        write_section("api_upload_memory", markdown)
        print("results written to bench/results/api.md")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

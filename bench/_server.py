"""Shared helpers for the API benchmarks: run `vidfarm serve`, read /proc, write results.

Linux only (memory and CPU figures come from /proc).
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
RESULTS = ROOT / "bench" / "results" / "api.md"
MIB = 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


# --- the machine and the command -------------------------------------------------------------


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return (
        f"nproc {os.cpu_count()}, {model}, {mem_kib / MIB:.1f} GiB RAM, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def command_line() -> str:
    script = Path(sys.argv[0]).resolve()
    try:
        shown = str(script.relative_to(ROOT))
    except ValueError:
        shown = str(script)
    return " ".join([".venv/bin/python", shown, *sys.argv[1:]])


def revision() -> str:
    """The commit measured (read-only git), with a note when src/ has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head} (+ uncommitted changes in src/)" if dirty else head


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def write_section(key: str, markdown: str, path: Path = RESULTS) -> None:
    """Replace this benchmark's section of the results file (other sections are kept)."""
    begin, end = f"<!-- begin {key} -->", f"<!-- end {key} -->"
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else "# API benchmarks\n\n"
    block = f"{begin}\n{markdown.rstrip()}\n{end}\n"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end) + r"\n?", re.DOTALL)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text + "\n" + block
    path.write_text(text)


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def report(
    title: str, headers: list[str], rows: list[list[str]], verdict: str, notes: list[str]
) -> str:
    """One benchmark's markdown section: where and when it ran, its table, verdict, notes."""
    return "\n".join(
        [
            f"## {title}",
            "",
            f"- command: `{command_line()}`",
            f"- date: {now()}",
            f"- machine: {machine()}",
            f"- revision: {revision()}",
            "",
            table(headers, rows),
            "",
            f"**{verdict}**",
            "",
            *notes,
        ]
    )


def ffmpeg() -> str:
    from vidfarm.media.tools import ffmpeg_executable

    return ffmpeg_executable()


def run_ffmpeg(args: list[str], timeout: float) -> None:
    subprocess.run(
        [ffmpeg(), "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args],
        check=True,
        timeout=timeout,
    )


# --- /proc ------------------------------------------------------------------------------------


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (needs /proc/<pid>/task/<tid>/children)."""
    found: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = list(Path(f"/proc/{current}/task").iterdir())
        except OSError:
            continue
        for task in tasks:
            try:
                children = [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
            found += children
            todo += children
    return found


def _status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rss_kib(pid: int) -> int:
    return _status_kib(pid, "VmRSS")


def hwm_kib(pid: int) -> int:
    return _status_kib(pid, "VmHWM")


def cpu_seconds(pid: int, *, waited_children: bool = False) -> float:
    """user + system CPU of one process (all its threads), from /proc/<pid>/stat; with
    `waited_children`, plus that of the children it has waited for (its ffmpeg runs)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2 :].split()
    last = 15 if waited_children else 13  # utime, stime (, cutime, cstime)
    return sum(int(value) for value in fields[11:last]) / CLK_TCK


def machine_cpu_seconds() -> float:
    """Busy CPU time of the whole machine (all cores, excluding idle and iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    """CPU of a process and its live descendants (finished children are not counted)."""
    return cpu_seconds(pid) + sum(cpu_seconds(child) for child in descendants(pid))


class OthersCpu:
    """CPU the rest of the machine used while ours ran: machine busy time minus `pids`' trees.

    Large values mean the machine was busy with something else and timings are unreliable.
    """

    def __init__(self, *pids: int) -> None:
        self.pids = list(pids)
        self.start_machine = machine_cpu_seconds()
        self.start_ours = sum(tree_cpu_seconds(pid) for pid in self.pids)
        self.start_time = time.perf_counter()

    def stop(self, extra_ours: float = 0.0) -> tuple[float, float]:
        """(others' CPU seconds, wall seconds); `extra_ours` is CPU of ours that ended."""
        machine_delta = machine_cpu_seconds() - self.start_machine
        ours = sum(tree_cpu_seconds(pid) for pid in self.pids) - self.start_ours + extra_ours
        return max(0.0, machine_delta - ours), time.perf_counter() - self.start_time


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


@dataclass
class RssSampler:
    """Samples VmRSS of a process (and, summed, of its descendants) every `interval` s."""

    pid: int
    interval: float = 0.05
    samples: list[tuple[float, int, int]] = field(default_factory=list)  # (t, own, children)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        start = time.perf_counter()
        while not self._stop.is_set():
            own = rss_kib(self.pid)
            kids = sum(rss_kib(child) for child in descendants(self.pid))
            self.samples.append((time.perf_counter() - start, own, kids))
            self._stop.wait(self.interval)

    def stop(self) -> RssSampler:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self

    @property
    def peak_total_kib(self) -> int:
        return max((own + kids for _, own, kids in self.samples), default=0)

    @property
    def peak_children_kib(self) -> int:
        return max((kids for _, _, kids in self.samples), default=0)


# --- the server -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """`vidfarm serve` in a subprocess, on a free loopback port, with its own data folder."""

    data_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    token: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.data_dir.parent / f"{self.data_dir.name}-serve.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("VIDFARM_")}
        env.update(
            {
                "VIDFARM_DATA_DIR": str(self.data_dir),
                "VIDFARM_HOST": "127.0.0.1",
                "VIDFARM_PORT": str(self.port),
                **self.env,
            }
        )
        return env

    def start(self, timeout: float = 60.0) -> Server:
        self.port = self.port or free_port()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        created = subprocess.run(
            [PYTHON, "-m", "vidfarm", "token", "create", "--role", "user", "--name", "bench"],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        self.token = created.stdout.strip().splitlines()[-1].strip()
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [PYTHON, "-m", "vidfarm", "serve"],
            env=self.environment(),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vidfarm serve exited early; see {self.log_path}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"vidfarm serve did not answer within {timeout} s")

    def stop(self, timeout: float = 40.0) -> int | None:
        if self.process is None or self.process.poll() is not None:
            return None if self.process is None else self.process.returncode
        self.process.send_signal(signal.SIGINT)  # uvicorn's clean shutdown
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(10)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def log_findings(self, limit: int = 8) -> list[str]:
        """Warnings, errors and tracebacks in the server's log (the first `limit`)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return []
        bad = re.compile(r"\b(WARNING|ERROR|CRITICAL)\b|Traceback|Exception")
        return [line for line in lines if bad.search(line)][:limit]

    def access_status_counts(self) -> dict[str, int]:
        """HTTP status codes in uvicorn's access log lines."""
        counts: dict[str, int] = {}
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return counts
        for match in re.finditer(r'HTTP/1\.1" (\d{3})', text):
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
        return counts


def iter_chunks(data: bytes, size: int) -> Iterator[memoryview]:
    view = memoryview(data)
    for start in range(0, len(view), size):
        yield view[start : start + size]

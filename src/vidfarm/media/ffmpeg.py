"""Run one ffmpeg process: argument lists only, live progress, cancellation and a time limit.

ffmpeg runs in its own process group so that cancelling or timing out kills everything it
started. Failures become classified errors carrying the exit code and the end of the log.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from vidfarm.errors import FFmpegFailed, FFmpegInterrupted, JobCancelled, JobTimedOut

#: Log lines that mean the machine, not the input, was the problem: worth another attempt.
TRANSIENT_MARKERS = (
    "No space left on device",
    "Cannot allocate memory",
    "Input/output error",
    "Resource temporarily unavailable",
    "Connection refused",
    "Connection reset",
)
LOG_TAIL_LINES = 40

#: Called with a percentage (0-100); returning False cancels the run.
ProgressCallback = Callable[[float], bool]


@dataclass(frozen=True, kw_only=True)
class FFmpegRun:
    exit_code: int
    wall_seconds: float
    cpu_seconds: float  # user + system time of ffmpeg and its threads
    log_tail: list[str]


def run_ffmpeg(
    ffmpeg: str,
    args: Sequence[str],
    *,
    duration: float,
    cwd: Path | None = None,
    on_progress: ProgressCallback | None = None,
    time_limit: float | None = None,
) -> FFmpegRun:
    """Run `ffmpeg args...`, reporting progress against `duration` seconds of output."""
    command = [
        ffmpeg,
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "warning",
        "-stats_period",
        "0.5",
        "-progress",
        "pipe:1",
        "-y",
        *args,
    ]
    started = time.monotonic()
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        errors="replace",
        start_new_session=True,  # its own process group: one kill reaches every child
    )
    log: deque[str] = deque(maxlen=LOG_TAIL_LINES)
    stderr_reader = threading.Thread(target=_collect, args=(process.stderr, log), daemon=True)
    stderr_reader.start()
    timed_out = threading.Event()
    watchdog = None
    if time_limit:
        watchdog = threading.Timer(time_limit, _expire, args=(process, timed_out))
        watchdog.daemon = True
        watchdog.start()
    cancelled = False
    best = 0.0  # ffmpeg's out_time wanders between streams; users expect a bar that only grows
    try:
        assert process.stdout is not None
        for line in process.stdout:
            key, _, value = line.strip().partition("=")
            if key != "out_time_us" or on_progress is None or cancelled:
                continue
            percent = _percent(value, duration)
            if percent is None:
                continue
            best = max(best, percent)
            if not on_progress(best):
                cancelled = True
                _kill_group(process)
    except BaseException:
        _kill_group(process)
        raise
    finally:
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        if watchdog:
            watchdog.cancel()
        stderr_reader.join(timeout=5)
    result = FFmpegRun(
        exit_code=process.returncode,
        wall_seconds=time.monotonic() - started,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        log_tail=list(log),
    )
    if cancelled:
        raise JobCancelled("cancelled while encoding")
    if timed_out.is_set() and result.exit_code != 0:
        raise JobTimedOut(f"ffmpeg ran past its time limit of {time_limit:.0f} s")
    if result.exit_code != 0:
        raise classify_failure(result.exit_code, result.log_tail)
    return result


def classify_failure(exit_code: int, log_tail: list[str]) -> FFmpegFailed | FFmpegInterrupted:
    last = next((line for line in reversed(log_tail) if line.strip()), "no error message")
    text = "\n".join(log_tail)
    if exit_code < 0 or any(marker in text for marker in TRANSIENT_MARKERS):
        how = f"killed by signal {-exit_code}" if exit_code < 0 else f"exit {exit_code}"
        return FFmpegInterrupted(
            f"ffmpeg was interrupted ({how}): {last}", exit_code=exit_code, log_tail=log_tail
        )
    return FFmpegFailed(
        f"ffmpeg failed (exit {exit_code}): {last}", exit_code=exit_code, log_tail=log_tail
    )


def _percent(out_time_us: str, duration: float) -> float | None:
    try:
        seconds = int(out_time_us) / 1_000_000
    except ValueError:  # "N/A" before the first frame
        return None
    if duration <= 0:
        return None
    return max(0.0, min(99.9, seconds * 100.0 / duration))


def _collect(stream: object, log: deque[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        stripped = line.rstrip()
        if stripped:
            log.append(stripped)


def _expire(process: subprocess.Popen[str], timed_out: threading.Event) -> None:
    timed_out.set()
    _kill_group(process)


def _kill_group(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)

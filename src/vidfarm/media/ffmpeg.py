"""Run one ffmpeg process: argument lists only, live progress, cancellation and a time limit.

ffmpeg runs in its own process group so that cancelling or timing out kills everything it
started, and dies with the process that started it (`spawn`), so a kill -9 of a worker leaves
no orphan encoding for nobody. Failures become classified errors carrying the exit code and
the end of the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from vidfarm.errors import (
    FFmpegFailed,
    FFmpegInterrupted,
    JobCancelled,
    JobTimedOut,
    OutOfSpace,
)
from vidfarm.media.spawn import spawn

log = logging.getLogger(__name__)

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


class FFmpegProcess:
    """One ffmpeg child: argument list, own process group, stderr tail kept, time limit.

    Used as a context manager: leaving it early (an exception, a consumer that stops) kills
    the whole process group; leaving it in every case reaps the child, so no ffmpeg outlives
    its job.
    """

    def __init__(
        self, command: Sequence[str], *, cwd: Path | None = None, time_limit: float | None = None
    ) -> None:
        self.time_limit = time_limit
        self.started = time.monotonic()
        self.process = spawn(list(command), cwd=cwd)
        self.log: deque[str] = deque(maxlen=LOG_TAIL_LINES)
        self.timed_out = threading.Event()
        self.exit_code: int | None = None
        self.cpu_seconds = 0.0
        self._reader = threading.Thread(target=self._collect, daemon=True)
        self._reader.start()
        self._watchdog: threading.Timer | None = None
        if time_limit:
            self._watchdog = threading.Timer(time_limit, self._expire)
            self._watchdog.daemon = True
            self._watchdog.start()

    @property
    def stdout(self) -> IO[bytes]:
        assert self.process.stdout is not None
        return self.process.stdout

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def wait(self) -> int:
        """Reap the child (recording its CPU time) and stop the helpers; returns the exit code."""
        if self.exit_code is None:
            _, status, usage = os.wait4(self.process.pid, 0)
            self.exit_code = self.process.returncode = os.waitstatus_to_exitcode(status)
            self.cpu_seconds = usage.ru_utime + usage.ru_stime
            if self._watchdog:
                self._watchdog.cancel()
            self._reader.join(timeout=5)
            self.stdout.close()
        return self.exit_code

    def raise_for_failure(self, what: str = "ffmpeg") -> None:
        """Turn a non-zero exit into its classified error (a time-out first)."""
        if self.exit_code == 0:
            return
        if self.timed_out.is_set():
            raise JobTimedOut(f"{what} ran past its time limit of {self.time_limit:.0f} s")
        raise classify_failure(self.exit_code or -1, list(self.log))

    def __enter__(self) -> FFmpegProcess:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:
            self.kill()
        self.wait()

    def _collect(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self.log.append(line)

    def _expire(self) -> None:
        self.timed_out.set()
        self.kill()


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
        ffmpeg, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "warning",
        "-stats_period", "0.5", "-progress", "pipe:1", "-y", *args,
    ]  # fmt: skip
    with FFmpegProcess(command, cwd=cwd, time_limit=time_limit) as child:
        asker = _ProgressAsker(child, on_progress)
        with asker.between_lines():
            for raw in child.stdout:
                key, _, value = raw.decode("ascii", "replace").strip().partition("=")
                if key == "out_time_us" and (percent := _percent(value, duration)) is not None:
                    asker.ask(percent)
    if asker.cancelled:
        raise JobCancelled("cancelled while encoding")
    child.raise_for_failure()
    return FFmpegRun(
        exit_code=child.exit_code or 0,
        wall_seconds=time.monotonic() - child.started,
        cpu_seconds=child.cpu_seconds,
        log_tail=list(child.log),
    )


#: A silent ffmpeg (a stalled network source, a frozen process) is still asked this often
#: whether to go on: a stop or a cancel reaches it without waiting for its next progress line.
ASK_EVERY_SECONDS = 1.0


class _ProgressAsker:
    """Asks `on_progress` at each progress line, and between lines when ffmpeg is silent;
    the first False kills the process group."""

    def __init__(self, child: FFmpegProcess, on_progress: ProgressCallback | None) -> None:
        self._child = child
        self._on_progress = on_progress
        self._lock = threading.Lock()
        self._best = 0.0  # ffmpeg's out_time wanders between streams; a bar only grows
        self._asked = time.monotonic()
        self.cancelled = False

    def ask(self, percent: float | None = None) -> None:
        with self._lock:
            self._asked = time.monotonic()
            if self._on_progress is None or self.cancelled:
                return
            self._best = max(self._best, percent or 0.0)
            if not self._on_progress(self._best):
                self.cancelled = True
                self._child.kill()

    @contextlib.contextmanager
    def between_lines(self) -> Iterator[None]:
        done = threading.Event()

        def watch() -> None:
            while not done.wait(ASK_EVERY_SECONDS / 2):
                if time.monotonic() - self._asked >= ASK_EVERY_SECONDS:
                    try:
                        self.ask()
                    except Exception as error:  # the next progress line asks (and raises) again
                        log.warning("ffmpeg: asking whether to go on failed: %s", error)
                        return

        watcher = threading.Thread(target=watch, name="vidfarm-ffmpeg-ask", daemon=True)
        if self._on_progress is not None:
            watcher.start()
        try:
            yield
        finally:
            done.set()
            if watcher.is_alive():
                watcher.join()


def classify_failure(
    exit_code: int, log_tail: list[str]
) -> FFmpegFailed | FFmpegInterrupted | OutOfSpace:
    last = next((line for line in reversed(log_tail) if line.strip()), "no error message")
    text = "\n".join(log_tail)
    full = next((line for line in log_tail if "No space left on device" in line), None)
    if full is not None:  # the job waits for space instead of burning its attempts
        return OutOfSpace(f"ffmpeg ran out of disk space: {full}", log_tail=log_tail)
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

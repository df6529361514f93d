"""Processes of the machine as /proc shows them: the encoders a test freezes or expects gone."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def encoders_in(folder: Path) -> list[int]:
    """Live processes working in `folder` (ffmpeg runs with its staging folder as cwd)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cwd = os.readlink(proc / "cwd")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if cwd.startswith(f"{folder}/") and state not in ("Z", "X"):
            found.append(int(proc.name))
    return found


@contextmanager
def frozen(pids: list[int]) -> Iterator[None]:
    """Hold processes still (SIGSTOP) for a step a busy machine could otherwise let them win;
    let them go on (SIGCONT) after, those still alive."""
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@contextmanager
def held_at_work(
    folder: Path, ready: Callable[[], object] = lambda: True, timeout: float = 60
) -> Iterator[list[int]]:
    """The encoders working in `folder`, caught as soon as they (and `ready()`) are there and
    held still (SIGSTOP) for the block: what a test does to a farm mid-encode then cannot lose
    a race with a fast encoder. One that ended meanwhile is not counted; SIGCONT after."""
    deadline = time.monotonic() + timeout
    while True:
        tried = encoders_in(folder) if ready() else []
        for pid in tried:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)
        held = [pid for pid in encoders_in(folder) if pid in tried]  # not gone, not a zombie
        if held:
            break
        for pid in tried:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)
        if time.monotonic() > deadline:
            raise AssertionError(f"no encoder at work in {folder} within {timeout:.0f} s")
        time.sleep(0.01)
    try:
        yield held
    finally:
        for pid in held:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)

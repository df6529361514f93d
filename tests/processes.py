"""Processes of the machine as /proc shows them: the encoders a test freezes or expects gone."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
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

"""Start a child that dies with this process: PR_SET_PDEATHSIG, set between fork and exec.

A child in its own session (so one killpg cancels everything it started) is not killed with
its parent: after a kill -9 of `serve` or of a worker, ffmpeg would encode on for nobody.
Linux sends the death signal when the *thread* that forked the child ends, and workers run
ffmpeg from pool threads that may end while it runs (a pool shrinking, a generator consumed
elsewhere). So every child is forked by one spawner thread that lives as long as the process.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_prctl = getattr(_libc, "prctl", None)

_Request = tuple[list[str], Path | None, "Future[subprocess.Popen[bytes]]"]


def spawn(command: list[str], *, cwd: Path | None = None) -> subprocess.Popen[bytes]:
    """Popen `command` (stdout/stderr piped, own session) so that it dies with this process."""
    if _prctl is None:  # not Linux: no death signal, only the process group
        return _popen(command, cwd, parent=None)
    done: Future[subprocess.Popen[bytes]] = Future()
    _spawner().put((command, cwd, done))
    return done.result()


def _popen(command: list[str], cwd: Path | None, parent: int | None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: one kill reaches every child
        preexec_fn=None if parent is None else _die_with(parent),
    )


def _die_with(parent: int) -> Callable[[], None]:
    def preexec() -> None:
        assert _prctl is not None
        _prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the death signal was armed
            os._exit(1)

    return preexec


_lock = threading.Lock()
_queue: queue.SimpleQueue[_Request] | None = None
_owner_pid = 0


def _spawner() -> queue.SimpleQueue[_Request]:
    """The queue of this process's spawner thread, started on first use (again after a fork)."""
    global _queue, _owner_pid
    with _lock:
        if _queue is None or _owner_pid != os.getpid():
            _queue, _owner_pid = queue.SimpleQueue(), os.getpid()
            thread = threading.Thread(
                target=_serve, args=(_queue,), name="vidfarm-spawner", daemon=True
            )
            thread.start()
        return _queue


def _serve(requests: queue.SimpleQueue[_Request]) -> None:
    parent = os.getpid()
    while True:
        command, cwd, done = requests.get()
        if not done.set_running_or_notify_cancel():
            continue
        try:
            done.set_result(_popen(command, cwd, parent))
        except BaseException as error:  # handed to the caller, the spawner lives on
            done.set_exception(error)

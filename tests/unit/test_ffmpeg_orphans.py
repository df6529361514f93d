"""ffmpeg dies with the process that started it, and only then (`media.spawn`).

A worker killed with kill -9 must not leave its encoder running for nobody; a pool thread that
ends while its ffmpeg still runs must not take the encoder with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path

from vidfarm.media.ffmpeg import FFmpegProcess
from vidfarm.media.tools import ffmpeg_executable


def forever(marker: str) -> list[str]:
    """An ffmpeg that would run for ever, findable by its marker."""
    return [
        ffmpeg_executable(), "-nostdin", "-re", "-f", "lavfi", "-i", "testsrc2=s=64x36:r=5",
        "-metadata", f"comment={marker}", "-f", "null", "-",
    ]  # fmt: skip


def alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def wait_until(condition: object, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def test_kill_nine_of_the_parent_kills_its_ffmpeg(tmp_path: Path) -> None:
    """The worker's ffmpeg is started from a pool thread, like the embedded pool does."""
    marker = f"orphan-{uuid.uuid4().hex}"
    script = textwrap.dedent(f"""
        import sys, threading, time
        from vidfarm.media.ffmpeg import FFmpegProcess
        def job():
            with FFmpegProcess({forever(marker)!r}) as child:
                print(child.process.pid, flush=True)
                for _ in child.stdout:
                    pass
        threading.Thread(target=job, daemon=True).start()
        time.sleep(3600)
    """)
    worker = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        ffmpeg_pid = int(worker.stdout.readline())
        assert alive(ffmpeg_pid)
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)
        # Without the death signal this ffmpeg would run for ever in its own session.
        assert wait_until(lambda: not alive(ffmpeg_pid)), "ffmpeg outlived its worker"
    finally:
        worker.kill()
        worker.wait()
        subprocess.run(["pkill", "-9", "-f", marker], check=False)


def test_a_pool_thread_ending_does_not_kill_the_ffmpeg_it_started() -> None:
    """Linux sends the death signal when the forking *thread* ends: one long-lived spawner forks."""
    started: list[FFmpegProcess] = []
    command = [
        ffmpeg_executable(), "-nostdin", "-re", "-f", "lavfi", "-i", "sine=d=2",
        "-f", "wav", "-",
    ]  # fmt: skip
    thread = threading.Thread(target=lambda: started.append(FFmpegProcess(command)))
    thread.start()
    thread.join()  # the thread that asked for ffmpeg is gone; ffmpeg must go on
    [child] = started
    with child:
        size = sum(len(chunk) for chunk in iter(lambda: child.stdout.read(65536), b""))
    assert child.exit_code == 0, child.log
    assert size > 2 * 44_100  # two seconds of audio, all of it

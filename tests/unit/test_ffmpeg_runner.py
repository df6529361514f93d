"""Running ffmpeg: progress, failure classes, cancellation and the time limit."""

from __future__ import annotations

import os
import subprocess
import threading
import uuid
from pathlib import Path

import pytest

from vidfarm.errors import (
    FFmpegFailed,
    FFmpegInterrupted,
    JobCancelled,
    JobTimedOut,
    OutOfSpace,
)
from vidfarm.media.ffmpeg import classify_failure, run_ffmpeg
from vidfarm.media.tools import ffmpeg_executable
from waiting import wait_until


def lavfi_to_null(duration: float, marker: str, *, realtime: bool = False) -> list[str]:
    source = ["-re"] if realtime else []
    return [
        *source,
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=s=160x90:r=25:d={duration}",
        "-metadata",
        f"comment={marker}",
        "-f",
        "null",
        "-",
    ]


def still_running(marker: str) -> bool:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return bool(found.stdout.strip())


def test_progress_and_resource_use_are_reported() -> None:
    seen: list[float] = []
    run = run_ffmpeg(
        ffmpeg_executable(),
        lavfi_to_null(4, "ok"),
        duration=4.0,
        on_progress=lambda p: seen.append(p) or True,
    )
    assert run.exit_code == 0 and run.cpu_seconds > 0 and run.wall_seconds > 0
    assert seen and seen == sorted(seen) and seen[-1] > 50


def test_failure_carries_exit_code_and_log_tail() -> None:
    with pytest.raises(FFmpegFailed) as caught:
        run_ffmpeg(
            ffmpeg_executable(),
            ["-f", "lavfi", "-i", "nosuchfilter", "-f", "null", "-"],
            duration=1.0,
        )
    error = caught.value
    assert error.exit_code not in (0, None) and error.log_tail
    assert error.permanent and "\n" not in str(error)
    assert str(error).startswith(f"ffmpeg failed (exit {error.exit_code}): ")


def test_cancellation_kills_the_process_group() -> None:
    marker = f"vidfarm-cancel-{uuid.uuid4().hex}"
    calls: list[float] = []
    with pytest.raises(JobCancelled):
        run_ffmpeg(
            ffmpeg_executable(),
            lavfi_to_null(60, marker, realtime=True),
            duration=60,
            on_progress=lambda p: calls.append(p) or len(calls) < 2,
        )
    assert not still_running(marker)


def test_a_silent_ffmpeg_is_stopped_all_the_same(tmp_path: Path) -> None:
    """A stalled source (here a FIFO nobody writes to) gets no progress line out of ffmpeg:
    a stop or a cancel still reaches it, asked between lines (it once waited for a line)."""
    marker = f"vidfarm-silent-{uuid.uuid4().hex}"
    fifo = tmp_path / marker
    os.mkfifo(fifo)
    asked: list[float] = []
    stop = threading.Event()
    outcome: list[BaseException] = []

    def on_progress(percent: float) -> bool:
        asked.append(percent)
        return not stop.is_set()

    def run() -> None:
        try:
            run_ffmpeg(
                ffmpeg_executable(),
                ["-i", str(fifo), "-f", "null", "-"],
                duration=10,
                on_progress=on_progress,
            )
        except BaseException as error:  # handed to the test's thread
            outcome.append(error)

    runner = threading.Thread(target=run, daemon=True)
    runner.start()
    try:
        wait_until(lambda: asked, 10, "ffmpeg asked about while silent")
        assert still_running(marker)  # still blocked opening its input
        stop.set()
        runner.join(30)
        assert not runner.is_alive(), "the silent ffmpeg was never stopped"
        assert [type(e) for e in outcome] == [JobCancelled]
        assert not still_running(marker)
    finally:
        if runner.is_alive():  # unblock it (open the FIFO for writing), never leave it behind
            with os.fdopen(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK), "wb"):
                pass


def test_time_limit_kills_the_process_group() -> None:
    marker = f"vidfarm-limit-{uuid.uuid4().hex}"
    with pytest.raises(JobTimedOut, match="time limit of 1 s"):
        run_ffmpeg(
            ffmpeg_executable(),
            lavfi_to_null(60, marker, realtime=True),
            duration=60,
            time_limit=1.0,
        )
    assert not still_running(marker)


@pytest.mark.parametrize(
    ("exit_code", "log", "transient"),
    [
        (-9, ["frame=  10"], True),  # killed (OOM killer, operator): try again
        (1, ["Cannot allocate memory"], True),
        (1, ["Invalid data found when processing input"], False),
        (234, [], False),
    ],
)
def test_failures_are_classified(exit_code: int, log: list[str], transient: bool) -> None:
    error = classify_failure(exit_code, log)
    assert isinstance(error, FFmpegInterrupted if transient else FFmpegFailed)
    assert error.permanent is not transient
    assert error.exit_code == exit_code


def test_a_full_disk_is_out_of_space_with_ffmpegs_line() -> None:
    line = "av_interleaved_write_frame(): No space left on device"
    error = classify_failure(1, ["frame=  10", line, "Conversion failed!"])
    assert isinstance(error, OutOfSpace) and not error.permanent
    assert str(error) == f"ffmpeg ran out of disk space: {line}"
    assert line in error.log_tail

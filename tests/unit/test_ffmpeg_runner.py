"""Running ffmpeg: progress, failure classes, cancellation and the time limit."""

from __future__ import annotations

import subprocess
import uuid

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

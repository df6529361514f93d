"""Leftovers: what a dead process left in scratch space is swept; what a live one holds is not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from vidfarm.scratch import locked_temp_file, owned_folder, sweep


def holder(script: str) -> subprocess.Popen[str]:
    """Another process that takes a hold, says "held" and waits to be killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "held"
    return process


def kill_nine(process: subprocess.Popen[str]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def test_an_attempt_folder_is_swept_once_its_process_is_killed(tmp_path: Path) -> None:
    work = tmp_path / "work"
    folder = work / "job1-a1"
    process = holder(f"""
        import time
        from pathlib import Path
        from vidfarm.scratch import owned_folder
        with owned_folder(Path({str(folder)!r})) as folder:
            staging = folder / ".out.partial-1234abcd"
            staging.mkdir()
            (staging / "seg0.ts").write_bytes(b"x" * 100_000)
            print("held", flush=True)
            time.sleep(3600)
    """)
    try:
        assert sweep(work, grace=0).paths == []  # its process is alive: kept
        assert (folder / ".out.partial-1234abcd" / "seg0.ts").exists()
        kill_nine(process)  # no `finally` runs
        assert folder.exists()
        swept = sweep(work)  # however young: the dead owner's lock is gone
        assert swept.paths == [folder] and swept.freed_bytes >= 100_000
        assert not folder.exists()
    finally:
        process.kill()
        process.wait()


def test_a_half_upload_is_swept_once_its_server_is_killed(tmp_path: Path) -> None:
    uploads = tmp_path / "uploads"
    process = holder(f"""
        import os, time
        from pathlib import Path
        from vidfarm.scratch import locked_temp_file
        path, fd, lock = locked_temp_file(Path({str(uploads)!r}), "upload-")
        os.write(fd, b"y" * 50_000)
        os.close(fd)  # the lock stays with the other descriptor
        print("held", flush=True)
        time.sleep(3600)
    """)
    try:
        [upload] = uploads.glob("upload-*")
        assert sweep(uploads, "upload-*").paths == []
        kill_nine(process)
        swept = sweep(uploads, "upload-*")
        assert swept.paths == [upload] and swept.freed_bytes == 50_000
    finally:
        process.kill()
        process.wait()


def test_the_owner_removes_its_own_folder_and_a_bare_folder_waits_for_its_grace(
    tmp_path: Path,
) -> None:
    with owned_folder(tmp_path / "work" / "job2-a3") as folder:
        (folder / "out.mp4").write_bytes(b"z")
        assert sweep(tmp_path / "work", grace=0).paths == []
    assert not folder.exists()
    bare = tmp_path / "work" / "job3-a1"  # no owner file: being created, or left by old code
    bare.mkdir()
    assert sweep(tmp_path / "work").paths == []
    assert sweep(tmp_path / "work", grace=0).paths == [bare]


def test_an_upload_held_in_this_process_is_kept_until_released(tmp_path: Path) -> None:
    path, fd, lock = locked_temp_file(tmp_path, "upload-")
    os.close(fd)
    assert sweep(tmp_path, "upload-*").paths == []
    os.close(lock)
    assert sweep(tmp_path, "upload-*").paths == [path]

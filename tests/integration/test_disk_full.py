"""A full disk: 507 for an upload, /readyz 503 below VIDFARM_MIN_FREE_BYTES, and an encode
that waits for space (its attempt not counted) and resumes by itself when space returns.

The small full disk is a real tmpfs mounted over the farm's folder: root only. Without root
(or mount rights) the tests skip with the reason; with CI set they fail, since CI runs as root.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from test_farm import Farm

from vidfarm.scratch import free_bytes

MiB = 1024**2
Mount = Callable[[Path, int], Path]


@pytest.fixture
def small_disk() -> Iterator[Mount]:
    """Mount a tmpfs of `size` bytes at a folder; unmounted at the end."""
    mounted: list[Path] = []

    def mount(folder: Path, size: int) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            reason = f"cannot mount a small tmpfs here: {result.stderr.strip() or 'not root'}"
            if os.environ.get("CI"):
                pytest.fail(f"{reason} (CI is set and runs as root: this must work)")
            pytest.skip(reason)
        mounted.append(folder)
        return folder

    yield mount
    for folder in reversed(mounted):
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(folder: Path, leave: int) -> Path:
    """Fill `folder`'s disk until only `leave` bytes are free."""
    filler = folder / "filler"
    with filler.open("wb") as handle:
        handle.truncate(0)
        while (room := free_bytes(folder) - leave) > 0:
            handle.write(b"\0" * min(room, MiB))
            handle.flush()
    return filler


@pytest.fixture
def farm(tmp_path: Path, pg_database: str) -> Iterator[Farm]:
    farm = Farm(tmp_path / "data", pg_database)
    farm.data_dir.mkdir()
    yield farm
    farm.stop()


def test_an_upload_on_a_full_disk_is_a_507_in_one_line(
    farm: Farm, small_disk: Mount, small_clip: Path
) -> None:
    uploads = small_disk(farm.data_dir / "uploads", 2 * MiB)
    farm.start()
    big = farm.data_dir / "big.mp4"
    big.write_bytes(small_clip.read_bytes() + b"\0" * 4 * MiB)
    with big.open("rb") as handle:
        response = httpx.post(
            f"http://127.0.0.1:{farm.port}/videos/upload",
            headers=farm.headers,
            files={"file": ("big.mp4", handle)},
            timeout=60,
        )
    assert response.status_code == 507, response.text
    assert response.json()["detail"].startswith("insufficient storage: out of disk space")
    assert "\n" not in response.text
    assert not list(uploads.glob("upload-*"))  # nothing half-written is kept
    assert "Traceback" not in (farm.data_dir / "serve.log").read_text()


def test_readyz_says_503_below_the_free_space_threshold(farm: Farm, small_disk: Mount) -> None:
    work = small_disk(farm.data_dir / "work", 20 * MiB)
    farm.env["VIDFARM_MIN_FREE_BYTES"] = str(10 * MiB)
    farm.start()

    def ready() -> tuple[int, str]:
        response = httpx.get(f"http://127.0.0.1:{farm.port}/readyz")
        return response.status_code, response.json()["checks"]["disk"]

    assert ready() == (200, "ok")
    filler = fill(work, leave=4 * MiB)
    status, disk = ready()
    assert status == 503 and disk.startswith(f"work folder {work}: 4 MiB free, below"), disk
    filler.unlink()
    assert ready() == (200, "ok")


def test_an_encode_out_of_space_waits_and_resumes_uncounted(
    farm: Farm, small_disk: Mount, small_clip: Path
) -> None:
    work = small_disk(farm.data_dir / "work", 16 * MiB)
    filler = fill(work, leave=64 * 1024)
    farm.env["VIDFARM_MIN_FREE_BYTES"] = "0"
    farm.start()
    job_id = farm.submit(small_clip)
    waiting = farm.wait_for(job_id, lambda j: j["error_class"] == "OutOfSpace")
    assert waiting["status"] in ("pending", "queued", "running"), waiting
    shown = farm.cli("job", job_id).stdout
    assert "No space left on device" in shown and "Traceback" not in shown, shown
    filler.unlink()  # the operator frees space; nobody restarts anything
    job = farm.wait_for(job_id, lambda j: j["status"] == "completed")
    assert job["attempts"] == 1  # the attempts that hit the full disk were not counted

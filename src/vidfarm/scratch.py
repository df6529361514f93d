"""Scratch space that cleans up after the dead: attempt folders and uploads hold a lock.

A process killed with kill -9 runs no `finally`: its attempt folder (`work/<job>-a<token>`,
`.out.partial-*` inside) or its half upload (`uploads/upload-*`) would stay for ever. So each
owner holds an flock for as long as it works (on the folder's `.owner` file, or on the upload
file itself); the kernel drops it when the process dies, however it dies. `sweep` removes
whatever no live process holds, at start and periodically, and logs what it freed. A lock,
not SQL, says who is alive: remote workers have no database, and a lease outlives its process.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

OWNER = ".owner"
#: The attempt folders of `work/` (`<job>-a<token>`): the sweep touches nothing else there.
ATTEMPT_FOLDERS = "*-a[0-9]*"
#: A folder without `.owner` this young may be one being created right now.
GRACE_SECONDS = 60.0


@contextlib.contextmanager
def owned_folder(folder: Path) -> Iterator[Path]:
    """Create and hold `folder` for this process; it is removed when the block ends."""
    fd = _hold(folder)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def _hold(folder: Path) -> int:
    while True:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / OWNER, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _still_there(fd, folder / OWNER):
            return fd
        os.close(fd)  # a sweep removed it between open and lock: start again


def locked_temp_file(folder: Path, prefix: str) -> tuple[Path, int, int]:
    """mkstemp in `folder`, locked: (path, descriptor to write, descriptor holding the lock).

    The lock lives as long as either descriptor stays open (they share one open file).
    """
    folder.mkdir(parents=True, exist_ok=True)
    while True:
        fd, name = tempfile.mkstemp(prefix=prefix, dir=folder)
        fcntl.flock(fd, fcntl.LOCK_EX)
        if _still_there(fd, Path(name)):
            return Path(name), fd, os.dup(fd)
        os.close(fd)


def _still_there(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


@dataclass(frozen=True)
class Swept:
    paths: list[Path]
    freed_bytes: int


def sweep(root: Path, pattern: str = "*", *, grace: float = GRACE_SECONDS) -> Swept:
    """Remove the entries of `root` matching `pattern` that no live process holds."""
    paths: list[Path] = []
    freed = 0
    if not root.is_dir():
        return Swept(paths, freed)
    for entry in sorted(root.glob(pattern)):
        size = _remove_if_abandoned(entry, grace)
        if size is not None:
            paths.append(entry)
            freed += size
            log.warning("swept %s: %d bytes freed (its owner is gone)", entry, size)
    return Swept(paths, freed)


def _remove_if_abandoned(entry: Path, grace: float) -> int | None:
    """Remove `entry` if nobody holds it; returns the bytes freed, or None when kept."""
    is_dir = entry.is_dir() and not entry.is_symlink()
    lock_path = entry / OWNER if is_dir else entry
    try:
        fd = os.open(lock_path, os.O_RDONLY)
    except FileNotFoundError:
        if not is_dir or _age(entry) < grace:
            return None  # gone already, or a folder being created
        size = _size(entry)
        shutil.rmtree(entry, ignore_errors=True)
        return size
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return None  # a live process holds it
        size = _size(entry)
        if is_dir:
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        return size
    finally:
        os.close(fd)


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _size(path: Path) -> int:
    if not path.is_dir():
        with contextlib.suppress(OSError):
            return path.stat().st_size
        return 0
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_size
    return total


def free_bytes(folder: Path) -> int:
    """Free space for an unprivileged writer where `folder` is (or would be) created."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            stats = os.statvfs(candidate)
            return stats.f_bavail * stats.f_frsize
    return 0


def short_of_space(data_dir: Path, min_free_bytes: int) -> str | None:
    """Which folder (data, work) has less than `min_free_bytes` free, said in one line; None."""
    for name, folder in (("data", data_dir), ("work", data_dir / "work")):
        free = free_bytes(folder)
        if free < min_free_bytes:
            return (
                f"{name} folder {folder}: {free // 2**20} MiB free, below "
                f"VIDFARM_MIN_FREE_BYTES ({min_free_bytes // 2**20} MiB)"
            )
    return None

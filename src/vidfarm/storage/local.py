"""A folder on a local or shared (NFS) file system, published with one rename."""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import BinaryIO

from vidfarm.errors import NotFound, StorageUnavailable, TooLarge
from vidfarm.storage.base import CHUNK, check_key


class LocalStorage:
    """A folder on a local or shared (NFS) file system."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def local_path(self, key: str) -> Path | None:
        return self.path(key)

    def put_stream(self, key: str, stream: BinaryIO, *, max_bytes: int | None = None) -> int:
        target = self.path(key)
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
        size = 0
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with temporary.open("wb") as handle:
                while block := stream.read(CHUNK):
                    size += len(block)
                    if max_bytes is not None and size > max_bytes:
                        raise TooLarge(f"{key.rsplit('/', 1)[-1]} is larger than {max_bytes} bytes")
                    handle.write(block)
            os.replace(temporary, target)
        except OSError as error:
            raise StorageUnavailable(f"cannot write {key}: {error.strerror}") from None
        finally:
            temporary.unlink(missing_ok=True)
        return size

    def put_file(self, source: Path, key: str, *, move: bool = False) -> None:
        if move:
            target = self.path(key)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(source, target)  # same file system: no copy of a 1 GiB upload
                return
            except OSError:
                pass  # another file system: copy, then drop the source
        with source.open("rb") as handle:
            self.put_stream(key, handle)
        if move:
            source.unlink(missing_ok=True)

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except FileNotFoundError:
            raise NotFound(f"no stored object {key}") from None

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            raise NotFound(f"no stored object {key}") from None

    def url_for(
        self, key: str, *, filename: str | None = None, attachment: bool = False
    ) -> str | None:
        return None  # the API streams local files itself (with HTTP Range support)

    def prepare(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageUnavailable(f"media folder {self.root}: {error.strerror}") from None

    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f".ready-{uuid.uuid4().hex[:8]}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise StorageUnavailable(f"media folder {self.root}: {error.strerror}") from None

    def download(self, key: str, target: Path) -> None:
        try:
            shutil.copyfile(self.path(key), target)
        except FileNotFoundError:
            raise NotFound(f"no stored object {key}") from None
        except OSError as error:
            raise StorageUnavailable(f"cannot read {key}: {error.strerror}") from None

    def publish_dir(self, folder: Path, prefix: str) -> list[str]:
        """Move (or copy) `folder` to `prefix` in one rename; the folder is consumed."""
        final = self.path(prefix)
        temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}")
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(folder, temporary)  # same file system: a move costs nothing
            except OSError:
                shutil.copytree(folder, temporary)
            os.rename(temporary, final)  # fails if the prefix was already published
        except OSError as error:
            shutil.rmtree(temporary, ignore_errors=True)
            raise StorageUnavailable(f"cannot publish {prefix}: {error.strerror}") from None
        return sorted(
            f"{check_key(prefix)}/{p.relative_to(final).as_posix()}"
            for p in final.rglob("*")
            if p.is_file()
        )

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete_prefix(self, prefix: str) -> None:
        target = self.path(prefix)
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)

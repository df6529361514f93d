"""Local storage: keys cannot escape the folder, publication is all or nothing."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from vidfarm.errors import InvalidParameters, StorageUnavailable
from vidfarm.storage import LocalStorage
from vidfarm.storage.base import check_key


@pytest.mark.parametrize(
    "key",
    [
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a/./b",
        "a//b",
        "a\\b",
        ".hidden",
        "a/.tmp/b",
        "a\x00b",
    ],
)
def test_keys_that_could_escape_are_refused(key: str) -> None:
    with pytest.raises(InvalidParameters):
        check_key(key)


def test_put_and_publish(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    assert store.put_stream("sources/v1/a.mp4", io.BytesIO(b"x" * 10)) == 10
    assert (tmp_path / "store/sources/v1/a.mp4").read_bytes() == b"x" * 10
    folder = tmp_path / "out"
    (folder / "sub").mkdir(parents=True)
    (folder / "master.m3u8").write_text("#EXTM3U\n")
    (folder / "sub" / "seg.ts").write_bytes(b"ts")
    keys = store.publish_dir(folder, "videos/v1/j1/a1")
    assert keys == ["videos/v1/j1/a1/master.m3u8", "videos/v1/j1/a1/sub/seg.ts"]
    # The same attempt cannot be published twice over itself.
    (tmp_path / "again").mkdir()
    with pytest.raises(StorageUnavailable):
        store.publish_dir(tmp_path / "again", "videos/v1/j1/a1")
    assert store.exists("videos/v1/j1/a1/master.m3u8")
    assert not [p for p in (tmp_path / "store/videos/v1/j1").iterdir() if p.name != "a1"]
    store.delete_prefix("videos/v1/j1/a1")
    assert not store.exists("videos/v1/j1/a1/master.m3u8")


def test_put_file_can_move_instead_of_copy(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    source = tmp_path / "upload.tmp"
    source.write_bytes(b"v" * 1000)
    inode = source.stat().st_ino
    store.put_file(source, "sources/v1/v1.mp4", move=True)
    stored = tmp_path / "store/sources/v1/v1.mp4"
    assert not source.exists() and stored.read_bytes() == b"v" * 1000
    assert stored.stat().st_ino == inode  # renamed, not copied
    kept = tmp_path / "mine.mp4"
    kept.write_bytes(b"k")
    store.put_file(kept, "sources/v2/v2.mp4")
    assert kept.exists()  # without move the caller's file stays

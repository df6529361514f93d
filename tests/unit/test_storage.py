"""Storage backends behave alike: a local folder and S3 (moto's HTTP server), same tests.

What matters most: nothing half-stored (limit hit, stream broken, publication failed), keys that
cannot escape, errors that carry their class, and memory that does not grow with the input.
"""

from __future__ import annotations

import errno
import gc
import io
import os
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, cast
from urllib.parse import unquote

import httpx
import pytest

import vidfarm.storage.s3 as storage_s3
from fixtures_s3 import S3_SECRET_KEY, make_s3_storage
from services import free_port
from vidfarm.errors import InvalidParameters, NotFound, StorageUnavailable, TooLarge
from vidfarm.storage import LocalStorage, Storage, make_storage
from vidfarm.storage.base import content_disposition, content_type_for
from vidfarm.storage.s3 import S3Storage

MiB = 1024 * 1024


class Boom(Exception):
    """What a client's upload raises when its connection drops mid-way."""


class GeneratedStream(io.RawIOBase):
    """`size` bytes of zeros made on demand, then optionally an error: never held at once."""

    def __init__(self, size: int, *, fail: bool = False) -> None:
        self.left = size
        self.fail = fail

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self.left == 0:
            if self.fail:
                raise Boom("connection reset by the client")
            return b""
        count = self.left if size < 0 else min(size, self.left)
        self.left -= count
        return bytes(count)


def stream(size: int, *, fail: bool = False) -> BinaryIO:
    return cast(BinaryIO, GeneratedStream(size, fail=fail))


def stored(storage: Storage) -> list[str]:
    """Everything the backend holds: files (temporary ones too), objects, pending uploads."""
    if isinstance(storage, LocalStorage):
        if not storage.root.exists():
            return []
        return sorted(
            p.relative_to(storage.root).as_posix() for p in storage.root.rglob("*") if p.is_file()
        )
    assert isinstance(storage, S3Storage)
    client, bucket = storage.client, storage.bucket
    keys = [
        item["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket)
        for item in page.get("Contents", [])
    ]
    uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return sorted(keys + [f"(multipart upload) {upload['Key']}" for upload in uploads])


def down_s3() -> S3Storage:
    """An S3Storage pointed at a loopback port nobody listens on."""
    port = free_port()
    store = make_s3_storage(f"http://127.0.0.1:{port}", "vidfarm", max_attempts=1)
    assert isinstance(store, S3Storage)
    return store


# --- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1000, 9 * MiB + 123], ids=["empty", "small", "multipart"])
def test_put_open_size_download_round_trip(storage: Storage, tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    assert storage.put_stream("sources/v1/input.mp4", io.BytesIO(data)) == size
    assert storage.exists("sources/v1/input.mp4")
    assert storage.size("sources/v1/input.mp4") == size
    with storage.open("sources/v1/input.mp4") as reader:
        assert reader.read(10) == data[:10]  # streamed: partial reads work
        assert reader.read() == data[10:]
    target = tmp_path / "copy.mp4"
    storage.download("sources/v1/input.mp4", target)
    assert target.read_bytes() == data
    source = tmp_path / "source.vtt"
    source.write_bytes(b"WEBVTT\n")
    storage.put_file(source, "videos/v1/captions.vtt")
    with storage.open("videos/v1/captions.vtt") as reader:
        assert reader.read() == b"WEBVTT\n"


def test_overwrite_replaces_the_object(storage: Storage) -> None:
    storage.put_stream("a/b.json", io.BytesIO(b"{}"))
    storage.put_stream("a/b.json", io.BytesIO(b"[1]"))
    assert storage.size("a/b.json") == 3
    assert stored(storage) == ["a/b.json"]


def test_missing_objects_are_not_found(storage: Storage) -> None:
    assert not storage.exists("nope/x.mp4")
    with pytest.raises(NotFound):
        storage.open("nope/x.mp4")
    with pytest.raises(NotFound):
        storage.size("nope/x.mp4")


def test_s3_download_of_a_missing_object_is_not_found(s3_storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        s3_storage.download("nope/x.mp4", tmp_path / "x.mp4")
    assert not (tmp_path / "x.mp4").exists()


def test_s3_objects_carry_their_content_type(s3_storage: Storage, tmp_path: Path) -> None:
    assert isinstance(s3_storage, S3Storage)
    s3_storage.put_stream("v/master.m3u8", io.BytesIO(b"#EXTM3U\n"))
    s3_storage.put_stream("v/big.mp4", stream(9 * MiB))  # multipart path
    (tmp_path / "seg.ts").write_bytes(b"ts")
    s3_storage.put_file(tmp_path / "seg.ts", "v/seg.ts")
    head = s3_storage.client.head_object
    assert head(Bucket=s3_storage.bucket, Key="v/master.m3u8")["ContentType"] == (
        "application/vnd.apple.mpegurl"
    )
    assert head(Bucket=s3_storage.bucket, Key="v/big.mp4")["ContentType"] == "video/mp4"
    assert head(Bucket=s3_storage.bucket, Key="v/seg.ts")["ContentType"] == "video/mp2t"


# --- nothing half-stored ----------------------------------------------------------------------


def test_too_large_stores_nothing(storage: Storage) -> None:
    with pytest.raises(TooLarge):
        storage.put_stream("sources/v1/huge.mp4", stream(25 * MiB), max_bytes=10 * MiB)
    assert not storage.exists("sources/v1/huge.mp4")
    assert stored(storage) == []  # no object, no temporary file, no dangling multipart upload


def test_exactly_max_bytes_is_accepted(storage: Storage) -> None:
    assert storage.put_stream("a/b.mp4", stream(9 * MiB), max_bytes=9 * MiB) == 9 * MiB


@pytest.mark.parametrize("size", [3 * MiB, 12 * MiB], ids=["single-request", "multipart"])
def test_a_stream_failing_midway_stores_nothing(storage: Storage, size: int) -> None:
    with pytest.raises(Boom):
        storage.put_stream("sources/v1/cut.mp4", stream(size, fail=True))
    assert stored(storage) == []


def test_s3_unreachable_is_transient_and_keeps_the_secret() -> None:
    store = down_s3()
    for action in (
        lambda: store.check(),
        lambda: store.put_stream("a/b.mp4", io.BytesIO(b"x")),
        lambda: store.put_stream("a/b.mp4", stream(9 * MiB)),
        lambda: store.open("a/b.mp4"),
        lambda: store.size("a/b.mp4"),
        lambda: store.delete_prefix("a"),
    ):
        with pytest.raises(StorageUnavailable) as caught:
            action()
        assert not caught.value.permanent
        assert S3_SECRET_KEY not in str(caught.value)
    assert S3_SECRET_KEY not in repr(store)


# --- keys -------------------------------------------------------------------------------------

BAD_KEYS = ["", "/etc/passwd", "../x", "a/../../x", "a//b", "a\\b", ".hidden", "a/.tmp/b"]


@pytest.mark.parametrize("key", BAD_KEYS)
def test_traversal_keys_are_refused(storage: Storage, tmp_path: Path, key: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: storage.put_stream(key, io.BytesIO(b"x")),
        lambda: storage.open(key),
        lambda: storage.size(key),
        lambda: storage.exists(key),
        lambda: storage.download(key, tmp_path / "x"),
        lambda: storage.delete_prefix(key),
        lambda: storage.publish_dir(tmp_path, key),
    ]
    if isinstance(storage, S3Storage):  # LocalStorage.url_for never looks at the key
        calls.append(lambda: storage.url_for(key))
    for call in calls:
        with pytest.raises(InvalidParameters):
            call()
    assert stored(storage) == []


# --- publication ------------------------------------------------------------------------------


def make_outputs(folder: Path) -> None:
    (folder / "hls" / "720p").mkdir(parents=True)
    (folder / "manifest.json").write_text('{"outputs": []}')
    (folder / "master.m3u8").write_text("#EXTM3U\n")
    (folder / "hls" / "720p" / "index.m3u8").write_text("#EXTM3U\n")
    (folder / "hls" / "720p" / "seg0.ts").write_bytes(b"\x47" * 188)
    (folder / "thumbs.jpg").write_bytes(b"\xff\xd8")


PUBLISHED = [
    "videos/v1/j1/a1/hls/720p/index.m3u8",
    "videos/v1/j1/a1/hls/720p/seg0.ts",
    "videos/v1/j1/a1/manifest.json",
    "videos/v1/j1/a1/master.m3u8",
    "videos/v1/j1/a1/thumbs.jpg",
]


def test_publish_dir_lists_every_key_and_consumes_the_folder(
    storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "out"
    make_outputs(folder)
    order: list[str] = []
    if isinstance(storage, S3Storage):
        upload = storage.client.upload_file

        def recording(source: str, bucket: str, key: str, **kwargs: Any) -> None:
            order.append(key)
            upload(source, bucket, key, **kwargs)

        monkeypatch.setattr(storage.client, "upload_file", recording)
    assert storage.publish_dir(folder, "videos/v1/j1/a1") == PUBLISHED
    assert not folder.exists()
    assert stored(storage) == PUBLISHED
    with storage.open("videos/v1/j1/a1/hls/720p/seg0.ts") as reader:
        assert reader.read() == b"\x47" * 188
    if order:  # S3 cannot rename: the manifest, which marks a complete set, goes last
        assert order[-1] == "videos/v1/j1/a1/manifest.json"
        assert sorted(order) == PUBLISHED
    # The same attempt cannot be published twice over itself (a rollback would eat the first).
    again = tmp_path / "again"
    make_outputs(again)
    with pytest.raises(StorageUnavailable):
        storage.publish_dir(again, "videos/v1/j1/a1")
    assert stored(storage) == PUBLISHED


def test_a_failed_publication_leaves_nothing(
    storage: Storage, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "out"
    make_outputs(folder)
    calls = 0
    if isinstance(storage, S3Storage):
        from botocore.exceptions import EndpointConnectionError  # type: ignore[import-untyped]

        upload = storage.client.upload_file

        def flaky(source: str, bucket: str, key: str, **kwargs: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == 3:  # two files are out when the connection drops
                raise EndpointConnectionError(endpoint_url="http://s3.invalid")
            upload(source, bucket, key, **kwargs)

        monkeypatch.setattr(storage.client, "upload_file", flaky)
    else:
        rename = os.rename

        def failing_second_rename(source: Any, target: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == 2:  # the folder moved in, the final rename fails
                raise OSError(errno.EIO, "I/O error")
            rename(source, target)

        monkeypatch.setattr(os, "rename", failing_second_rename)
    with pytest.raises(StorageUnavailable):
        storage.publish_dir(folder, "videos/v1/j1/a1")
    monkeypatch.undo()
    assert stored(storage) == []
    assert not any(storage.exists(key) for key in PUBLISHED)


# --- deletion ---------------------------------------------------------------------------------


def test_delete_prefix_removes_a_tree_or_a_key(
    storage: Storage, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches and pages so that batching and pagination are exercised on 7 keys.
    monkeypatch.setattr(storage_s3, "DELETE_BATCH", 3)
    monkeypatch.setattr(storage_s3, "LIST_PAGE", 2)
    doomed = [f"videos/v1/j1/a1/{name}" for name in ("a.ts", "b.ts", "c/d.ts", "c/e.ts")]
    doomed += [f"videos/v1/j1/a1/f{index}.ts" for index in range(3)]
    kept = ["videos/v1/j1/a10/x.ts", "videos/v1/j1/a1.json", "videos/v2/y.ts"]
    for key in doomed + kept:
        storage.put_stream(key, io.BytesIO(b"x"))
    storage.delete_prefix("videos/v1/j1/a1")
    assert stored(storage) == sorted(kept)  # 'a10' and 'a1.json' only share a string prefix
    storage.delete_prefix("videos/v1/j1/a1.json")  # a single key
    storage.delete_prefix("videos/none")  # nothing there: no error
    assert stored(storage) == ["videos/v1/j1/a10/x.ts", "videos/v2/y.ts"]


# --- URLs -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("a/master.m3u8", "application/vnd.apple.mpegurl"),
        ("a/seg0.ts", "video/mp2t"),
        ("a/seg0.m4s", "video/iso.segment"),
        ("a/720p.MP4", "video/mp4"),
        ("a/audio.mp3", "audio/mpeg"),
        ("a/audio.m4a", "audio/mp4"),
        ("a/fr.vtt", "text/vtt"),
        ("a/thumb.jpg", "image/jpeg"),
        ("a/sprite.png", "image/png"),
        ("a/manifest.json", "application/json"),
        ("a/source", "application/octet-stream"),
        ("a.b/source", "application/octet-stream"),
    ],
)
def test_content_type_for(key: str, expected: str) -> None:
    assert content_type_for(key) == expected


def test_content_disposition_cannot_be_broken_out_of() -> None:
    assert content_disposition("a.mp4") == 'attachment; filename="a.mp4"'
    assert content_disposition("a.mp4", attachment=False) == 'inline; filename="a.mp4"'
    hostile = content_disposition('x"; filename="evil.exe\r\nSet-Cookie: a=b\\..\\/.mp4')
    assert hostile.count('"') == 2 and "\r" not in hostile and "\n" not in hostile
    assert "\\" not in hostile and "/" not in hostile
    accented = content_disposition("Cours été.mp4")
    assert accented.startswith("attachment; filename=\"Cours _t_.mp4\"; filename*=UTF-8''")
    assert unquote(accented.split("''", 1)[1]) == "Cours été.mp4"
    assert content_disposition('""') == 'attachment; filename="download"'


def test_local_storage_has_no_urls(tmp_path: Path) -> None:
    assert LocalStorage(tmp_path).url_for("a/b.mp4", attachment=True) is None


def test_s3_presigned_urls_serve_type_and_disposition(s3_storage: Storage) -> None:
    data = os.urandom(5000)
    s3_storage.put_stream("videos/v1/j1/a1/720p.mp4", io.BytesIO(data))
    url = s3_storage.url_for("videos/v1/j1/a1/720p.mp4")
    assert url is not None and "X-Amz-Expires=3600" in url and "X-Amz-Signature=" in url
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == data
    assert response.headers["content-type"] == "video/mp4"
    assert "content-disposition" not in response.headers

    url = s3_storage.url_for("videos/v1/j1/a1/720p.mp4", filename="Cours été.mp4", attachment=True)
    assert url is not None
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.headers["content-disposition"] == content_disposition("Cours été.mp4")

    # A missing key is refused: real S3 says 404 (or 403 without ListBucket); moto says 403
    # whenever response-* overrides are signed for a missing key.
    url = s3_storage.url_for("videos/v1/j1/a1/missing.m3u8")
    assert url is not None
    assert httpx.get(url).status_code in (403, 404)

    tampered = s3_storage.url_for("videos/v1/j1/a1/720p.mp4")
    assert tampered is not None
    assert httpx.get(tampered.replace("720p.mp4", "720p.mp3")).status_code == 403


# --- health -----------------------------------------------------------------------------------


def test_check_passes_on_a_usable_store(storage: Storage) -> None:
    storage.check()


def test_check_fails_when_s3_is_down_or_the_bucket_is_missing(s3_endpoint: str) -> None:
    with pytest.raises(StorageUnavailable, match="S3 cannot reach bucket"):
        down_s3().check()
    missing = make_s3_storage(s3_endpoint, "vidfarm-no-such-bucket")
    with pytest.raises(StorageUnavailable, match="does not exist"):
        missing.check()
    with pytest.raises(StorageUnavailable):  # a write does not create the bucket either
        missing.put_stream("a/b.mp4", io.BytesIO(b"x"))


def test_make_storage_follows_the_settings(tmp_path: Path, s3_endpoint: str) -> None:
    from vidfarm.config import Settings

    local = make_storage(Settings(data_dir=tmp_path))
    assert isinstance(local, LocalStorage) and local.root == (tmp_path / "media").resolve()
    s3 = make_storage(
        Settings(
            data_dir=tmp_path,
            storage="s3",
            s3_endpoint_url=s3_endpoint,
            s3_bucket="vidfarm-settings",
            s3_access_key_id="k",
            s3_secret_access_key="top-secret",
            s3_presign_seconds=120,
        )
    )
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.endpoint_url, s3.presign_seconds) == (
        "vidfarm-settings",
        s3_endpoint,
        120,
    )
    assert "top-secret" not in repr(s3)


# --- memory -----------------------------------------------------------------------------------


def peak_memory_growth(action: Callable[[], object]) -> tuple[int, str]:
    """Bytes the process's peak grows by during `action`: RSS where Linux lets us reset its
    high-water mark (/proc/self/clear_refs), else the peak of Python's own allocations."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # VmHWM := current RSS
    except OSError:
        tracemalloc.start()
        try:
            action()
            return tracemalloc.get_traced_memory()[1], "tracemalloc peak"
        finally:
            tracemalloc.stop()
    baseline = _status_kib("VmRSS")
    action()
    return (_status_kib("VmHWM") - baseline) * 1024, "peak RSS"


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/self/status")


def test_the_memory_meter_sees_an_allocation() -> None:
    """Guards the test below against a meter that always reads zero."""
    growth, _ = peak_memory_growth(lambda: b"\x01" * (64 * MiB))
    assert growth > 60 * MiB


def test_put_stream_runs_in_constant_memory(storage: Storage) -> None:
    size = 200 * MiB
    growth, measure = peak_memory_growth(
        lambda: storage.put_stream("sources/v1/big.mp4", stream(size), max_bytes=size)
    )
    name = type(storage).__name__
    print(f"\n{name}: a 200 MiB put_stream grew the {measure} by {growth / MiB:.1f} MiB")
    assert storage.size("sources/v1/big.mp4") == size
    assert growth < 50 * 1000 * 1000

"""The storage interface and what every backend shares (keys, content types).

Where sources and published outputs live. Keys are relative, '/'-separated paths.

Publication is atomic for readers. LocalStorage copies a folder of outputs under a hidden
temporary name and renames it into place; S3Storage (s3.py) cannot rename, so it relies on
outputs being referenced from SQL only once the job's completion is accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import quote

from vidfarm.errors import InvalidParameters

CHUNK = 1 << 20

# What players and browsers need to hear for each output the farm writes; one table so that the
# S3 uploads, presigned URLs and the API's own streaming of local files all agree.
CONTENT_TYPES = {
    "m3u8": "application/vnd.apple.mpegurl",
    "ts": "video/mp2t",
    "m4s": "video/iso.segment",
    "mp4": "video/mp4",
    "mp3": "audio/mpeg",
    "m4a": "audio/mp4",
    "vtt": "text/vtt",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "png": "image/png",
    "json": "application/json",
}
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def content_type_for(key: str) -> str:
    """The media type of a key, from its extension (case-insensitive); octet-stream if unknown."""
    name = key.rsplit("/", 1)[-1]
    if "." not in name:
        return DEFAULT_CONTENT_TYPE
    return CONTENT_TYPES.get(name.rsplit(".", 1)[-1].lower(), DEFAULT_CONTENT_TYPE)


def content_disposition(filename: str, *, attachment: bool = True) -> str:
    """A Content-Disposition value that cannot be broken out of by a hostile filename.

    Quotes, backslashes, slashes and control characters are dropped from the quoted ASCII
    fallback; a non-ASCII name also goes in RFC 6266's percent-encoded `filename*`.
    """
    kind = "attachment" if attachment else "inline"
    cleaned = (
        "".join(
            "_" if char in "/\\" else char
            for char in filename
            if char.isprintable() and char != '"'
        ).strip()
        or "download"
    )
    fallback = "".join(char if char.isascii() else "_" for char in cleaned)
    value = f'{kind}; filename="{fallback}"'
    if fallback != cleaned:
        value += f"; filename*=UTF-8''{quote(cleaned, safe='')}"
    return value


def check_key(key: str) -> str:
    """Refuse keys that could escape the store: absolute, '..', backslashes, empty parts."""
    if not key or "\\" in key or "\x00" in key or key.startswith("/"):
        raise InvalidParameters(f"invalid storage key {key!r}")
    parts = key.split("/")
    if any(part == "" or part.startswith(".") for part in parts):  # also '.', '..', 'a//b'
        raise InvalidParameters(f"invalid storage key {key!r}")
    return key


class Storage(Protocol):
    """What the farm needs from a media store. Keys pass `check_key`."""

    def local_path(self, key: str) -> Path | None:
        """A path to read the object without copying, when the store is a local folder."""
        ...

    def put_stream(self, key: str, stream: BinaryIO, *, max_bytes: int | None = None) -> int:
        """Store a stream in constant memory; TooLarge (and nothing stored) past max_bytes."""
        ...

    def put_file(self, source: Path, key: str, *, move: bool = False) -> None:
        """Store a local file; with `move`, the file is consumed (renamed when it can be)."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A streaming reader; NotFound if the key does not exist."""
        ...

    def download(self, key: str, target: Path) -> None: ...

    def size(self, key: str) -> int:
        """Size in bytes; NotFound if the key does not exist."""
        ...

    def url_for(
        self, key: str, *, filename: str | None = None, attachment: bool = False
    ) -> str | None:
        """A URL clients can fetch directly (presigned), or None to stream through the API."""
        ...

    def publish_dir(self, folder: Path, prefix: str) -> list[str]:
        """Store every file of `folder` under `prefix`; all or nothing; consumes `folder`."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete_prefix(self, prefix: str) -> None:
        """Remove a key, or every key under `prefix/`."""
        ...

    def check(self) -> None:
        """Raise StorageUnavailable unless the store can be used right now (for /readyz)."""
        ...

    def prepare(self) -> None:
        """Create what the store needs to exist (its folder, its bucket) at start."""
        ...

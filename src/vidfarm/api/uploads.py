"""Receiving an upload: the multipart body streamed straight to one temporary file.

Parsing the stream ourselves (instead of letting the framework spool the whole form first)
means the size limit is enforced as bytes arrive, memory stays constant, and a rejected or
interrupted upload leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from vidfarm.errors import InvalidParameters, TooLarge
from vidfarm.scratch import locked_temp_file

#: Room for the multipart envelope around the file itself.
ENVELOPE_BYTES = 64 * 1024


class NotMultipart(InvalidParameters):
    """The request body is not multipart/form-data."""


class UploadInterrupted(InvalidParameters):
    """The client went away before the upload finished."""


@dataclass(frozen=True)
class ReceivedUpload:
    path: Path
    filename: str
    size: int
    lock: int = -1  # holds the file's lock until `discard`: the leftover sweep keeps off it


class _FilePart:
    """Collects the one form field we want into a file, counting its bytes."""

    def __init__(self, field: str, target: Path, max_bytes: int, handle: BinaryIO) -> None:
        self.field = field
        self.target = target
        self.max_bytes = max_bytes
        # The descriptor mkstemp opened: reopening with "wb" would truncate, and closing a
        # truncated file makes the file system flush it all at once (on the event loop).
        self.handle = handle
        self.size = 0
        self.filename: str | None = None
        self._headers: dict[bytes, bytes] = {}
        self._header_field = b""
        self._header_value = b""
        self._writing = False
        self.ended = False  # the closing boundary arrived: the body is whole

    def on_part_begin(self) -> None:
        self._headers, self._writing = {}, False

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.lower()] = self._header_value
        self._header_field, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name == self.field and self.filename is None:
            raw = options.get(b"filename", b"upload").decode("utf-8", "replace")
            self.filename, self._writing = raw or "upload", True

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if not self._writing:
            return
        self.size += end - start
        if self.size > self.max_bytes:
            raise TooLarge(f"the upload is larger than the limit of {self.max_bytes} bytes")
        self.handle.write(data[start:end])

    def on_part_end(self) -> None:
        self._writing = False

    def on_end(self) -> None:
        self.ended = True


async def receive_upload(
    request: Request, *, field: str, folder: Path, max_bytes: int
) -> ReceivedUpload:
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    if content_type != b"multipart/form-data" or b"boundary" not in options:
        raise NotMultipart(f"send the video as multipart/form-data with a '{field}' field")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_bytes + ENVELOPE_BYTES:
        raise TooLarge(f"the upload is larger than the limit of {max_bytes} bytes")
    target, descriptor, lock = locked_temp_file(folder, "upload-")  # kill -9: left to the sweep
    part = _FilePart(field, target, max_bytes, os.fdopen(descriptor, "wb"))
    callbacks = {
        name: getattr(part, name)
        for name in (
            "on_part_begin",
            "on_header_field",
            "on_header_value",
            "on_header_end",
            "on_headers_finished",
            "on_part_data",
            "on_part_end",
            "on_end",
        )
    }
    parser = MultipartParser(options[b"boundary"], callbacks)  # type: ignore[arg-type]
    try:
        try:
            with part.handle:
                async for chunk in request.stream():
                    parser.write(chunk)
                parser.finalize()
        except ClientDisconnect:
            raise UploadInterrupted("the upload was interrupted") from None
        except MultipartParseError as error:
            raise InvalidParameters(f"malformed multipart body ({error})") from None
        if part.filename is None:
            raise InvalidParameters(f"the form has no '{field}' file field")
        if not part.ended:  # a body cut short: its file part is a prefix of the file sent
            raise UploadInterrupted("the multipart body ends before its closing boundary")
    except BaseException:
        target.unlink(missing_ok=True)
        os.close(lock)
        raise
    return ReceivedUpload(path=target, filename=part.filename, size=part.size, lock=lock)


def discard(upload: ReceivedUpload) -> None:
    with contextlib.suppress(OSError):
        upload.path.unlink()
    if upload.lock >= 0:
        with contextlib.suppress(OSError):
            os.close(upload.lock)

"""Download a task's source: streamed, size-limited, SSRF-guarded at every redirect hop.

The file appears complete at its target or not at all: bytes go to a `.part` sibling that
is renamed at the end and removed on any failure.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

import httpx

from vidfarm.errors import (
    InvalidParameters,
    JobCancelled,
    PermanentError,
    StorageUnavailable,
    TooLarge,
    TransientError,
)
from vidfarm.urlguard import check_url, guarded_client, is_forbidden

MAX_REDIRECTS = 5
CHUNK = 1 << 20
_DISPOSITION_NAME = re.compile(r"""filename\*?=(?:UTF-8'')?["']?([^"';]+)""", re.IGNORECASE)


class SourceUnavailable(TransientError):
    """The source server could not be reached or answered 5xx: another try may work."""


class SourceRefused(PermanentError):
    """The source server refused the download (4xx, a redirect loop): retrying will not help."""


def download(
    url: str,
    target: Path,
    *,
    max_bytes: int,
    allow_private: bool,
    timeout: float = 60.0,
    should_stop: Callable[[], bool] | None = None,
) -> str:
    """Download `url` to `target`; returns the source's file name (for its extension)."""
    partial = target.with_name(f"{target.name}.part")
    target.parent.mkdir(parents=True, exist_ok=True)
    limits = httpx.Timeout(timeout, connect=min(timeout, 30.0))
    try:
        with guarded_client(allow_private=allow_private, timeout=limits) as client:
            current = url
            for _ in range(MAX_REDIRECTS + 1):
                check_url(current, allow_private=allow_private, name="source_url")
                with client.stream("GET", current) as response:
                    if response.is_redirect and "location" in response.headers:
                        current = str(response.url.join(response.headers["location"]))
                        continue
                    _check_status(response)
                    _save(response, partial, max_bytes, should_stop)
                    os.replace(partial, target)
                    return _filename(response, current)
            raise SourceRefused(f"source_url: more than {MAX_REDIRECTS} redirects")
    except httpx.TransportError as error:
        if is_forbidden(error):
            raise InvalidParameters(f"source_url: {error}") from None
        reason = str(error) or type(error).__name__
        raise SourceUnavailable(f"source_url: download failed: {reason}") from None
    except OSError as error:
        raise StorageUnavailable(f"cannot write the source: {error.strerror}") from None
    finally:
        partial.unlink(missing_ok=True)


def _check_status(response: httpx.Response) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    message = f"source_url answered {status} {response.reason_phrase}".rstrip()
    if status >= 500 or status in (408, 429):
        raise SourceUnavailable(message)
    raise SourceRefused(message)


def _save(
    response: httpx.Response,
    partial: Path,
    max_bytes: int,
    should_stop: Callable[[], bool] | None,
) -> None:
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise TooLarge(f"source_url: {declared} bytes, more than the limit of {max_bytes}")
    size = 0
    with partial.open("wb") as handle:
        for block in response.iter_bytes(CHUNK):
            size += len(block)
            if size > max_bytes:
                raise TooLarge(f"source_url: more than the limit of {max_bytes} bytes")
            if should_stop is not None and should_stop():
                raise JobCancelled("stopped while downloading the source")
            handle.write(block)
    if size == 0:
        raise SourceRefused("source_url: the server sent an empty file")


def _filename(response: httpx.Response, url: str) -> str:
    match = _DISPOSITION_NAME.search(response.headers.get("content-disposition", ""))
    if match:
        return unquote(match.group(1).strip())
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    return name or "source"

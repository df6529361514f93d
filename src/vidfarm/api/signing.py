"""Signed media URLs: the signature lives in the path, so relative playlist URIs inherit it.

A signed URL reads ``/media/s/<expires>/<signature>/<video>/<file path>``. The signature is
HMAC-SHA256 (base64url, unpadded) over ``<expires><prefix>`` where ``<prefix>`` is the signed
path prefix ``/<video>/``: one signature covers every file of the video (the master playlist,
its variants and segments in the same folder, the subtitles of other jobs reached by
``../<job>/``), and nothing else. No token travels in a query string, so none lands in a log.

The message is what nginx's ``secure_link_md5 "$expires$prefix $secret"`` hashes, so a later
``md5`` scheme that nginx can check without Python needs a new signature function only.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from vidfarm.errors import InvalidParameters

PREFIX = "/media/s"
KEY_FILE = "media-signing-key"
_EXPIRES = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_VIDEO = re.compile(r"^[0-9a-f]{32}$")


class BadSignature(Exception):
    """An expired, altered or malformed signed URL: the message is one line, no secret."""


@dataclass(frozen=True)
class Signed:
    """A signed prefix: append a file path to `base` to get a URL."""

    base: str  # /media/s/<expires>/<signature>/<video>
    expires: int

    def url(self, path: str) -> str:
        return f"{self.base}/{path}"


class MediaSigner:
    """Signs and checks the `/<video>/` prefix of media URLs with one secret key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise InvalidParameters("the media signing key needs at least 32 characters")
        self._key = key

    def _signature(self, expires: int, video_id: str) -> str:
        message = f"{expires}/{video_id}/".encode("ascii")
        digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def sign(self, video_id: str, lifetime: float, *, now: float | None = None) -> Signed:
        if not _VIDEO.match(video_id):
            raise InvalidParameters(f"invalid video id {video_id!r}")
        expires = int((time.time() if now is None else now) + lifetime)
        signature = self._signature(expires, video_id)
        return Signed(base=f"{PREFIX}/{expires}/{signature}/{video_id}", expires=expires)

    def verify(
        self, expires: str, signature: str, video_id: str, *, now: float | None = None
    ) -> None:
        """Raise BadSignature unless the URL was signed by us for this video and is unexpired."""
        if not (_EXPIRES.match(expires) and _SIGNATURE.match(signature) and _VIDEO.match(video_id)):
            raise BadSignature("malformed signed media URL")
        expected = self._signature(int(expires), video_id)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            raise BadSignature("invalid media URL signature")
        if int(expires) < (time.time() if now is None else now):
            raise BadSignature("this signed media URL has expired")


def load_key(configured: str, data_dir: Path) -> bytes:
    """The setting, else a random key kept in <data_dir>/media-signing-key (0600).

    Generated once and shared by every API process on the same data folder; processes on
    separate machines need VIDFARM_MEDIA_SIGNING_KEY set to the same value.
    """
    if configured:
        return configured.encode()
    path = data_dir / KEY_FILE
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it meanwhile
            pass
        else:
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32) + "\n")
    value = path.read_text().strip()
    if len(value) < 32:
        raise InvalidParameters(f"{path} holds no usable key (expected 64 hex characters)")
    return value.encode()

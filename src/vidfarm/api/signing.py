"""Signed media URLs: the signature lives in the path, so relative playlist URIs inherit it.

A signed URL reads ``/media/s/<expires>/<signature>/<video>/<file path>``. The signature is
HMAC-SHA256 (base64url, unpadded) over ``<expires><prefix>`` where ``<prefix>`` is the signed
path prefix ``/<video>/``: one signature covers every file of the video (the master playlist,
its variants and segments in the same folder, the subtitles of other jobs reached by
``../<job>/``), and nothing else. No token travels in a query string, so none lands in a log.

Two schemes share that message. ``hmac`` (the default): HMAC-SHA256, checked by vidfarm only.
``nginx`` (VIDFARM_MEDIA_URL_SCHEME): ``/media/n/<expires>/<md5>/<video>/...`` where the
signature is nginx's ``secure_link_md5 "$expires/$video/ $secret"`` (MD5, base64url,
unpadded), so nginx or a CDN serves the files without calling vidfarm (`vidfarm deploy nginx`);
vidfarm still answers those URLs itself when nothing sits in front of it. MD5 is nginx's
choice, not ours: the secret keeps it unforgeable in practice, the expiry bounds a leak.
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
NGINX_PREFIX = "/media/n"
KEY_FILE = "media-signing-key"
_EXPIRES = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_MD5_SIGNATURE = re.compile(r"^[A-Za-z0-9_-]{22}$")
#: What a secure_link secret may hold to sit in nginx's configuration verbatim.
SECRET_CHARACTERS = re.compile(r"^[A-Za-z0-9_.~+/=:@%-]+$")
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
    """Signs and checks the `/<video>/` prefix of media URLs with one secret key.

    `scheme` is the one new URLs get; both kinds are checked, whatever it is.
    """

    def __init__(self, key: bytes, scheme: str = "hmac") -> None:
        if len(key) < 32:
            raise InvalidParameters("the media signing key needs at least 32 characters")
        if scheme not in ("hmac", "nginx"):
            raise InvalidParameters(f"unknown media URL scheme {scheme!r}")
        self._key = key
        self.scheme = scheme

    def _signature(self, expires: int, video_id: str, scheme: str = "hmac") -> str:
        message = f"{expires}/{video_id}/".encode("ascii")
        if scheme == "nginx":  # secure_link_md5 "$expires/$video/ $secret"
            digest = hashlib.md5(message + b" " + self._key, usedforsecurity=False).digest()
        else:
            digest = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def sign(self, video_id: str, lifetime: float, *, now: float | None = None) -> Signed:
        if not _VIDEO.match(video_id):
            raise InvalidParameters(f"invalid video id {video_id!r}")
        expires = int((time.time() if now is None else now) + lifetime)
        signature = self._signature(expires, video_id, self.scheme)
        prefix = NGINX_PREFIX if self.scheme == "nginx" else PREFIX
        return Signed(base=f"{prefix}/{expires}/{signature}/{video_id}", expires=expires)

    def verify(
        self,
        expires: str,
        signature: str,
        video_id: str,
        *,
        now: float | None = None,
        scheme: str = "hmac",
    ) -> None:
        """Raise BadSignature unless the URL was signed by us for this video and is unexpired."""
        shape = _MD5_SIGNATURE if scheme == "nginx" else _SIGNATURE
        if not (_EXPIRES.match(expires) and shape.match(signature) and _VIDEO.match(video_id)):
            raise BadSignature("malformed signed media URL")
        expected = self._signature(int(expires), video_id, scheme)
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

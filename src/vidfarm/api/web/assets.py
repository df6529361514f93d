"""The dashboard's one third-party asset, hls.js, fetched at build time and never committed.

`python -m vidfarm.api.web.assets` (run by `make run` and `make test`) downloads the pinned
hls.js release tarball from the npm registry, checks it against the pinned sha512 `integrity`
of the registry (what `npm view hls.js@VERSION dist.integrity` prints), and keeps only
`dist/hls.min.js` and its licence in `vendor/` beside this file (gitignored). It does nothing
when the files are already there and match their pinned SHA-256. Without them the dashboard
still plays the MP4 rendition and says HLS is unavailable.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import httpx

HLS_VERSION = "1.7.4"
TARBALL_URL = f"https://registry.npmjs.org/hls.js/-/hls.js-{HLS_VERSION}.tgz"
#: `npm view hls.js@1.7.4 dist.integrity`
TARBALL_INTEGRITY = (
    "sha512-3GlxGdPvT2YHvQYOt+yOzT/DEior/qJVNIylHA77kgeo"
    "BTdQQqi70GwefNEUmHQeNGyjC8U62+bruqW/Tpm+tg=="
)
#: Far above the real size (about 9 MB): a bigger answer is not the pinned tarball anyway.
MAX_TARBALL_BYTES = 64 * 1024 * 1024
VENDOR_DIR = Path(__file__).resolve().parent / "vendor"


@dataclass(frozen=True, slots=True)
class Asset:
    member: str  # path inside the tarball
    name: str  # file name in VENDOR_DIR
    sha256: str  # of the extracted file: lets a later run verify without downloading


ASSETS = (
    Asset(
        "package/dist/hls.min.js",
        "hls.min.js",
        "cfc70cc9e9fc63d071919e087670abc760c8fd1bc889b88588026e4d22193bbe",
    ),
    Asset(
        "package/LICENSE",
        "hls.js.LICENSE",
        "ca8773cf798c7ed997d4dd7c8e23c348699f8d5b7462636694cc14de6cda12db",
    ),
)
HLS_JS = ASSETS[0].name


class AssetError(Exception):
    """The download or a check failed; the message says which."""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def present(folder: Path = VENDOR_DIR) -> bool:
    """Whether every asset is in `folder` with its pinned content."""
    return all((folder / a.name).is_file() and _sha256(folder / a.name) == a.sha256 for a in ASSETS)


def check_integrity(data: bytes, integrity: str = TARBALL_INTEGRITY) -> None:
    """Subresource-integrity check (`sha512-<base64>`), as npm does."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise AssetError(f"unsupported integrity algorithm {algorithm!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode()
    if actual != expected:
        raise AssetError(f"{TARBALL_URL}: integrity mismatch (got sha512-{actual})")


def download(url: str = TARBALL_URL, *, timeout: float = 60.0) -> bytes:
    """The tarball's bytes, refusing anything larger than MAX_TARBALL_BYTES."""
    buffer = io.BytesIO()
    try:
        with httpx.stream("GET", url, timeout=timeout, follow_redirects=True) as response:
            if response.status_code != 200:
                raise AssetError(f"{url}: HTTP {response.status_code}")
            for chunk in response.iter_bytes():
                buffer.write(chunk)
                if buffer.tell() > MAX_TARBALL_BYTES:
                    raise AssetError(f"{url}: larger than {MAX_TARBALL_BYTES} bytes")
    except httpx.HTTPError as error:
        raise AssetError(f"{url}: {error}") from None
    return buffer.getvalue()


def extract(data: bytes, folder: Path) -> None:
    """Write only the pinned members, each checked, each replaced atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        for asset in ASSETS:
            try:
                member = archive.getmember(asset.member)
            except KeyError:
                raise AssetError(f"{asset.member} is not in the tarball") from None
            reader = archive.extractfile(member) if member.isfile() else None
            if reader is None:
                raise AssetError(f"{asset.member} is not a regular file")
            content = reader.read()
            actual = hashlib.sha256(content).hexdigest()
            if actual != asset.sha256:
                raise AssetError(
                    f"{asset.member}: SHA-256 {actual} differs from the pinned {asset.sha256}"
                )
            partial = folder / f".{asset.name}.partial"
            partial.write_bytes(content)
            os.replace(partial, folder / asset.name)


def ensure(folder: Path = VENDOR_DIR) -> bool:
    """Make the assets present; True when something was downloaded."""
    if present(folder):
        return False
    data = download()
    check_integrity(data)
    extract(data, folder)
    return True


def main() -> int:
    try:
        fetched = ensure()
    except (AssetError, OSError) as error:
        print(f"vidfarm: error: hls.js {HLS_VERSION}: {error}", file=sys.stderr)
        return 1
    state = "downloaded and verified" if fetched else "already present and verified"
    print(f"hls.js {HLS_VERSION}: {state} in {VENDOR_DIR}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

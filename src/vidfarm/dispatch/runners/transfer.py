"""Bring a runner manager's finished result home: fetch, verify, publish, describe.

`GET /task/result/{id}` lists the files (`"path"` or `{"file_path"|"path", "sha256"}`). Each
one is streamed to a local folder with up to 5 tries (jobs.backoff_delay: exponential, jitter, as
Pod does), its SHA-256 computed on the way and compared with the manifest's; a path that is
absolute, climbs with `..`, or is otherwise not a plain relative name is refused before any
byte is written. Only when every file is there and verified is the folder published, at once,
under the attempt's own prefix; the caller then records the completion (or deletes the prefix
when the attempt lost). Half an import is never referenced.

A vidfarm runner also returns the encoder's own `manifest.json`; its `outputs` become the
job's outputs exactly as a local encode's would (cross-checked against the downloaded files).
A foreign Esup-Runner has no such file: outputs are derived from the file names
(`derive_outputs`), which is good enough to serve them but carries no bandwidth or codecs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
import re
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vidfarm.claims import OutputRecord
from vidfarm.dispatch.runners.client import ManagerClient, ManagerUnavailable, TaskUnknown
from vidfarm.errors import InvalidParameters, StorageUnavailable, TransientError
from vidfarm.jobs import backoff_delay
from vidfarm.media.imported import describe_foreign
from vidfarm.storage import Storage
from vidfarm.storage.base import check_key

log = logging.getLogger(__name__)

DOWNLOAD_TRIES = 5
BACKOFF_MAX_SECONDS = 8.0
MAX_FILES = 20_000
MANIFEST_NAME = "manifest.json"
INFO_VIDEO = "info_video.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_HEIGHT = re.compile(r"(?:^|[_x-])(\d{3,4})p?(?:[_.-]|$)")
CHUNK = 1 << 20


class RunnerResultRefused(TransientError):
    """A manager's result failed verification (unsafe path, checksum, manifest): not imported.

    Transient: the video is not at fault, another attempt (on another manager) may succeed.
    """


@dataclass(frozen=True)
class Fetched:
    path: str  # relative to the result folder
    size: int
    sha256: str


@dataclass(frozen=True)
class ImportedResult:
    result: dict[str, Any]  # what the job records (with the serving "prefix")
    outputs: list[OutputRecord]
    files: list[Fetched]


def safe_path(path: object) -> str:
    """A manifest path that stays inside the result folder, or RunnerResultRefused."""
    if not isinstance(path, str) or not path or len(path) > 1024:
        raise RunnerResultRefused(f"result path {str(path)[:100]!r} is not a file name")
    try:
        return check_key(path)
    except InvalidParameters:
        raise RunnerResultRefused(
            f"result path {path[:100]!r} escapes the result folder or is not a plain "
            "relative name: refused"
        ) from None


def manifest_entries(manifest: dict[str, Any]) -> list[tuple[str, str | None]]:
    """(path, expected sha256 or None) per listed file; the whole list is checked first."""
    files = manifest.get("files")
    if not isinstance(files, list) or not files:
        raise RunnerResultRefused("the result manifest lists no files")
    if len(files) > MAX_FILES:
        raise RunnerResultRefused(f"the result manifest lists more than {MAX_FILES} files")
    entries: dict[str, str | None] = {}
    for entry in files:
        digest: str | None = None
        if isinstance(entry, dict):
            path = entry.get("file_path") or entry.get("path")
            raw = entry.get("sha256")
            if raw is not None:
                digest = str(raw).strip().lower()
                if not _SHA256.match(digest):
                    raise RunnerResultRefused(f"result file {path!r}: invalid sha256 {raw!r}")
        else:
            path = entry
        entries[safe_path(path)] = digest
    return sorted(entries.items())


def fetch_file(
    client: ManagerClient,
    task_id: str,
    path: str,
    target: Path,
    expected: str | None,
    *,
    backoff: float,
    renew: Callable[[], None],
) -> Fetched:
    """Stream one result file to `target`, verified; up to DOWNLOAD_TRIES tries."""
    problem = ""
    for attempt in range(1, DOWNLOAD_TRIES + 1):
        if attempt > 1:
            time.sleep(backoff_delay(attempt - 1, backoff, BACKOFF_MAX_SECONDS))
        try:
            size, digest = _stream(client, task_id, path, target, renew)
        except ManagerUnavailable as error:
            problem = str(error)
            log.warning("task %s: %s (try %d/%d)", task_id, problem, attempt, DOWNLOAD_TRIES)
            continue
        if expected is None or digest == expected:
            return Fetched(path=path, size=size, sha256=digest)
        target.unlink(missing_ok=True)
        problem = f"sha256 mismatch for {path}: expected {expected}, got {digest}"
        log.warning("task %s: %s (try %d/%d)", task_id, problem, attempt, DOWNLOAD_TRIES)
    target.unlink(missing_ok=True)
    if problem.startswith("sha256 mismatch"):
        raise RunnerResultRefused(f"{problem} after {DOWNLOAD_TRIES} tries: result refused")
    raise ManagerUnavailable(f"{problem} (gave up after {DOWNLOAD_TRIES} tries)")


def _stream(
    client: ManagerClient, task_id: str, path: str, target: Path, renew: Callable[[], None]
) -> tuple[int, str]:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.part")
    digest = hashlib.sha256()
    size = 0
    last_renew = time.monotonic()
    try:
        with client.stream_file(task_id, path) as response, partial.open("wb") as handle:
            for block in response.iter_bytes(CHUNK):
                handle.write(block)
                digest.update(block)
                size += len(block)
                if time.monotonic() - last_renew > 10.0:
                    renew()
                    last_renew = time.monotonic()
        partial.replace(target)
    except OSError as error:
        raise StorageUnavailable(f"cannot write {path} while importing: {error}") from None
    finally:
        partial.unlink(missing_ok=True)
    return size, digest.hexdigest()


def fetch_result(
    client: ManagerClient,
    task_id: str,
    folder: Path,
    *,
    backoff: float,
    renew: Callable[[], None],
) -> list[Fetched]:
    """Every file the manager lists, verified, into `folder` (which must not exist)."""
    manifest = _manifest_with_retries(client, task_id, backoff)
    entries = manifest_entries(manifest)
    folder.mkdir(parents=True)
    fetched = []
    for path, expected in entries:
        fetched.append(
            fetch_file(client, task_id, path, folder / path, expected, backoff=backoff, renew=renew)
        )
        renew()
    return fetched


def _manifest_with_retries(client: ManagerClient, task_id: str, backoff: float) -> dict[str, Any]:
    for attempt in range(1, DOWNLOAD_TRIES + 1):
        try:
            return client.result(task_id)
        except TaskUnknown:
            raise
        except ManagerUnavailable as error:
            if attempt == DOWNLOAD_TRIES or error.status_code == 425:
                raise
            log.warning("task %s: %s (try %d/%d)", task_id, error, attempt, DOWNLOAD_TRIES)
            time.sleep(backoff_delay(attempt, backoff, BACKOFF_MAX_SECONDS))
    raise AssertionError("unreachable")


# --- describing the imported files --------------------------------------------------------------


def describe(folder: Path, fetched: list[Fetched], prefix: str) -> ImportedResult:
    """The job's result and output records for files published under `prefix`."""
    by_path = {item.path: item for item in fetched}
    manifests = sorted(
        (p for p in by_path if posixpath.basename(p) == MANIFEST_NAME),
        key=lambda p: (p.count("/"), p),
    )
    if manifests:
        return _from_vidfarm_manifest(folder, by_path, manifests[0], prefix)
    return _derived(folder, by_path, prefix)


def _from_vidfarm_manifest(
    folder: Path, by_path: dict[str, Fetched], manifest_path: str, prefix: str
) -> ImportedResult:
    try:
        manifest = json.loads((folder / manifest_path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RunnerResultRefused(f"{manifest_path} is not valid JSON: {error}") from None
    outputs_in = manifest.get("outputs") if isinstance(manifest, dict) else None
    if not isinstance(outputs_in, list):
        raise RunnerResultRefused(f"{manifest_path} has no outputs list")
    root = posixpath.dirname(manifest_path)
    base = f"{prefix}/{root}" if root else prefix
    outputs: list[OutputRecord] = []
    for entry in outputs_in:
        if not isinstance(entry, dict) or "kind" not in entry:
            raise RunnerResultRefused(f"{manifest_path}: an output without a kind")
        item = _listed(by_path, root, entry.get("path"), entry, manifest_path)
        for segment in entry.get("segments") or []:
            _listed(by_path, root, segment.get("path"), segment, manifest_path)
        outputs.append(
            OutputRecord(
                kind=str(entry["kind"]),
                key=f"{base}/{entry['path']}",
                size=item.size,
                sha256=item.sha256,
                width=_int(entry.get("width")),
                height=_int(entry.get("height")),
                bandwidth=_int(entry.get("bandwidth")),
                codecs=str(entry["codecs"]) if entry.get("codecs") else None,
            )
        )
    result = {**manifest, "prefix": base}
    return ImportedResult(result=result, outputs=outputs, files=list(by_path.values()))


def _listed(
    by_path: dict[str, Fetched], root: str, path: object, entry: dict[str, Any], where: str
) -> Fetched:
    """The downloaded file an output names, checked against the output's size and sha256."""
    relative = safe_path(path)
    full = posixpath.join(root, relative) if root else relative
    item = by_path.get(full)
    if item is None:
        raise RunnerResultRefused(f"{where} names {relative}, which the result does not list")
    expected = entry.get("sha256")
    if expected is not None and str(expected).lower() != item.sha256:
        raise RunnerResultRefused(f"{where}: sha256 of {relative} does not match the file")
    size = entry.get("size")
    if size is not None and _int(size) != item.size:
        raise RunnerResultRefused(f"{where}: size of {relative} does not match the file")
    return item


def _int(value: object) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    if not isinstance(value, int | float | str):
        return None
    try:
        return int(value)
    except ValueError:
        return None


def derive_outputs(folder: Path, fetched: list[Fetched], prefix: str) -> list[OutputRecord]:
    """Outputs of a foreign runner's result, guessed from file names and playlists.

    Segments (.ts, .m4s) and bookkeeping JSON are served by name but are not outputs.
    """
    outputs = []
    for item in sorted(fetched, key=lambda f: f.path):
        kind = _kind_of(folder / item.path)
        if kind is None:
            continue
        height = None
        if kind in ("hls_variant", "mp4"):
            match = _HEIGHT.search(posixpath.basename(item.path))
            height = int(match.group(1)) if match else None
        outputs.append(
            OutputRecord(
                kind=kind,
                key=f"{prefix}/{item.path}",
                size=item.size,
                sha256=item.sha256,
                height=height,
            )
        )
    return outputs


def _kind_of(path: Path) -> str | None:
    name = path.name.lower()
    suffix = path.suffix.lower()
    if suffix == ".m3u8":
        try:
            head = path.read_text(encoding="utf-8", errors="replace")[:65536]
        except OSError:
            return None
        return "hls_master" if "#EXT-X-STREAM-INF" in head else "hls_variant"
    if suffix == ".mpd":
        return "dash_manifest"
    if suffix == ".mp4":
        return "mp4"
    if suffix in (".mp3", ".m4a"):
        return "audio"
    if name.startswith("overview") and suffix in (".png", ".jpg"):
        return "overview_sprite"
    if name.startswith("overview") and suffix == ".vtt":
        return "overview_vtt"
    if suffix in (".jpg", ".jpeg", ".png"):
        return "thumbnail"
    if suffix == ".vtt":
        return "subtitle"
    if suffix == ".srt":
        return "subtitle-srt"
    return None


def _derived(folder: Path, by_path: dict[str, Fetched], prefix: str) -> ImportedResult:
    fetched = list(by_path.values())
    outputs = derive_outputs(folder, fetched, prefix)
    if not outputs:
        raise RunnerResultRefused("the result holds no file vidfarm can serve")
    outputs = _probed(folder, outputs, fetched, prefix)
    result: dict[str, Any] = {
        "prefix": prefix,
        "outputs": [
            {
                "kind": o.kind,
                "path": o.key.removeprefix(prefix + "/"),
                "size": o.size,
                "sha256": o.sha256,
                "width": o.width,
                "height": o.height,
                "bandwidth": o.bandwidth,
                "codecs": o.codecs,
            }
            for o in outputs
        ],
        "derived_from_file_names": True,
    }
    if INFO_VIDEO in by_path:
        try:
            info = json.loads((folder / INFO_VIDEO).read_text(encoding="utf-8"))
            result["info_video"] = info
            if isinstance(info, dict) and isinstance(info.get("duration"), int | float):
                result["duration"] = info["duration"]
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            log.warning("%s is not valid JSON; ignored", INFO_VIDEO)
    return ImportedResult(result=result, outputs=outputs, files=fetched)


def _probed(
    folder: Path, outputs: list[OutputRecord], fetched: list[Fetched], prefix: str
) -> list[OutputRecord]:
    """Outputs probed and measured; a master written when there is none (Esup-Runner returns
    variants only). The master joins `fetched`, to be published with the rest."""
    described, master = describe_foreign(folder, outputs, prefix)
    if master is not None:
        fetched.append(Fetched(path=master.key.removeprefix(prefix + "/"), size=master.size,
                               sha256=master.sha256))  # fmt: skip
    return described


def publish(storage: Storage, folder: Path, prefix: str) -> None:
    """Publish the verified folder under `prefix` (an earlier half-done try is replaced)."""
    storage.delete_prefix(prefix)
    try:
        storage.publish_dir(folder, prefix)
    except Exception:
        storage.delete_prefix(prefix)
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)

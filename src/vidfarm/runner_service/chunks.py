"""Chunks and stitches from a vidfarm control plane: their parameters, and a stitch's inputs.

Only vidfarm sends these task types (`vidfarm_encode_chunk`, `vidfarm_stitch`), and only to a
manager whose health answer announced them. Their parameters are vidfarm's own: the control
plane's whole profile (`profile_spec`: every chunk and the stitch must encode alike, wherever
they run), the chunk's range, and for a stitch each chunk's files, their checksums and the URL
they are downloaded from. Everything is checked at submission (422), like Pod's tasks.

A stitch's chunk files are downloaded like the source (streamed, size-limited, SSRF-guarded
at every hop), each verified against its size and SHA-256, and stored with the task's video
under `sources/<video>/chunks/<index>/`; the stitch reads them from there and its completion
deletes them (the stitch kind's `discard`).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from vidfarm.errors import InvalidParameters, TransientError
from vidfarm.media.plan import check_formats
from vidfarm.media.profiles import profile_from_spec
from vidfarm.models import JobType, vidfarm_task
from vidfarm.runner_service.assets import Fetcher
from vidfarm.storage import Storage
from vidfarm.urlguard import check_url

TASK_TYPES = {vidfarm_task(kind): kind.value for kind in (JobType.ENCODE_CHUNK, JobType.STITCH)}
MAX_CHUNKS = 10_000
MAX_FILES = 1_000
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ChunkInputRefused(TransientError):
    """A chunk file did not arrive as listed (size or checksum): the stitch is tried again."""


def job_params(
    task_type: str, parameters: Mapping[str, Any], *, allow_private: bool
) -> dict[str, Any]:
    """The chunk or stitch job's params from a task's parameters; InvalidParameters (422)."""
    spec = parameters.get("profile_spec")
    profile_from_spec(spec)
    params: dict[str, Any] = {"profile_spec": spec}
    for name in ("start", "end"):
        if parameters.get(name) is not None:
            params[name] = _seconds(parameters[name], f"parameters.{name}")
    if parameters.get("formats") is not None:
        formats = parameters["formats"]
        if not isinstance(formats, list) or not all(isinstance(f, str) for f in formats):
            raise InvalidParameters("parameters.formats: expected a list of format names")
        check_formats(formats)
        params["formats"] = formats
    if TASK_TYPES[task_type] == JobType.ENCODE_CHUNK.value:
        params.update(_range(parameters, "parameters"))
        return params
    children = parameters.get("children")
    if not isinstance(children, list) or not 0 < len(children) <= MAX_CHUNKS:
        raise InvalidParameters(f"parameters.children: expected 1 to {MAX_CHUNKS} chunks")
    params["children"], params["remote_chunks"] = [], []
    for number, child in enumerate(children):
        where = f"parameters.children[{number}]"
        if not isinstance(child, dict):
            raise InvalidParameters(f"{where}: expected an object")
        chunk = _range(child, where)
        files, sums = _files(child, where)
        url = check_url(str(child.get("files_url") or ""), allow_private=allow_private,
                        name=f"{where}.files_url")  # fmt: skip
        cpu = _seconds(child.get("cpu_seconds") or 0.0, f"{where}.cpu_seconds")
        params["children"].append(
            {**chunk, "result": {"files": files, "encode": {"cpu_seconds": cpu}}}
        )
        params["remote_chunks"].append(
            {"index": chunk["index"], "url": url, "files": files, "sums": sums}
        )
    return params


def _range(data: Mapping[str, Any], where: str) -> dict[str, Any]:
    index = data.get("index")
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < MAX_CHUNKS:
        raise InvalidParameters(f"{where}.index: expected a chunk number")
    start = _seconds(data.get("start_at"), f"{where}.start_at")
    end = _seconds(data.get("end_at"), f"{where}.end_at")
    if end <= start:
        raise InvalidParameters(f"{where}: end_at must be after start_at")
    weight = data.get("weight")
    return {
        "index": index,
        "start_at": start,
        "end_at": end,
        "weight": _seconds(weight, f"{where}.weight") if weight is not None else end - start,
    }


def _seconds(value: object, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidParameters(f"{where}: expected a number of seconds")
    if value < 0:
        raise InvalidParameters(f"{where}: must not be negative")
    return float(value)


def _files(child: Mapping[str, Any], where: str) -> tuple[list[str], dict[str, dict[str, Any]]]:
    files, sums = child.get("files"), child.get("sums")
    if not isinstance(files, list) or not 0 < len(files) <= MAX_FILES:
        raise InvalidParameters(f"{where}.files: expected 1 to {MAX_FILES} file names")
    if not isinstance(sums, dict):
        raise InvalidParameters(f"{where}.sums: expected each file's size and sha256")
    checked: dict[str, dict[str, Any]] = {}
    for name in files:
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidParameters(f"{where}.files: {str(name)[:100]!r} is not a plain file name")
        entry = sums.get(name)
        size = entry.get("size") if isinstance(entry, dict) else None
        digest = str(entry.get("sha256", "")).lower() if isinstance(entry, dict) else ""
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidParameters(f"{where}.sums.{name}: expected a size in bytes")
        if not _SHA256.match(digest):
            raise InvalidParameters(f"{where}.sums.{name}: expected a sha256")
        checked[name] = {"size": size, "sha256": digest}
    return sorted(set(files)), checked


def fetch_chunks(
    remote: list[dict[str, Any]], video_id: str, storage: Storage, fetcher: Fetcher
) -> dict[int, str]:
    """Download and verify every chunk's files into storage; chunk index -> its prefix."""
    prefixes: dict[int, str] = {}
    for chunk in remote:
        index = int(chunk["index"])
        prefix = f"sources/{video_id}/chunks/{index:05d}"
        for name in chunk["files"]:
            expected = chunk["sums"][name]
            limit = min(max(1, expected["size"]), fetcher.max_bytes)  # never more than listed
            path, _ = fetcher.get(chunk["url"] + quote(name), f"chunk-{index:05d}-{name}", limit)
            try:
                digest = hashlib.sha256()
                with path.open("rb") as handle:
                    while block := handle.read(1 << 20):
                        digest.update(block)
                if digest.hexdigest() != expected["sha256"]:
                    raise ChunkInputRefused(
                        f"chunk {index}: {name} does not match its sha256: not stitched"
                    )
                storage.put_file(path, f"{prefix}/{name}", move=True)
            finally:
                path.unlink(missing_ok=True)
        prefixes[index] = prefix
    return prefixes

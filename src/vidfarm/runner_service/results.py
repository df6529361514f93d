"""A finished task's result: the manifest Pod fetches, `info_video.json`, and file lookup.

Files are named relative to the task. The list comes from the job's own manifest (every
published output, HLS segments included, each with its SHA-256), plus vidfarm's
`manifest.json` (so a vidfarm control plane can import the exact outputs) and a generated
`info_video.json` in Esup-Pod's shape. Only listed paths can be fetched: a path that is
not in the list, whatever it contains, is never turned into a storage key.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from vidfarm.errors import InvalidParameters, InvalidTransition, NotFound
from vidfarm.models import Job, JobType, RunnerTask
from vidfarm.runner_service import tasks
from vidfarm.storage import Storage

INFO_VIDEO = "info_video.json"
MANIFEST = "manifest.json"
_NOMINAL = re.compile(r"^(\d+)p\.")
_POD_RESOLUTION = re.compile(r"^\s*(\d{1,5})\s*[xX:]\s*(\d{1,5})\s*$")
_FORMAT = {"hls_variant": "video/mp2t", "mp4": "video/mp4", "dash_manifest": "application/dash+xml"}


@dataclass(frozen=True)
class ResultFile:
    path: str  # relative to the task
    sha256: str
    size: int
    key: str | None = None  # where it is stored, or None for a generated file...
    content: bytes | None = None  # ...whose bytes are these

    def manifest_entry(self) -> dict[str, Any]:
        return {"file_path": self.path, "sha256": self.sha256, "size": self.size}


def finished_job(session: Session, task: RunnerTask) -> Job:
    """The completed job behind a task; 425 while it runs, 409 if it did not succeed."""
    if task.status in tasks.ACTIVE:
        raise tasks.NotFinished(f"task {task.id} is still {task.status}")
    if task.status not in (tasks.COMPLETED, tasks.WARNING):
        raise InvalidTransition(f"task {task.id} {task.status}: it has no result")
    job = session.get(Job, task.job_id) if task.job_id else None
    if job is None or not job.result:
        raise NotFound(f"task {task.id}: its result was deleted")
    return job


def result_files(session: Session, storage: Storage, task: RunnerTask) -> list[ResultFile]:
    job = finished_job(session, task)
    result: dict[str, Any] = dict(job.result or {})
    prefix = str(result["prefix"])
    files: dict[str, ResultFile] = {}

    def add(path: str, sha256: str, size: int) -> None:
        files[path] = ResultFile(path, sha256, size, key=f"{prefix}/{path}")

    for entry in result.get("outputs", []):
        add(entry["path"], entry["sha256"], int(entry.get("size") or 0))
        for segment in entry.get("segments") or []:
            add(segment["path"], segment["sha256"], int(segment.get("size") or 0))
    if job.type == JobType.ENCODE_CHUNK.value:  # material for a stitch, not outputs
        for name, item in (result.get("sums") or {}).items():
            add(name, item["sha256"], int(item["size"]))
    if job.type == JobType.ENCODE.value:
        key = f"{prefix}/{MANIFEST}"
        if storage.exists(key):
            files[MANIFEST] = _stored(storage, MANIFEST, key)
        files[INFO_VIDEO] = _generated(INFO_VIDEO, info_video(task, result))
    else:
        files[MANIFEST] = _generated(MANIFEST, result)
    return [files[path] for path in sorted(files)]


def find_file(files: list[ResultFile], path: str) -> ResultFile:
    """The listed file named `path`; a path trying to leave the task is refused outright."""
    parts = path.replace("\\", "/").split("/")
    if path.startswith("/") or any(part in ("", ".", "..") for part in parts) or "\0" in path:
        raise InvalidParameters(f"invalid file path {path[:100]!r}")
    for item in files:
        if item.path == path:
            return item
    raise NotFound(f"no result file {path[:100]!r}")


def _stored(storage: Storage, path: str, key: str) -> ResultFile:
    digest = hashlib.sha256()
    size = 0
    with storage.open(key) as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
            size += len(block)
    return ResultFile(path, digest.hexdigest(), size, key=key)


def _generated(path: str, data: dict[str, Any]) -> ResultFile:
    content = (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()
    return ResultFile(path, hashlib.sha256(content).hexdigest(), len(content), content=content)


def requested_resolutions(task: RunnerTask) -> dict[int, str]:
    """Height -> Pod's resolution label ("640x360") from the task's `rendition` parameter."""
    raw = (task.request.get("parameters") or {}).get("rendition")
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        return {}
    found: dict[int, str] = {}
    for entry in (data or {}).values() if isinstance(data, dict) else []:
        match = _POD_RESOLUTION.match(str((entry or {}).get("resolution", "")))
        if match:
            found[int(match.group(2))] = f"{match.group(1)}x{match.group(2)}"
    return found


def pod_rendition(nominal_height: int, labels: dict[int, str]) -> str:
    """Pod's `VideoRendition.resolution` for a nominal height: the request's label, else
    Pod's default table (16:9 at that height: 640x360, 1280x720, 1920x1080)."""
    if nominal_height in labels:
        return labels[nominal_height]
    width = 2 * round(nominal_height * 16 / 9 / 2)
    return f"{width}x{nominal_height}"


def info_video(task: RunnerTask, result: dict[str, Any]) -> dict[str, Any]:
    """What Pod's `info_video.json` says: duration, streams, and each encoded file."""
    source = result.get("source") or {}
    labels = requested_resolutions(task)
    outputs: list[dict[str, Any]] = list(result.get("outputs") or [])
    encode_video: list[dict[str, Any]] = []
    encode_audio: list[dict[str, Any]] = []
    thumbnails: list[dict[str, Any]] = []
    subtitles: list[dict[str, Any]] = []
    for entry in outputs:
        kind, path = entry["kind"], entry["path"]
        if kind in _FORMAT and (entry.get("height") or kind == "dash_manifest"):
            nominal = _NOMINAL.match(path)
            size = f"{entry.get('width')}x{entry.get('height')}"
            label = pod_rendition(int(nominal.group(1)), labels) if nominal else size
            encode_video.append(
                {
                    "encoding_format": _FORMAT[kind],
                    "filename": path,
                    "rendition": label,
                    "width": entry.get("width"),
                    "height": entry.get("height"),
                }
            )
        elif kind == "audio":
            audio_format = "audio/mp3" if path.endswith(".mp3") else "video/mp4"
            encode_audio.append({"encoding_format": audio_format, "filename": path})
        elif kind == "thumbnail":
            thumbnails.append({"filename": path})
        elif kind == "subtitle":
            subtitles.append({"filename": path, "language": entry.get("language")})
    paths = {entry["path"] for entry in outputs}
    return {
        "duration": int(float(result.get("duration") or 0)),  # Pod stores whole seconds
        "has_stream_video": bool(source.get("video")),
        "has_stream_audio": bool(source.get("audio")),
        "has_stream_thumbnail": bool(thumbnails),
        "encode_video": encode_video,
        "encode_audio": encode_audio,
        "encode_thumbnail": thumbnails,
        "encode_subtitle": subtitles,
        "master_playlist": "master.m3u8" if "master.m3u8" in paths else None,
        "overview": (
            {"image": "overview.png", "vtt": "overview.vtt"}
            if {"overview.png", "overview.vtt"} <= paths
            else None
        ),
        "task_id": task.id,
    }

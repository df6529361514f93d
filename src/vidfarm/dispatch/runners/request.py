"""The body of `POST /task/execute`, shaped exactly as Esup-Pod sends it.

(Chunks and stitches, which only a `vidfarm runner` takes, carry vidfarm's own parameters:
`vidfarm_parameters`.)

An existing Esup-Runner manager (or `vidfarm runner`) then cannot tell vidfarm from Pod:
`rendition` is a JSON *string* keyed by height, `cut` a JSON string of HH:MM:SS times, and
transcriptions carry `language`, `source_language`, `duration`, `normalize`, `model_type`.
Encoder settings beyond the ladder (x264 preset, CRF, segment length) are the runner's own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vidfarm import __version__
from vidfarm.config import Settings
from vidfarm.errors import InvalidParameters
from vidfarm.kinds import KINDS
from vidfarm.media.preview import PREFIX as PREVIEW_PREFIX
from vidfarm.media.profiles import RenditionSpec, profile_for_params, rendition_for
from vidfarm.models import Job, Video, vidfarm_only

APP_NAME = "vidfarm"
DEFAULT_AFFILIATION = "staff"


def public_url(settings: Settings) -> str:
    """This control plane's base URL as runner managers reach it."""
    return (settings.runners_public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


def notify_url(settings: Settings) -> str:
    return f"{public_url(settings)}/runner/notify_task_end/"


def source_url(settings: Settings, assignment_id: str, secret: str, filename: str) -> str:
    """Where the manager downloads the source: no API token, a per-assignment secret."""
    name = Path(filename).name or "source"
    return f"{public_url(settings)}/runner/source/{assignment_id}/{secret}/{name}"


def inputs_url(settings: Settings, assignment_id: str, secret: str) -> str:
    """Where a vidfarm manager downloads a stitch's chunks (`<this>/<index>/<file name>`),
    with the same per-assignment secret as the source."""
    return f"{public_url(settings)}/runner/input/{assignment_id}/{secret}"


def bitrate_text(bits_per_second: int) -> str:
    """750000 -> "750k", as Pod writes bitrates."""
    if bits_per_second % 1000 == 0:
        return f"{bits_per_second // 1000}k"
    return str(bits_per_second)


def pod_width(height: int) -> int:
    """Pod names renditions by a 16:9 frame ("640x360"); runners keep the source's aspect."""
    return round(height * 16 / 9 / 2) * 2


def rendition_parameter(renditions: list[RenditionSpec]) -> str:
    """Pod's `rendition` parameter; minrate/maxrate ride along (runners may ignore them)."""
    ladder = {
        str(spec.height): {
            "resolution": f"{pod_width(spec.height)}x{spec.height}",
            "video_bitrate": bitrate_text(spec.video_bitrate),
            "audio_bitrate": bitrate_text(spec.audio_bitrate),
            "encode_mp4": spec.mp4,
            "minrate": bitrate_text(spec.min_video_bitrate),
            "maxrate": bitrate_text(spec.max_video_bitrate),
        }
        for spec in sorted(renditions, key=lambda spec: spec.height)
    }
    return json.dumps(ladder)


def timecode(seconds: float) -> str:
    """12.5 -> "00:00:12.500000", Python's str(datetime.time) that Pod sends."""
    whole = int(seconds)
    micros = round((seconds - whole) * 1_000_000)
    text = f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{whole % 60:02d}"
    return f"{text}.{micros:06d}" if micros else text


def encoding_parameters(job: Job, video: Video, settings: Settings) -> dict[str, Any]:
    params = job.params or {}
    profile = profile_for_params(params, settings.default_profile, settings.user_profiles_dir)
    only = rendition_for(profile, params.get("resolution"))
    parameters: dict[str, Any] = {
        "rendition": rendition_parameter([only] if only else list(profile.ladder))
    }
    start, end = params.get("start"), params.get("end")
    if start is not None or end is not None:
        duration = float(video.duration or 0.0)
        parameters["cut"] = json.dumps(
            {
                "start": timecode(float(start or 0.0)),
                "end": timecode(float(end if end is not None else duration)),
                "initial_duration": timecode(duration),
            }
        )
    parameters.update(_video_metadata(video))
    return parameters


def transcription_parameters(job: Job, video: Video, settings: Settings) -> dict[str, Any]:
    language = str((job.params or {}).get("language") or video.language or "").strip().lower()
    if not language:
        raise InvalidParameters("a transcription job needs a language")
    parameters: dict[str, Any] = {
        "language": language,
        "source_language": (video.language or "auto").lower(),
        "duration": float(video.duration or 0.0),
        "normalize": settings.transcription_loudnorm,
    }
    engine = settings.transcription_engines.get(language)
    if engine:
        parameters["model_type"] = engine
    parameters.update(_video_metadata(video))
    return parameters


def _video_metadata(video: Video) -> dict[str, Any]:
    return {
        "video_id": video.id,
        "video_slug": Path(video.filename).stem or video.id,
        "video_title": video.filename,
    }


def runner_task_type(job: Job) -> str:
    """The Esup-Runner task type of the job's kind; a kind runners cannot run is refused."""
    kind = KINDS.get(job.type)
    if kind is None or kind.runner_task is None:
        raise InvalidParameters(f"runner managers do not run {job.type!r} jobs")
    return kind.runner_task


#: What a chunk or a stitch carries of its job's params, besides the whole profile.
CHUNK_PARAMS = ("start", "end", "formats", "index", "start_at", "end_at", "weight")


def vidfarm_parameters(job: Job, video: Video, settings: Settings, inputs: str) -> dict[str, Any]:
    """A chunk's or a stitch's parameters for a `vidfarm runner` (vidfarm's own shapes, not
    Pod's): the control plane's whole profile, so every part encodes alike wherever it runs,
    and for a stitch, each chunk's files with their checksums and where to download them."""
    params = job.params or {}
    profile = profile_for_params(params, settings.default_profile, settings.user_profiles_dir)
    parameters: dict[str, Any] = {
        "profile_spec": profile.model_dump(mode="json"),
        **{name: params[name] for name in CHUNK_PARAMS if params.get(name) is not None},
    }
    if "children" in params:
        parameters["children"] = [_child(child, inputs) for child in params["children"]]
    parameters.update(_video_metadata(video))
    return parameters


def _child(child: dict[str, Any], inputs: str) -> dict[str, Any]:
    """One chunk as a stitch task lists it: range, files (previews stay home), checksums."""
    result = child.get("result") or {}
    files = [name for name in result.get("files") or [] if not name.startswith(PREVIEW_PREFIX)]
    sums = result.get("sums") or {}
    index = int(child["index"])
    return {
        "index": index,
        "start_at": child["start_at"],
        "end_at": child["end_at"],
        "weight": child.get("weight"),
        "files": files,
        "sums": {name: sums[name] for name in files if name in sums},
        "cpu_seconds": float((result.get("encode") or {}).get("cpu_seconds") or 0.0),
        "files_url": f"{inputs}/{index}/",
    }


def task_request(
    job: Job, video: Video, settings: Settings, *, source: str, inputs: str = ""
) -> dict[str, Any]:
    """The whole `POST /task/execute` body for one job."""
    task_type = runner_task_type(job)
    if task_type == "encoding":
        parameters = encoding_parameters(job, video, settings)
    elif vidfarm_only(task_type):
        parameters = vidfarm_parameters(job, video, settings, inputs)
    else:
        parameters = transcription_parameters(job, video, settings)
    return {
        "etab_name": settings.runners_etab_name,
        "app_name": APP_NAME,
        "app_version": __version__,
        "task_type": task_type,
        "source_url": source,
        "affiliation": str((job.params or {}).get("affiliation") or DEFAULT_AFFILIATION),
        "notify_url": notify_url(settings),
        "parameters": parameters,
    }

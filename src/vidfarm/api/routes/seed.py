"""The seed's REST contract, exactly as written: upload, transcode, task, status, stream.

(A FastAPI/Celery/MinIO transcoding worker's API; see shared/seeds/004.)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from vidfarm import jobs
from vidfarm.api import access
from vidfarm.api.deps import MediaAuth, RuntimeDep, SessionDep, UserAuth
from vidfarm.api.media import PATH_PATTERN
from vidfarm.api.routes.media import legacy_media, media_route
from vidfarm.api.uploads import ReceivedUpload, discard, receive_upload
from vidfarm.models import Job, JobStatus
from vidfarm.runtime import Runtime
from vidfarm.transcribe.engines import resolve as resolve_engine
from vidfarm.videos import (
    add_video,
    check_affiliation,
    job_formats,
    stored_name,
    submit_encode,
)

router = APIRouter(prefix="/videos", tags=["videos (seed API)"])

Format = Literal["hls", "mp4", "dash"]
EXTENSION = {"hls": "m3u8", "mp4": "mp4", "dash": "mpd"}
STATE = {
    JobStatus.PENDING: ("PENDING", "queued"),
    JobStatus.QUEUED: ("PENDING", "queued"),
    JobStatus.RUNNING: ("PROGRESS", "transcoding"),
    JobStatus.COMPLETED: ("SUCCESS", "completed"),
    JobStatus.FAILED: ("FAILURE", "failed"),
    JobStatus.TIMEOUT: ("FAILURE", "failed"),
    JobStatus.CANCELLED: ("FAILURE", "failed"),
}
UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


class UploadResponse(BaseModel):
    file_id: str
    filename: str
    message: str
    job_id: str | None = None


class TranscodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resolution: str | None = Field(
        default=None,
        pattern=r"^\d{1,5}:\d{1,5}$",
        description="W:H of one rendition (short side used, aspect kept); omit for the ladder.",
        examples=["1920:1080"],
    )
    format: Format = "hls"
    profile: str | None = Field(default=None, description="Encoding profile; default setting.")


class TranscodeResponse(BaseModel):
    message: str
    task_id: str
    file_id: str
    output_name: str
    resolution: str | None
    format: Format
    status: str


@router.post(
    "/upload",
    response_model=UploadResponse,
    openapi_extra=UPLOAD_BODY,
    responses={413: {}, 415: {}, 422: {}},
)
async def upload(
    request: Request,
    runtime: RuntimeDep,
    principal: UserAuth,
    language: Annotated[
        str | None,
        Query(max_length=16, description="Spoken language: a transcription follows the encode."),
    ] = None,
    affiliation: Annotated[
        str | None,
        Query(max_length=32, description="Submitter class (staff, student...): sets priority."),
    ] = None,
) -> UploadResponse:
    """Stream a video into storage; refuse what is not media; start the default encode."""
    settings = runtime.settings
    if language:
        resolve_engine(language, settings)  # an unconfigured language is refused up front
    check_affiliation(settings, affiliation)
    received = await receive_upload(
        request,
        field="file",
        folder=settings.data_dir / "uploads",
        max_bytes=settings.max_upload_bytes,
    )
    try:
        # Probing and storing a large file takes seconds: keep the event loop free meanwhile.
        file_id, filename, job_id = await run_in_threadpool(
            _ingest, runtime, received, language, affiliation, principal.token_id
        )
    finally:
        await run_in_threadpool(discard, received)  # unlinking 1 GiB takes a while too
    if job_id:
        await run_in_threadpool(runtime.dispatch, [job_id])  # SQL and the broker: off the loop
    return UploadResponse(
        file_id=file_id, filename=filename, message="Video uploaded successfully", job_id=job_id
    )


def _ingest(
    runtime: Runtime,
    received: ReceivedUpload,
    language: str | None,
    affiliation: str | None,
    owner: str | None,
) -> tuple[str, str, str | None]:
    """Probe, store and record an upload; queue its encode when auto-encode is on."""
    settings = runtime.settings
    with runtime.sessions() as session:
        video, _info = add_video(
            session,
            runtime.storage,
            received.path,
            filename=received.filename,
            language=language,
            move=True,
            owner=owner,
        )
        job_id = None
        if settings.auto_encode:
            job = submit_encode(session, settings, video, affiliation=affiliation, owner=owner)
            job_id = job.id
        return video.id, stored_name(video.id, video.filename), job_id


@router.post("/transcode/{file_id}", response_model=TranscodeResponse, responses={404: {}, 422: {}})
def transcode(
    file_id: str,
    body: TranscodeRequest,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: UserAuth,
) -> TranscodeResponse:
    """Queue an encode of one resolution (or the whole ladder) in one format."""
    video = access.own_video(session, principal, file_id)
    params: dict[str, Any] = {"formats": [body.format]}
    if body.resolution:
        params["resolution"] = body.resolution
    if body.profile:
        params["profile"] = body.profile
    job = submit_encode(session, runtime.settings, video, params=params, owner=principal.token_id)
    runtime.dispatch([job.id])
    return TranscodeResponse(
        message="Transcoding started",
        task_id=job.id,
        file_id=video.id,
        output_name=f"{video.id}_transcoded.{EXTENSION[body.format]}",
        resolution=body.resolution,
        format=body.format,
        status="processing",
    )


def task_view(job: Job, fmt: str | None = None) -> dict[str, Any]:
    """The seed's view of a job; its result names the file of `fmt` (default: its first)."""
    state, status = STATE[JobStatus(job.status)]
    fmt = fmt or job_formats(job)[0]
    view: dict[str, Any] = {
        "task_id": job.id,
        "state": state,
        "status": status,
        "progress": round(job.progress),
    }
    if state == "SUCCESS":
        view["result"] = {
            "status": "completed",
            "format": fmt,
            "output_name": f"{job.video_id}_transcoded.{EXTENSION.get(fmt, 'm3u8')}",
            "url": f"/videos/stream/{job.video_id}_transcoded.{EXTENSION.get(fmt, 'm3u8')}",
        }
    elif state == "FAILURE":
        view["error"] = job.error or job.status
    return view


@router.get("/task/{task_id}", responses={404: {}})
def task(task_id: str, session: SessionDep, principal: UserAuth) -> dict[str, Any]:
    """A task's state, Celery-style (PENDING/PROGRESS/SUCCESS/FAILURE) and in words."""
    return task_view(access.own_job(session, principal, task_id))


@router.get("/status/{file_id}", responses={404: {}})
def status(
    file_id: str, session: SessionDep, principal: UserAuth, format: Format = "hls"
) -> dict[str, Any]:
    """Where a video stands for one format: not_started, processing, completed or failed."""
    video = access.own_video(session, principal, file_id)
    related = [j for j in jobs.list_jobs(session, video_id=video.id) if format in job_formats(j)]
    if not related:
        return {"file_id": video.id, "format": format, "status": "not_started"}
    done = next((j for j in related if j.status == JobStatus.COMPLETED), None)
    newest = done or related[0]
    view = task_view(newest, format)  # ?format=mp4 names the MP4, not the job's playlist
    return {
        "file_id": video.id,
        "format": format,
        "status": view["status"],
        "task_id": newest.id,
        "progress": view["progress"],
        **(
            {"output_name": view["result"]["output_name"], "url": view["result"]["url"]}
            if "result" in view
            else {}
        ),
        **({"error": view["error"]} if "error" in view else {}),
    }


@media_route(router, "/stream/{path:path}", responses={206: {}, 307: {}, 400: {}, 404: {}})
def stream(
    path: Annotated[str, Path(pattern=PATH_PATTERN)],
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    caller: MediaAuth,
) -> Response:
    """Play a file (HTTP Range supported; S3 media redirect to a presigned URL)."""
    return legacy_media(request, runtime, session, caller, path, download=False)


@media_route(router, "/download/{path:path}", responses={307: {}, 400: {}, 404: {}})
def download(
    path: Annotated[str, Path(pattern=PATH_PATTERN)],
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    caller: MediaAuth,
) -> Response:
    """Download a file as an attachment."""
    return legacy_media(request, runtime, session, caller, path, download=True)

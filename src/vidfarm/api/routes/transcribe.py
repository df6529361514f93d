"""POST /api/v1/videos/{id}/transcribe: queue a transcription of a stored video.

The subtitle it produces becomes an output of the video (kind "subtitle"), listed and served
like the encoder's outputs. The lead includes `router` in api/app.py.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from vidfarm.api import access
from vidfarm.api.deps import RuntimeDep, SessionDep, UserAuth
from vidfarm.api.views import job_view
from vidfarm.errors import InvalidParameters
from vidfarm.transcribe.job import submit_transcription
from vidfarm.videos import record_owner

router = APIRouter(prefix="/api/v1/videos", tags=["videos"])


class TranscribeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: str | None = Field(
        default=None,
        min_length=2,
        max_length=16,
        pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})?$",
        description="Spoken language; empty means the video's own language.",
    )
    priority: int = Field(default=0, ge=-100, le=100)


@router.post("/{video_id}/transcribe", status_code=202, responses={404: {}, 422: {}})
def transcribe_video(
    video_id: str,
    body: TranscribeRequest,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: UserAuth,
) -> dict[str, Any]:
    """Queue a transcription job: its WebVTT, SRT and words become outputs of the video."""
    video = access.own_video(session, principal, video_id)
    language = body.language or video.language
    if not language:
        raise InvalidParameters("no language given and the video has none")
    job = submit_transcription(
        session, runtime.settings, video, language=language, priority=body.priority
    )
    record_owner(session, job, principal.token_id)
    runtime.dispatch([job.id])
    return job_view(session, job)

"""/api/v1/videos: list, detail with probe and outputs, visibility, new encodes, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import func, select

from vidfarm.api import access
from vidfarm.api.deps import RuntimeDep, SessionDep, UserAuth
from vidfarm.api.routes.listing import VideoSort, listed, order, search
from vidfarm.api.views import (
    MAX_OFFSET,
    job_view,
    job_views,
    output_view,
    playable_outputs,
    video_view,
)
from vidfarm.db import write_transaction
from vidfarm.media.plan import FORMATS
from vidfarm.models import Visibility
from vidfarm.videos import delete_video, prune_encodes, submit_encode

router = APIRouter(prefix="/api/v1/videos", tags=["videos"])
MAX_SECONDS = 7 * 86400  # a week of media: anything longer is a typo


class EncodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: str | None = None
    resolution: str | None = Field(default=None, pattern=r"^\d{1,5}:\d{1,5}$")
    formats: list[str] | None = Field(
        default=None, max_length=len(FORMATS), description=f"Any of {', '.join(FORMATS)}."
    )
    start: float | None = Field(default=None, ge=0, le=MAX_SECONDS, allow_inf_nan=False)
    end: float | None = Field(default=None, gt=0, le=MAX_SECONDS, allow_inf_nan=False)
    priority: int = Field(default=0, ge=-100, le=100)
    affiliation: str | None = Field(
        default=None, max_length=32, description="Submitter class (staff, student...)."
    )

    @field_validator("start", "end", mode="before")
    @classmethod
    def _number(cls, value: object) -> object:
        if isinstance(value, bool):  # JSON true is not a time
            raise ValueError("must be a number of seconds")
        return value

    @model_validator(mode="after")
    def _order(self) -> EncodeRequest:
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class VideoUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    visibility: Visibility | None = Field(
        default=None,
        description="private: owner and admins; unlisted: anyone with the embed URL or a signed "
        "link; public: listed at /api/v1/public/videos, played without a token.",
    )
    title: str | None = Field(default=None, min_length=1, max_length=255)
    description: str | None = Field(default=None, max_length=5000)

    @model_validator(mode="after")
    def _something(self) -> VideoUpdate:
        if not self.model_fields_set:
            raise ValueError("nothing to change: give visibility, title or description")
        if "title" in self.model_fields_set and self.title is None:
            raise ValueError("title cannot be null (it defaults to the file name at upload)")
        return self


@router.get("")
def list_videos(
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: UserAuth,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    q: Annotated[
        str | None, Query(max_length=255, description="Words the title or file name contains.")
    ] = None,
    sort: Annotated[VideoSort, Query(description="Order; a leading '-' reverses it.")] = (
        VideoSort.NEWEST
    ),
) -> dict[str, Any]:
    """Videos (a user token's own, every video for an admin) with a playable flag and thumbnail."""
    mine = search(access.videos_of(principal), q)
    total = session.scalar(select(func.count()).select_from(mine.subquery())) or 0
    rows = session.scalars(mine.order_by(*order(sort)).limit(limit).offset(offset))
    return {
        "items": [listed(request, runtime, session, v) for v in rows],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.get("/{video_id}", responses={404: {}})
def get_video(video_id: str, session: SessionDep, principal: UserAuth) -> dict[str, Any]:
    """One video: probe, jobs, and every output of its newest completed encode with its URL."""
    video = access.own_video(session, principal, video_id)
    outputs = [output_view(video.id, o) for o in playable_outputs(session, video)]
    return {
        **video_view(video),
        "probe": video.probe,
        "jobs": job_views(session, sorted(video.jobs, key=lambda j: j.created_at)),
        "outputs": outputs,
    }


@router.patch("/{video_id}", responses={404: {}, 422: {}})
def update_video(
    video_id: str, body: VideoUpdate, session: SessionDep, principal: UserAuth
) -> dict[str, Any]:
    """Change the title, description or who may play the video (its owner or an admin)."""
    video = access.own_video(session, principal, video_id)
    with write_transaction(session):  # SQLite: take the write lock first, never upgrade a read
        if body.visibility is not None:
            video.visibility = body.visibility.value
        if "title" in body.model_fields_set:
            video.title = body.title
        if "description" in body.model_fields_set:
            video.description = body.description or None
    return video_view(video)


@router.post("/{video_id}/encode", status_code=202, responses={404: {}, 422: {}})
def encode_video(
    video_id: str,
    body: EncodeRequest,
    runtime: RuntimeDep,
    session: SessionDep,
    principal: UserAuth,
) -> dict[str, Any]:
    """Queue another encode of a stored video."""
    video = access.own_video(session, principal, video_id)
    params = body.model_dump(exclude={"priority", "affiliation"}, exclude_none=True)
    job = submit_encode(
        session,
        runtime.settings,
        video,
        params=params,
        priority=body.priority,
        affiliation=body.affiliation,
        owner=principal.token_id,
    )
    runtime.dispatch([job.id])
    return job_view(session, job)


@router.post("/{video_id}/prune", responses={404: {}})
def prune_video(
    video_id: str, runtime: RuntimeDep, session: SessionDep, principal: UserAuth
) -> dict[str, int]:
    """Delete the media of superseded encodes (the newest per format stay); jobs stay listed."""
    access.own_video(session, principal, video_id)
    pruned, freed = prune_encodes(session, runtime.storage, video_id)
    return {"pruned": pruned, "freed_bytes": freed}


@router.delete("/{video_id}", status_code=204, responses={404: {}})
def remove_video(
    video_id: str, runtime: RuntimeDep, session: SessionDep, principal: UserAuth
) -> Response:
    """Delete a video, its jobs and all its media."""
    access.own_video(session, principal, video_id)
    delete_video(session, runtime.storage, video_id)
    return Response(status_code=204)

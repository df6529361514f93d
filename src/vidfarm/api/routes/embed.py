"""Embeds: `/embed/<video>` (a player page other sites may put in an <iframe>), the playback
links it asks for without a token, and the list of public videos.

A video's visibility decides: `unlisted` and `public` videos play from their embed URL (the
random 32-hex id is the capability, like an unlisted link elsewhere), `private` ones answer
404 here like unknown ids. Signed URLs already handed out stay valid until they expire when
a video goes back to private: their lifetime is VIDFARM_MEDIA_URL_SECONDS.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vidfarm.api.deps import RuntimeDep, SessionDep
from vidfarm.api.routes.media import playback_links
from vidfarm.api.views import MAX_OFFSET
from vidfarm.api.web.router import MEDIA_TYPES, STATIC_DIR, page_headers
from vidfarm.errors import NotFound
from vidfarm.models import Video, Visibility

router = APIRouter(tags=["embed"])
_VIDEO_ID = re.compile(r"^[0-9a-f]{32}$")


def shared_video(session: Session, video_id: str) -> Video:
    """An unlisted or public video; a private or unknown one is NotFound (no confirmation)."""
    video = session.get(Video, video_id) if _VIDEO_ID.match(video_id) else None
    if video is None or video.visibility == Visibility.PRIVATE:
        raise NotFound(f"no video {video_id}")
    return video


@router.get("/embed/{video_id}", include_in_schema=False, responses={404: {}})
def embed_page(video_id: str, runtime: RuntimeDep, session: SessionDep) -> FileResponse:
    """The player page; who may frame it is VIDFARM_EMBED_FRAME_ANCESTORS."""
    shared_video(session, video_id)
    headers = page_headers(runtime.settings.embed_frame_ancestors)
    return FileResponse(STATIC_DIR / "embed.html", media_type=MEDIA_TYPES[".html"], headers=headers)


@router.get("/embed/{video_id}/playback", responses={404: {}})
def embed_playback(
    video_id: str, request: Request, runtime: RuntimeDep, session: SessionDep
) -> dict[str, Any]:
    """Signed URLs to play an unlisted or public video, for anyone: no token, no source file."""
    video = shared_video(session, video_id)
    links = playback_links(request, runtime, session, video)
    del links["source"]  # the original upload stays with its owner
    return links


@router.get("/api/v1/public/videos", tags=["videos"])
def public_videos(
    request: Request,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    """Public videos, newest first, with their embed URL: listed for anyone, no token."""
    listed = select(Video).where(Video.visibility == Visibility.PUBLIC)
    total = session.scalar(select(func.count()).select_from(listed.subquery())) or 0
    rows = session.scalars(
        listed.order_by(Video.created_at.desc(), Video.id).limit(limit).offset(offset)
    )
    base_url = str(request.base_url).rstrip("/")
    items = [
        {
            "id": video.id,
            "filename": video.filename,
            "duration": video.duration,
            "embed": f"{base_url}/embed/{video.id}",
        }
        for video in rows
    ]
    return {"items": items, "total": total, "limit": limit, "offset": offset}

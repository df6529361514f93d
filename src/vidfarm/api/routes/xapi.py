"""xAPI: player events in (POST /xapi/video/), the outbox's state and dead letters out.

Events may come from a logged-in player (a token: the actor is derived from it) or from an
anonymous viewer (no token: a per-session actor). The client never chooses the actor.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vidfarm.api.deps import (
    ANONYMOUS,
    AdminAuth,
    AnyAuth,
    BearerCredentials,
    HeaderToken,
    Principal,
    RuntimeDep,
    SessionDep,
    authenticate,
    presented_token,
)
from vidfarm.api.views import MAX_OFFSET
from vidfarm.config import Settings
from vidfarm.errors import InvalidParameters, NotFound
from vidfarm.models import Video
from vidfarm.xapi import outbox
from vidfarm.xapi.statements import (
    ActorPolicy,
    VideoActivity,
    Viewer,
    build_statement,
    load_actor_secret,
    validate_event,
)

router = APIRouter(tags=["xapi"])
MAX_EVENTS = 500  # per request; a player sends a handful at a time


def viewer_token(runtime: RuntimeDep, bearer: BearerCredentials, header: HeaderToken) -> Principal:
    """A token when one is sent (and it must then be valid), else the anonymous viewer."""
    presented = presented_token(bearer.credentials if bearer else None, header)
    return ANONYMOUS if presented is None else authenticate(runtime, presented)


def base_url(settings: Settings) -> str:
    return (settings.xapi_base_url or f"http://{settings.host}:{settings.port}").rstrip("/")


@lru_cache(maxsize=8)
def _secret(configured: str, data_dir: Path) -> bytes:
    """Read (or create) the HMAC key once per process, not on every request."""
    return load_actor_secret(configured, data_dir)


def actor_policy(settings: Settings) -> ActorPolicy:
    secret = _secret(settings.xapi_actor_secret.get_secret_value(), settings.data_dir.resolve())
    return ActorPolicy(
        home_page=base_url(settings),
        secret=secret,
        anonymize=settings.xapi_anonymize_actor,
        name_source=settings.xapi_actor_name,
    )


def build_statements(
    session: Session, settings: Settings, principal: Principal, body: Any
) -> list[tuple[dict[str, Any], str | None]]:
    """Validate every event first: a request is stored whole or not at all."""
    events = body if isinstance(body, list) else [body]
    if not events:
        raise InvalidParameters("no events")
    if len(events) > MAX_EVENTS:
        raise InvalidParameters(f"at most {MAX_EVENTS} events per request, got {len(events)}")
    policy = actor_policy(settings)
    viewer = Viewer(user_id=principal.token_id, username=principal.name)
    videos: dict[str, VideoActivity] = {}
    built: list[tuple[dict[str, Any], str | None]] = []
    for index, raw in enumerate(events):
        try:
            event = validate_event(raw)
            actor = policy.actor(viewer, event.get("session_id"))
        except InvalidParameters as error:
            where = f"event {index}: " if len(events) > 1 else ""
            raise InvalidParameters(f"{where}{error}") from None
        video_id = event["video_id"]
        if video_id not in videos:
            video = session.get(Video, video_id)
            if video is None:
                raise NotFound(f"no video {video_id}")
            videos[video_id] = VideoActivity(
                id=f"{base_url(settings)}/api/v1/videos/{video_id}",
                name=video.filename,
                duration=video.duration,
            )
        built.append((build_statement(event, actor=actor, video=videos[video_id]), video_id))
    return built


ViewerAuth = Annotated[Principal, Depends(viewer_token)]


@router.post("/xapi/video/", status_code=202, responses={401: {}, 404: {}, 422: {}})
@router.post("/xapi/video", status_code=202, include_in_schema=False)
def post_events(
    runtime: RuntimeDep,
    session: SessionDep,
    principal: ViewerAuth,
    body: Annotated[Any, Body(description="One player event, or a JSON array of them.")],
) -> dict[str, Any]:
    """Store the statements built from player events; they are delivered to the LRS later."""
    if not runtime.settings.xapi_enabled:
        raise HTTPException(status_code=404, detail="xAPI is disabled (VIDFARM_XAPI_ENABLED)")
    built = build_statements(session, runtime.settings, principal, body)
    ids = outbox.enqueue(session, built)
    return {"ids": ids}


@router.get("/api/v1/xapi/status")
def status(session: SessionDep, _: AnyAuth) -> dict[str, Any]:
    """Pending, delivered and dead counts; whether delivery is paused, and why."""
    return outbox.outbox_status(session).as_dict()


@router.get("/api/v1/xapi/dead")
def dead(
    session: SessionDep,
    _: AdminAuth,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    """Statements the LRS refused, with its reason, oldest first."""
    rows = outbox.list_dead(session, limit=limit, offset=offset)
    ids = sorted({r.video_id for r in rows if r.video_id})
    named = select(Video.id, func.coalesce(Video.title, Video.filename)).where(Video.id.in_(ids))
    titles = {video_id: title for video_id, title in session.execute(named)}
    items = [{**outbox.dead_view(r), "video_title": titles.get(r.video_id or "")} for r in rows]
    return {"items": items, "limit": limit, "offset": offset}


@router.post("/api/v1/xapi/dead/redeliver")
def redeliver(
    session: SessionDep,
    _: AdminAuth,
    ids: Annotated[list[str] | None, Body(embed=True, description="Some ids; all if none")] = None,
) -> dict[str, Any]:
    """Put dead statements back in the queue (after fixing the LRS or its schema)."""
    return {"redelivered": outbox.redeliver_dead(session, ids)}

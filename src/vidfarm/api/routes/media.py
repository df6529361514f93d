"""Media by signed URL (/media/s/...), the /playback links that mint them, and /videos/stream.

A signed URL is a capability: whoever holds it plays the video until it expires, from any
origin, with no token (hls.js on a platform's page, an <iframe> embed, a <video src>).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from vidfarm.api import access
from vidfarm.api.deps import MediaCaller, RuntimeDep, SessionDep, UserAuth
from vidfarm.api.event import EVENT_MASTER, event_playlist, is_event, running_encode
from vidfarm.api.media import PATH_PATTERN, resolve, serve
from vidfarm.api.published import publish_view
from vidfarm.api.signing import NGINX_PREFIX, PREFIX, BadSignature, MediaSigner, Signed
from vidfarm.api.views import output_view, playable_outputs
from vidfarm.errors import NotFound
from vidfarm.models import Output, Video, Visibility
from vidfarm.runtime import Runtime
from vidfarm.storage.base import content_type_for

router = APIRouter(tags=["media"])
_SUBTITLE = re.compile(r"^subtitle_(?:\d+_)?([A-Za-z0-9-]+)\.vtt$")
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def media_route(router: APIRouter, path: str, **options: Any) -> Callable[[Endpoint], Endpoint]:
    """GET and HEAD of a media path as two operations: one route with both methods gave
    both the same operationId in the schema, which client generators refuse."""

    def register(endpoint: Endpoint) -> Endpoint:
        router.get(path, **options)(endpoint)
        router.head(path, **options)(endpoint)
        return endpoint

    return register


def signer(request: Request) -> MediaSigner:
    return request.app.state.media_signer  # type: ignore[no-any-return]


def sign(request: Request, runtime: Runtime, video_id: str) -> Signed:
    return signer(request).sign(video_id, runtime.settings.media_url_seconds)


def _split(video_id: str, path: str) -> str:
    """The /videos/stream path a signed `<video>/<path>` names; only files of that video."""
    parts = path.split("/")
    if len(parts) == 2:
        return f"{video_id}/{path}"
    if len(parts) == 1 and parts[0].startswith(video_id):
        return path
    raise NotFound(f"no file {path}")


@media_route(
    router,
    PREFIX + "/{expires}/{signature}/{video_id}/{path:path}",
    responses={206: {}, 307: {}, 400: {}, 403: {}, 404: {}},
)
def signed_media(
    expires: str,
    signature: str,
    video_id: str,
    path: Annotated[str, Path(pattern=PATH_PATTERN)],
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    download: Annotated[bool, Query(description="Serve as an attachment.")] = False,
) -> Response:
    """A file of a video through a signed URL; relative playlist URIs keep the signature."""
    return _signed(request, runtime, session, (expires, signature, video_id, path), download)


@media_route(
    router,
    NGINX_PREFIX + "/{expires}/{signature}/{video_id}/{path:path}",
    responses={206: {}, 307: {}, 400: {}, 403: {}, 404: {}},
)
def nginx_signed_media(
    expires: str,
    signature: str,
    video_id: str,
    path: Annotated[str, Path(pattern=PATH_PATTERN)],
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    download: Annotated[bool, Query(description="Serve as an attachment.")] = False,
) -> Response:
    """The same with nginx's secure_link signature: what nginx serves, when it is not there."""
    url = (expires, signature, video_id, path)
    return _signed(request, runtime, session, url, download, scheme="nginx")


def _signed(
    request: Request,
    runtime: Runtime,
    session: Session,
    url: tuple[str, str, str, str],
    download: bool,
    *,
    scheme: str = "hmac",
) -> Response:
    expires, signature, video_id, path = url
    try:
        signer(request).verify(expires, signature, video_id, scheme=scheme)
    except BadSignature as error:
        raise HTTPException(status_code=403, detail=str(error)) from None
    parts = path.split("/")
    if len(parts) == 2 and is_event(parts[1]):  # playable early: written now, never cached
        text = event_playlist(session, runtime.storage, video_id, *parts)
        headers = {"Cache-Control": "no-cache"}
        return Response(text, media_type=content_type_for(parts[1]), headers=headers)
    found = resolve(session, _split(video_id, path))
    prefix = NGINX_PREFIX if scheme == "nginx" else PREFIX
    return serve(runtime.storage, found, base=f"{prefix}/{expires}/{signature}", download=download)


def legacy_media(
    request: Request,
    runtime: Runtime,
    session: Session,
    caller: MediaCaller,
    path: str,
    *,
    download: bool,
) -> Response:
    """/videos/stream and /videos/download: a token in a header, or a public video.

    A `?token=` (players that cannot set headers) is answered with a redirect to the signed
    URL: the playlist's relative URIs then inherit the signature instead of losing the token.
    """
    video_id = path[:32]
    access.check_media(session, caller.principal, video_id, public=runtime.settings.public_media)
    found = resolve(session, path)
    if caller.from_query:
        parts = path.split("/")
        rest = "/".join(parts[1:]) if len(parts) == 3 else path
        url = sign(request, runtime, video_id).url(rest)
        if signer(request).scheme == "nginx" and len(parts) == 3:
            publish_view(session, runtime.storage, video_id, [parts[1]])
        return RedirectResponse(url + ("?download=true" if download else ""), status_code=307)
    base = "/videos/download" if download else "/videos/stream"
    return serve(runtime.storage, found, base=base, download=download)


def _name(output: Output) -> str:
    return output.key.rsplit("/", 1)[-1]


def _language(output: Output) -> str:
    """ "subtitle_en.vtt" / "subtitle_0_eng.vtt" -> "en" / "eng"."""
    match = _SUBTITLE.match(_name(output))
    return match.group(1) if match else "und"


def _file(signed: Signed, base_url: str, output: Output) -> str:
    return base_url + signed.url(f"{output.job_id}/{_name(output)}")


def playback_links(
    request: Request, runtime: Runtime, session: Session, video: Video
) -> dict[str, Any]:
    """Signed URLs of everything a player needs: master, MP4s, subtitles, sprite, thumbnail."""
    signed = sign(request, runtime, video.id)
    base_url = str(request.base_url).rstrip("/")
    outputs = playable_outputs(session, video)
    if signer(request).scheme == "nginx":  # the files nginx serves without asking us
        publish_view(session, runtime.storage, video.id, (o.job_id for o in outputs))
    by_kind: dict[str, list[Output]] = {}
    for output in outputs:
        by_kind.setdefault(output.kind, []).append(output)

    def first(kind: str) -> str | None:
        found = by_kind.get(kind)
        return _file(signed, base_url, found[0]) if found else None

    master = first("hls_master")
    if master is None:  # playable early: the growing EVENT playlist (with nginx: not in
        encode = running_encode(session, video.id)  # its view, so vidfarm answers it)
        if encode is not None:
            master = f"{base_url}{signed.url(f'{encode.id}/{EVENT_MASTER}')}"
    mp4s = sorted(by_kind.get("mp4", []), key=lambda o: -(o.height or 0))
    subtitles = [o for o in by_kind.get("subtitle", []) if o.key.endswith(".vtt")]
    source = video.source_key.rsplit("/", 1)[-1]
    views = []
    for output in outputs:
        view = output_view(video.id, output)
        view["url"] = _file(signed, base_url, output)
        views.append(view)
    return {
        "video_id": video.id,
        "filename": video.filename,
        "duration": video.duration,
        "visibility": video.visibility,
        "expires_at": datetime.fromtimestamp(signed.expires, UTC).isoformat(),
        "master": master,
        "event": master is not None and first("hls_master") is None,
        "mp4": [{"height": o.height, "url": _file(signed, base_url, o)} for o in mp4s],
        "subtitles": [
            {"language": _language(o), "path": _name(o), "url": _file(signed, base_url, o)}
            for o in subtitles
        ],
        "sprite": first("overview_vtt"),
        "thumbnail": first("thumbnail"),
        "source": f"{base_url}{signed.url(source)}",
        "embed": None if video.visibility == Visibility.PRIVATE else f"{base_url}/embed/{video.id}",
        "outputs": views,
    }


@router.get("/api/v1/videos/{video_id}/playback", tags=["videos"], responses={404: {}})
def playback(
    video_id: str, request: Request, runtime: RuntimeDep, session: SessionDep, principal: UserAuth
) -> dict[str, Any]:
    """Signed, expiring URLs to play the video from any page: no token travels with them."""
    video = access.own_video(session, principal, video_id)
    return playback_links(request, runtime, session, video)

"""Routes of the dashboard: `/` (the page), `/ui/...` (its static files), `/api/v1/me`.

The pages are a static shell: every piece of data comes from the JSON API with the token the
user logged in with, so the API alone decides who may do what.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse, RedirectResponse, Response

from vidfarm.api.deps import AnyAuth, RuntimeDep, SessionDep
from vidfarm.api.web.assets import HLS_JS, VENDOR_DIR
from vidfarm.auth import revoke_token
from vidfarm.errors import NotFound
from vidfarm.media.profiles import available_profiles
from vidfarm.models import JobStatus, JobType

STATIC_DIR = Path(__file__).resolve().parent / "static"
#: One plain file name per request: no folders, so no path can leave STATIC_DIR.
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\.(js|css|html|svg)$")
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}


def csp(frame_ancestors: str) -> str:
    """Scripts only from this server (no inline code); media and images may come from an
    object store's presigned URLs; hls.js runs its transmuxer in a blob: worker. Who may put
    the page in a frame: nobody for the dashboard, a setting for /embed/ pages."""
    return "; ".join(
        (
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data: blob: http: https:",
            "media-src 'self' blob: http: https:",
            "connect-src 'self' http: https:",
            "worker-src 'self' blob:",
            f"frame-ancestors {frame_ancestors}",
            "base-uri 'none'",
            "form-action 'self'",
        )
    )


def page_headers(frame_ancestors: str = "'none'") -> dict[str, str]:
    return {
        "Cache-Control": "no-cache",  # revalidate (ETag) so an upgrade shows at once
        "Content-Security-Policy": csp(frame_ancestors),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "same-origin",
    }


HEADERS = page_headers()

router = APIRouter(tags=["dashboard"])


def _file(path: Path) -> FileResponse:
    if not path.is_file():
        raise NotFound(f"no file {path.name}")
    return FileResponse(path, media_type=MEDIA_TYPES.get(path.suffix), headers=HEADERS)


@router.get("/", include_in_schema=False)
def index() -> FileResponse:
    """The dashboard (one page; the part after `#` picks the view)."""
    return _file(STATIC_DIR / "index.html")


@router.get("/ui", include_in_schema=False)
def ui_root() -> RedirectResponse:
    return RedirectResponse("/", status_code=307)


@router.get("/ui/static/{name}", include_in_schema=False, responses={404: {}})
def static(name: str) -> FileResponse:
    if not _NAME.match(name):
        raise NotFound(f"no file {name}")
    return _file(STATIC_DIR / name)


@router.get("/ui/vendor/hls.min.js", include_in_schema=False, responses={404: {}})
def hls_js() -> FileResponse:
    """hls.js when the build step fetched it; a 404 makes the player fall back to MP4."""
    path = VENDOR_DIR / HLS_JS
    if not path.is_file():
        raise NotFound("hls.js is not installed (run: python -m vidfarm.api.web.assets)")
    return FileResponse(path, media_type=MEDIA_TYPES[".js"], headers=HEADERS)


@router.get("/api/v1/me")
def me(runtime: RuntimeDep, principal: AnyAuth) -> dict[str, Any]:
    """Who the token is, and what the dashboard needs to know about this server."""
    settings = runtime.settings
    return {
        "name": principal.name,
        "role": principal.role.value if principal.role else None,
        "token_id": principal.token_id,
        "server": {
            "xapi_enabled": settings.xapi_enabled,
            "public_media": settings.public_media,
            "max_upload_bytes": settings.max_upload_bytes,
            "hls_js": (VENDOR_DIR / HLS_JS).is_file(),
            "job_statuses": [s.value for s in JobStatus],
            "job_types": [t.value for t in JobType],
            # "Encode again" offers these; the runners page says when managers are unused.
            "profiles": sorted(available_profiles(settings.user_profiles_dir)),
            "transport": settings.transport,
        },
    }


@router.post("/api/v1/me/revoke", status_code=204, responses={401: {}})
def revoke_me(session: SessionDep, principal: AnyAuth) -> Response:
    """Log out everywhere: revoke the calling token (every browser that remembered it)."""
    if principal.token_id is None:  # pragma: no cover - AnyAuth always names a token
        raise NotFound("this caller has no token to revoke")
    revoke_token(session, principal.token_id)
    return Response(status_code=204)

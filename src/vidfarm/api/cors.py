"""CORS: a platform's own pages load media and call the API from another origin.

Two Starlette CORSMiddleware policies, chosen by path: media (signed URLs, /videos/stream,
/embed) may allow `*` (a signed URL is the authorisation, not the origin); the API gets the
listed origins only, never `*`. No cookies are involved, so credentials are never allowed.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

MEDIA_PATHS = ("/media/", "/videos/stream/", "/videos/download/", "/embed/")
#: What hls.js and a seeking <video> need to read: byte ranges and their answers.
EXPOSED = ["Content-Range", "Content-Length", "Accept-Ranges", "Content-Type"]
REQUEST_HEADERS = ["Authorization", "X-API-Token", "Range", "Content-Type", "Accept"]


class SplitCORS:
    """Apply the media policy under MEDIA_PATHS and the API policy everywhere else."""

    def __init__(self, app: ASGIApp, *, origins: list[str]) -> None:
        self.media = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=["GET", "HEAD", "OPTIONS"],
            allow_headers=REQUEST_HEADERS,
            expose_headers=EXPOSED,
            max_age=600,
        )
        self.api = CORSMiddleware(
            app,
            allow_origins=[origin for origin in origins if origin != "*"],
            allow_methods=["GET", "HEAD", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=REQUEST_HEADERS,
            expose_headers=EXPOSED,
            max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        media = scope["type"] == "http" and str(scope.get("path", "")).startswith(MEDIA_PATHS)
        await (self.media if media else self.api)(scope, receive, send)

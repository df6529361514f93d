"""FastAPI dependencies: the runtime, a database session, and who is calling (by role).

Routes declare what they need with an alias: ``AdminAuth``, ``UserAuth`` (upload, submit),
``WorkerAuth`` (worker reports), ``AnyAuth``, ``MediaAuth`` (published media). A token comes
from ``Authorization: Bearer <token>`` or ``X-API-Token: <token>``. For /videos/stream only,
a legacy ``?token=`` is still accepted, and answered with a redirect to a signed URL
(`vidfarm.api.signing`): players should use the signed URLs of ``/playback`` instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated, cast

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from vidfarm.auth import Role, allows, verify_token
from vidfarm.runtime import Runtime

MISSING_DETAIL = "missing API token"
INVALID_DETAIL = "invalid API token"


def get_runtime(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_session(runtime: RuntimeDep) -> Iterator[Session]:
    with runtime.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a token's id, name and role, or nobody (public media)."""

    token_id: str | None
    name: str
    role: Role | None

    @property
    def anonymous(self) -> bool:
        return self.token_id is None

    def allows(self, needed: Role) -> bool:
        return allows(self.role, needed)


ANONYMOUS = Principal(token_id=None, name="anonymous", role=None)

# auto_error=False: we answer missing and invalid tokens ourselves, with one message each.
# These also make the OpenAPI page offer the three ways to send a token.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer vf_...")
_header = APIKeyHeader(name="X-API-Token", auto_error=False, description="X-API-Token: vf_...")
_query = APIKeyQuery(name="token", auto_error=False, description="?token=vf_... (media only)")

BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
HeaderToken = Annotated[str | None, Depends(_header)]
QueryToken = Annotated[str | None, Depends(_query)]


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status_code=status.HTTP_401_UNAUTHORIZED,
        detail=detail,
        headers={"WWW-Authenticate": "Bearer"},
    )


def presented_token(*candidates: str | None) -> str | None:
    for candidate in candidates:
        if candidate and candidate.strip():
            return candidate.strip()
    return None


def authenticate(runtime: Runtime, plaintext: str | None) -> Principal:
    """Check a token in a short session of its own: the route's session stays untouched."""
    if plaintext is None:
        raise unauthorized(MISSING_DETAIL)
    with runtime.sessions() as session:
        token = verify_token(session, plaintext)
        if token is None:
            raise unauthorized(INVALID_DETAIL)
        return Principal(token_id=token.id, name=token.name, role=Role(token.role))


def _require(principal: Principal, needed: Role) -> Principal:
    if not principal.allows(needed):
        raise HTTPException(
            status_code=status.HTTP_403_FORBIDDEN, detail=f"this action needs the {needed} role"
        )
    return principal


def any_token(runtime: RuntimeDep, bearer: BearerCredentials, header: HeaderToken) -> Principal:
    return authenticate(runtime, presented_token(bearer.credentials if bearer else None, header))


AnyAuth = Annotated[Principal, Depends(any_token)]


def admin_token(principal: AnyAuth) -> Principal:
    return _require(principal, Role.ADMIN)


def user_token(principal: AnyAuth) -> Principal:
    return _require(principal, Role.USER)


def worker_token(principal: AnyAuth) -> Principal:
    return _require(principal, Role.WORKER)


@dataclass(frozen=True, slots=True)
class MediaCaller:
    """Who asks for a media file: ANONYMOUS when no token came, and whether it came in `?token=`."""

    principal: Principal
    from_query: bool = False


def media_access(
    runtime: RuntimeDep, bearer: BearerCredentials, header: HeaderToken, query: QueryToken
) -> MediaCaller:
    """A token is optional here (public media and public videos need none); a bad one is 401.

    Whether the caller may read the file is decided by `access.check_media` once the path
    names a video.
    """
    if runtime.settings.public_media:
        return MediaCaller(ANONYMOUS)
    in_header = presented_token(bearer.credentials if bearer else None, header)
    in_query = presented_token(query)
    if in_header is None and in_query is None:
        return MediaCaller(ANONYMOUS)
    return MediaCaller(authenticate(runtime, in_header or in_query), from_query=not in_header)


AdminAuth = Annotated[Principal, Depends(admin_token)]
UserAuth = Annotated[Principal, Depends(user_token)]
WorkerAuth = Annotated[Principal, Depends(worker_token)]
MediaAuth = Annotated[MediaCaller, Depends(media_access)]

"""Errors as HTTP answers, for every vidfarm app (the API and the runner manager).

One line of JSON, `{"detail": "..."}`, the status from the error's class, never a traceback.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from vidfarm.errors import (
    InvalidMedia,
    InvalidParameters,
    InvalidTransition,
    JobNotFound,
    NotFound,
    OutOfSpace,
    StaleAttempt,
    TooLarge,
    VidfarmError,
    out_of_space,
)

log = logging.getLogger(__name__)

#: HTTP status for each error class (the first match in the class's MRO wins).
STATUS: dict[type[Exception], int] = {
    TooLarge: 413,
    InvalidMedia: 415,
    NotFound: 404,
    JobNotFound: 404,
    InvalidTransition: 409,
    StaleAttempt: 409,
    InvalidParameters: 422,
    OutOfSpace: 507,
}


def status_for(error: VidfarmError, extra: Mapping[type[Exception], int] | None = None) -> int:
    table = {**STATUS, **(extra or {})}
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return 422 if error.permanent else 503


def install_error_handlers(
    app: FastAPI, extra: Mapping[type[Exception], int] | None = None
) -> None:
    """Map errors to one-line answers; `extra` adds an app's own error classes."""

    @app.exception_handler(VidfarmError)
    async def vidfarm_error(_: Request, error: VidfarmError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status_for(error, extra))

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": str(error.detail)},
            status_code=error.status_code,
            headers=getattr(error, "headers", None),
        )

    @app.exception_handler(DataError)
    async def refused_by_database(request: Request, error: DataError) -> JSONResponse:
        # PostgreSQL refuses some values SQLite takes (a NUL character in text, say).
        log.info("database refused a value on %s %s: %s", request.method, request.url.path, error)
        return JSONResponse({"detail": "a value in the request is not valid"}, status_code=422)

    @app.middleware("http")
    async def refuse_nul(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        """A NUL character has no business in a URL; PostgreSQL cannot even store it."""
        if "\x00" in request.url.path or b"%00" in request.scope.get("query_string", b""):
            return JSONResponse({"detail": "NUL characters are not allowed in URLs"}, 400)
        return await call_next(request)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        full = out_of_space(error)  # ENOSPC from a write, "database or disk is full"
        if full is not None:
            log.error("%s %s: %s", request.method, request.url.path, full)
            return JSONResponse({"detail": f"insufficient storage: {full}"}, status_code=507)
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error (see the server log)"}, status_code=500)

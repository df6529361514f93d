"""The HTTP application served by `vidfarm serve`; the embedded farm runs beside it."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from vidfarm import __version__
from vidfarm.api.routes import (
    health,
    jobs,
    runner_webhook,
    runners,
    seed,
    transcribe,
    videos,
    worker,
    workers,
    xapi,
)
from vidfarm.api.uploads import NotMultipart, UploadInterrupted
from vidfarm.api.web import router as web
from vidfarm.errors import (
    InvalidMedia,
    InvalidParameters,
    InvalidTransition,
    JobNotFound,
    NotFound,
    StaleAttempt,
    TooLarge,
    VidfarmError,
)
from vidfarm.runtime import Runtime

log = logging.getLogger(__name__)

#: HTTP status for each error class (the first match in the class's MRO wins).
STATUS = {
    TooLarge: 413,
    NotMultipart: 415,
    InvalidMedia: 415,
    UploadInterrupted: 400,
    NotFound: 404,
    JobNotFound: 404,
    InvalidTransition: 409,
    StaleAttempt: 409,
    InvalidParameters: 422,
}


def status_for(error: VidfarmError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 422 if error.permanent else 503


def create_app(runtime: Runtime, *, run_farm: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if run_farm:
            runtime.start_farm()
        try:
            yield
        finally:
            runtime.stop_farm()

    app = FastAPI(
        title="vidfarm",
        version=__version__,
        summary="Adaptive-streaming encodes, job control and media delivery.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    for router in (
        health.router,
        seed.router,
        videos.router,
        transcribe.router,
        jobs.router,
        xapi.router,
        worker.router,
        workers.router,
        runners.router,
        runner_webhook.router,
        web.router,  # the dashboard at /, /ui/* and /api/v1/me
    ):
        app.include_router(router)

    @app.exception_handler(VidfarmError)
    async def vidfarm_error(_: Request, error: VidfarmError) -> JSONResponse:
        return JSONResponse({"detail": str(error)}, status_code=status_for(error))

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
    async def refuse_nul(request: Request, call_next: Any) -> Any:
        """A NUL character has no business in a URL; PostgreSQL cannot even store it."""
        if "\x00" in request.url.path or b"%00" in request.scope.get("query_string", b""):
            return JSONResponse({"detail": "NUL characters are not allowed in URLs"}, 400)
        return await call_next(request)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error (see the server log)"}, status_code=500)

    return app

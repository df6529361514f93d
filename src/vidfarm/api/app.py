"""The HTTP application served by `vidfarm serve`; the embedded farm runs beside it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from vidfarm import __version__
from vidfarm.api import docs_page, openapi, redact
from vidfarm.api.cors import SplitCORS
from vidfarm.api.errors import install_error_handlers
from vidfarm.api.routes import (
    embed,
    health,
    jobs,
    media,
    runner_webhook,
    runners,
    seed,
    transcribe,
    videos,
    worker,
    workers,
    xapi,
)
from vidfarm.api.signing import MediaSigner, load_key
from vidfarm.api.uploads import NotMultipart, UploadInterrupted
from vidfarm.api.web import router as web
from vidfarm.runtime import Runtime


def create_app(runtime: Runtime, *, run_farm: bool = True) -> FastAPI:
    redact.install()  # before the first request: no token or signature in any log line

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
        docs_url=None,  # docs_page.py serves it under a Content-Security-Policy
    )
    app.state.runtime = runtime
    settings = runtime.settings
    key = load_key(settings.media_signing_key.get_secret_value(), settings.data_dir)
    app.state.media_signer = MediaSigner(key, settings.media_url_scheme)
    for router in (
        health.router,
        seed.router,
        media.router,  # before videos: /api/v1/videos/{id}/playback
        embed.router,
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

    install_error_handlers(app, {NotMultipart: 415, UploadInterrupted: 400})
    openapi.install(app)
    docs_page.install(app)
    if settings.cors_origins:
        app.add_middleware(SplitCORS, origins=settings.cors_origins)
    return app

"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from sqlalchemy import text

from vidfarm.api.deps import (
    BearerCredentials,
    HeaderToken,
    RuntimeDep,
    authenticate,
    presented_token,
)
from vidfarm.errors import VidfarmError
from vidfarm.metrics import render_metrics
from vidfarm.runtime import Runtime
from vidfarm.scratch import short_of_space

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "a dependency is down"}})
def readyz(runtime: RuntimeDep) -> Any:
    """The database, the media store and the broker can be used now."""
    checks: dict[str, str] = {}
    try:
        with runtime.sessions() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # any driver error means "not ready", with its first line
        checks["database"] = str(error).splitlines()[0]
    try:
        runtime.storage.check()
        checks["storage"] = "ok"
    except VidfarmError as error:
        checks["storage"] = str(error)
    checks["disk"] = _free_space(runtime)
    broker = _broker(runtime)
    warnings: list[str] = []
    if broker is None:
        checks["broker"] = "embedded (no broker configured)"
    else:
        checks["broker"], warnings = broker
    ready = all(v == "ok" for k, v in checks.items() if k != "broker" or broker)
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", "checks": checks}
    body["leader"] = runtime.leading  # runs the reconciler now (one replica at a time)
    if warnings:
        body["warnings"] = warnings
    return JSONResponse(body, status_code=200 if ready else 503)


def _free_space(runtime: Runtime) -> str:
    """`ok`, or which folder has less free space than VIDFARM_MIN_FREE_BYTES."""
    settings = runtime.settings
    return short_of_space(settings.data_dir, settings.min_free_bytes) or "ok"


def _broker(runtime: Runtime) -> tuple[str, list[str]] | None:
    """The Celery broker as the dispatcher last found it (checked every few seconds)."""
    from vidfarm.dispatch.celery import CeleryDispatcher

    if isinstance(runtime.dispatcher, CeleryDispatcher):
        return runtime.dispatcher.broker_health()
    return None


@router.get("/metrics", response_class=Response, responses={401: {}})
def metrics(runtime: RuntimeDep, bearer: BearerCredentials, header: HeaderToken) -> Response:
    """Prometheus exposition, computed from SQL (the truth) at scrape time.

    Any valid token may scrape it; VIDFARM_METRICS_PUBLIC=true opens it to all.
    """
    if not runtime.settings.metrics_public:
        authenticate(runtime, presented_token(bearer.credentials if bearer else None, header))
    payload, content_type = render_metrics(runtime.sessions)
    return Response(content=payload, media_type=content_type)

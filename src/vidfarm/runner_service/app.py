"""The runner manager's HTTP API: Esup-Runner's client endpoints, as Esup-Pod calls them.

Every endpoint but `/api/health` and `/api/version` needs a configured runner token, sent as
`Authorization: Bearer <token>` or `X-API-Token: <token>`. Errors are one line of JSON:
`{"detail": "..."}`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any, cast

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from vidfarm import __version__
from vidfarm.api import redact
from vidfarm.api.errors import install_error_handlers
from vidfarm.runner_service import results, status_page, tasks, tokens
from vidfarm.runner_service.service import RunnerService
from vidfarm.storage.base import content_type_for
from vidfarm.urlguard import redact_url

log = logging.getLogger(__name__)


def get_service(request: Request) -> RunnerService:
    return cast(RunnerService, request.app.state.service)


ServiceDep = Annotated[RunnerService, Depends(get_service)]


def get_session(service: ServiceDep) -> Iterator[Session]:
    with service.runtime.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <runner token>")
_header = APIKeyHeader(name="X-API-Token", auto_error=False, description="X-API-Token")


def client_token(
    service: ServiceDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header: Annotated[str | None, Depends(_header)],
) -> str:
    """The SHA-256 of the configured token the caller sent (401 none, 403 a wrong one)."""
    presented = (bearer.credentials if bearer else None) or header
    if not presented:
        raise HTTPException(
            status_code=401, detail="missing token", headers={"WWW-Authenticate": "Bearer"}
        )
    found = tokens.match(service.settings.runner_tokens, presented.strip())
    if found is None:
        raise HTTPException(status_code=403, detail="invalid token")
    return found


TokenDep = Annotated[str, Depends(client_token)]


def create_runner_app(service: RunnerService, *, run_farm: bool = True) -> FastAPI:
    runtime = service.runtime
    redact.install()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if run_farm:
            runtime.start_farm()
        service.start()
        try:
            yield
        finally:
            service.stop()
            if run_farm:
                runtime.stop_farm()

    app = FastAPI(
        title="vidfarm runner",
        version=__version__,
        summary="A runner manager speaking the Esup-Runner protocol, for Esup-Pod.",
        lifespan=lifespan,
    )
    app.state.service = service

    @app.post("/task/execute")
    def execute(
        body: tasks.TaskRequest, service: ServiceDep, session: SessionDep, token: TokenDep
    ) -> dict[str, str]:
        """Accept a task (or return the identical one in flight); 503 when no slot is free."""
        task, created = tasks.submit(
            session, service.settings, body, token_sha256=token, capacity=service.capacity
        )
        if created:
            # The source URL often carries a secret (a signed link): log its origin only.
            log.info(
                "task %s accepted: %s of %s", task.id, task.task_type, redact_url(task.source_url)
            )
            service.wake()
        return {"task_id": task.id, "status": tasks.RUNNING}

    @app.get("/task/status/{task_id}")
    def task_status(task_id: str, session: SessionDep, token: TokenDep) -> dict[str, Any]:
        return tasks.view(session, tasks.get_task(session, task_id, token_sha256=token))

    @app.get("/task/list")
    def task_list(
        session: SessionDep, token: TokenDep, status: str | None = None, limit: int = 200
    ) -> dict[str, Any]:
        """The caller's own tasks (each client token sees only what it submitted)."""
        found = tasks.list_tasks(
            session, status=status, limit=max(1, min(limit, 1000)), token_sha256=token
        )
        return {"tasks": [tasks.view(session, task) for task in found]}

    @app.get("/task/result/{task_id}")
    def task_result(
        task_id: str, service: ServiceDep, session: SessionDep, token: TokenDep
    ) -> dict[str, Any]:
        task = tasks.get_task(session, task_id, token_sha256=token)
        files = results.result_files(session, service.runtime.storage, task)
        return {"task_id": task.id, "files": [item.manifest_entry() for item in files]}

    @app.get("/task/result/{task_id}/file/{path:path}")
    def task_file(
        task_id: str, path: str, service: ServiceDep, session: SessionDep, token: TokenDep
    ) -> Response:
        task = tasks.get_task(session, task_id, token_sha256=token)
        item = results.find_file(results.result_files(session, service.runtime.storage, task), path)
        headers = {"X-Checksum-SHA256": item.sha256}
        media_type = content_type_for(item.path)
        if item.content is not None:
            return Response(item.content, media_type=media_type, headers=headers)
        assert item.key is not None
        handle = service.runtime.storage.open(item.key)

        def blocks() -> Iterator[bytes]:
            with handle:
                while block := handle.read(1 << 20):
                    yield block

        headers["Content-Length"] = str(item.size)
        return StreamingResponse(blocks(), media_type=media_type, headers=headers)

    @app.post("/task/stop/{task_id}", status_code=202)
    def task_stop(
        task_id: str, service: ServiceDep, session: SessionDep, token: TokenDep
    ) -> dict[str, str]:
        tasks.get_task(session, task_id, token_sha256=token)  # another client's: 404
        service.forget_download(task_id)
        task = tasks.stop(session, task_id, token_sha256=token)
        service.notifier.wake()
        return {"task_id": task.id, "status": task.status}

    @app.get("/manager/health")
    def manager_health(service: ServiceDep, session: SessionDep, _: TokenDep) -> dict[str, Any]:
        """What Pod's "Test connection" calls: the token works and the runner answers."""
        running = tasks.active_count(session)
        return {
            "status": "ok",
            "capacity": service.capacity,
            "running": running,
            "available": max(0, service.capacity - running),
            "version": __version__,
            # A vidfarm control plane sends chunks and stitches only to a manager saying so.
            "task_types": sorted(tasks.TASK_TYPES),
        }

    @app.get("/admin", response_class=HTMLResponse, include_in_schema=False)
    def admin_page(service: ServiceDep, session: SessionDep) -> HTMLResponse:
        """Where Pod's admin links to: version, capacity, tasks by status (read-only)."""
        page = status_page.render(
            version=__version__,
            capacity=service.capacity,
            running=tasks.active_count(session),
            counts=tasks.status_counts(session),
        )
        headers = {"Content-Security-Policy": status_page.CONTENT_SECURITY_POLICY}
        return HTMLResponse(page, headers=headers)

    @app.get("/api/health")
    def api_health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/api/version")
    def api_version() -> dict[str, str]:
        return {"name": "vidfarm runner", "version": __version__, "protocol": "esup-runner"}

    install_error_handlers(app, {tasks.NoCapacity: 503, tasks.NotFinished: 425})

    return app

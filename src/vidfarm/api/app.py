"""The HTTP application served by `vidfarm serve`: health and a read-only view of jobs.

The full REST API (uploads, media, auth) grows here; the embedded farm runs beside it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from sqlalchemy import text
from sqlalchemy.orm import Session

from vidfarm import __version__, jobs
from vidfarm.errors import JobNotFound
from vidfarm.models import Job
from vidfarm.runtime import Runtime


def job_view(session: Session, job: Job) -> dict[str, Any]:
    position, waiting = jobs.rank(session, job.id)
    return {
        "id": job.id,
        "type": job.type,
        "video_id": job.video_id,
        "status": job.status,
        "progress": round(job.progress, 1),
        "step": job.step,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "priority": job.priority,
        "rank": position,
        "waiting": waiting,
        "error": job.error,
        "error_class": job.error_class,
        "created_at": job.created_at.isoformat(),
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
    }


def get_session(request: Request) -> Iterator[Session]:
    with request.app.state.runtime.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session)]


def create_app(runtime: Runtime, *, run_farm: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if run_farm:
            runtime.start_farm()
        try:
            yield
        finally:
            runtime.stop_farm()

    app = FastAPI(title="vidfarm", version=__version__, lifespan=lifespan)
    app.state.runtime = runtime

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz(db: SessionDep) -> dict[str, str]:
        db.execute(text("SELECT 1"))
        return {"status": "ready"}

    @app.get("/api/v1/jobs")
    def list_jobs(
        db: SessionDep,
        status: str | None = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[dict[str, Any]]:
        return [
            job_view(db, job)
            for job in jobs.list_jobs(db, status=status, limit=limit, offset=offset)
        ]

    @app.get("/api/v1/jobs/{job_id}")
    def get_job(job_id: str, db: SessionDep) -> dict[str, Any]:
        try:
            return job_view(db, jobs.get_job(db, job_id))
        except JobNotFound:
            raise HTTPException(status_code=404, detail=f"no job {job_id}") from None

    return app

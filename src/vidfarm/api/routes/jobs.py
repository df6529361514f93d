"""/api/v1/jobs: list and filter, detail, cancel, restart, and a live event stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sse_starlette import EventSourceResponse, ServerSentEvent

from vidfarm import jobs, videos
from vidfarm.api import access
from vidfarm.api.deps import AdminAuth, Principal, RuntimeDep, SessionDep, UserAuth
from vidfarm.api.views import MAX_OFFSET, job_view, job_views
from vidfarm.models import JobStatus

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])
HEARTBEAT_SECONDS = 15
RECONNECT_MILLISECONDS = 2000


@router.get("")
def list_jobs(
    session: SessionDep,
    principal: UserAuth,
    status: Annotated[list[JobStatus] | None, Query(description="Any of these states.")] = None,
    type: Annotated[str | None, Query()] = None,
    video_id: Annotated[str | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict[str, Any]:
    """Jobs, newest first, filtered by state, type or video."""
    found = access.list_jobs(
        session,
        principal,
        status=[s.value for s in status] if status else None,
        job_type=type,
        video_id=video_id,
        limit=limit,
        offset=offset,
    )
    return {"items": job_views(session, found), "limit": limit, "offset": offset}


@router.get("/events", responses={404: {}})
async def events(
    runtime: RuntimeDep,
    principal: UserAuth,
    job_id: Annotated[list[str] | None, Query(description="Jobs to follow; all if none")] = None,
) -> EventSourceResponse:
    """Server-Sent Events: one `job` event each time a job's state or progress changes.

    Following given jobs, the stream ends once they are all final; it also ends when the
    server stops, and the browser's EventSource comes back after `retry`.
    """
    interval = max(0.2, min(runtime.settings.poll_seconds, 1.0))
    if job_id:
        with runtime.sessions() as session:
            for one in job_id:
                access.own_job(session, principal, one)  # unknown: a 404 before the stream

    async def stream() -> AsyncIterator[ServerSentEvent]:
        seen: dict[str, tuple[str, float, str | None]] = {}
        yield ServerSentEvent(retry=RECONNECT_MILLISECONDS)
        while True:
            changed, all_final = await asyncio.to_thread(_changes, runtime, principal, job_id, seen)
            for view in changed:
                yield ServerSentEvent(json.dumps(view), event="job", id=view["id"])
            if job_id and all_final:
                yield ServerSentEvent("{}", event="end")
                return
            await asyncio.sleep(interval)

    # sse-starlette ends the stream when the client goes, and when the server is asked to
    # stop: a dashboard left open no longer holds a replica's shutdown for its 30 s grace,
    # and the browser reconnects (to another replica, or to this one once it is back).
    return EventSourceResponse(
        stream(),
        ping=HEARTBEAT_SECONDS,
        sep="\n",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def _changes(
    runtime: Any,
    principal: Principal,
    job_ids: list[str] | None,
    seen: dict[str, tuple[str, float, str | None]],
) -> tuple[list[dict[str, Any]], bool]:
    with runtime.sessions() as session:
        if job_ids:  # a job deleted meanwhile (with its video) simply drops out
            found = access.list_jobs(session, principal, job_ids=job_ids, limit=len(job_ids))
        else:
            found = access.list_jobs(session, principal, limit=200)
        changed = []
        for job in found:
            key = (job.status, round(job.progress, 1), job.step)
            if seen.get(job.id) != key:
                seen[job.id] = key
                changed.append(job)
        return job_views(session, changed), all(JobStatus(j.status).is_final for j in found)


@router.get("/{job_id}", responses={404: {}})
def get_job(job_id: str, session: SessionDep, principal: UserAuth) -> dict[str, Any]:
    """One job: progress, step, attempts, error, log tail, rank and total waiting."""
    return job_view(session, access.own_job(session, principal, job_id), detail=True)


@router.post("/{job_id}/cancel", responses={404: {}, 409: {}})
def cancel_job(job_id: str, session: SessionDep, principal: UserAuth) -> dict[str, Any]:
    """Cancel a waiting or running job (a running worker stops at its next report)."""
    access.own_job(session, principal, job_id)
    return job_view(session, jobs.cancel(session, job_id), detail=True)


@router.post("/{job_id}/restart", responses={404: {}, 409: {}})
def restart_job(
    job_id: str, runtime: RuntimeDep, session: SessionDep, _: AdminAuth
) -> dict[str, Any]:
    """Run a failed, timed-out, cancelled or completed job again from scratch (a chunked
    encode in chunks again; a chunk alone is not restarted: its encode is)."""
    job = videos.restart_job(session, runtime.settings, runtime.storage, job_id)
    runtime.dispatch([job.id, *(c.id for c in jobs.children_of(session, job.id))])
    return job_view(session, job, detail=True)

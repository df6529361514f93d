"""/api/v1/workers: who is working right now (the embedded pool, or Celery workers online)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy import func, select

from vidfarm.api.deps import AdminAuth, RuntimeDep, SessionDep
from vidfarm.models import Job, Video

router = APIRouter(prefix="/api/v1/workers", tags=["workers"])


@router.get("")
def list_workers(runtime: RuntimeDep, session: SessionDep, _: AdminAuth) -> dict[str, Any]:
    """Workers with their running jobs; Celery workers are asked by broadcast (1 s)."""
    transport = runtime.settings.transport
    workers = runtime.dispatcher.workers() if runtime.dispatcher is not None else []
    ids = [item["job_id"] for worker in workers for item in worker["active"] if item["job_id"]]
    known = {
        row.id: row
        for row in session.execute(
            select(
                Job.id,
                Job.type,
                Job.progress,
                Job.step,
                func.coalesce(Video.title, Video.filename).label("video_title"),
            )
            .outerjoin(Video, Video.id == Job.video_id)
            .where(Job.id.in_(ids))
        )
    }
    for worker in workers:
        for item in worker["active"]:
            row = known.get(item["job_id"])
            item.update(
                type=row.type if row else None,
                progress=row.progress if row else None,
                step=row.step if row else None,
                video_title=row.video_title if row else None,
            )
    return {"transport": transport, "workers": workers}

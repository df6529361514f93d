"""/api/v1/worker: how autonomous workers (Celery) claim a job and report on it over HTTP.

Remote workers never touch the database (ARCHITECTURE.md, invariant 3). Every report carries
the attempt's fencing token; a report from an attempt that is no longer current is a 409, so
a stale or duplicated worker cannot overwrite a newer attempt.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from vidfarm import __version__, jobs
from vidfarm.api.deps import RuntimeDep, SessionDep, WorkerAuth
from vidfarm.claims import OutputRecord
from vidfarm.errors import InvalidTransition, StaleAttempt, error_from_report
from vidfarm.models import JobStatus
from vidfarm.xapi import delivery, outbox

router = APIRouter(prefix="/api/v1/worker", tags=["worker"])

Token = Annotated[int, Field(ge=0, description="The attempt's fencing token")]


class ClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    worker_id: Annotated[str, Field(min_length=1, max_length=128)]


class ProgressReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fencing_token: Token
    percent: Annotated[float, Field(ge=0, le=100)]
    step: Annotated[str, Field(max_length=64)] = ""


class OutputItem(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Annotated[str, Field(max_length=32)]
    key: Annotated[str, Field(max_length=1024)]
    size: Annotated[int, Field(ge=0)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    width: int | None = None
    height: int | None = None
    bandwidth: int | None = None
    codecs: Annotated[str | None, Field(max_length=128)] = None


class CompletionReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fencing_token: Token
    result: dict[str, Any]
    outputs: list[OutputItem]


class FailureReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fencing_token: Token
    error_class: Annotated[str, Field(min_length=1, max_length=64)]
    message: Annotated[str, Field(max_length=4000)]
    permanent: bool
    log_tail: Annotated[list[str], Field(max_length=200)] = []


class ReleaseReport(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fencing_token: Token


class XapiClaimRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    limit: Annotated[int, Field(ge=1, le=1000)]


class XapiResult(BaseModel):
    model_config = ConfigDict(extra="forbid")
    outcome: outbox.Outcome
    status: int
    reason: Annotated[str, Field(max_length=2000)] = ""


class XapiRecordRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    results: dict[str, XapiResult]


@router.get("/ping")
def ping(runtime: RuntimeDep, principal: WorkerAuth) -> dict[str, Any]:
    """A worker checks at start that it can reach the API with its token, and learns the lease."""
    return {
        "ok": True,
        "version": __version__,
        "worker": principal.name,
        "lease_seconds": runtime.settings.lease_seconds,
    }


@router.post("/jobs/{job_id}/claim", responses={404: {}, 409: {}})
def claim(
    job_id: str, body: ClaimRequest, runtime: RuntimeDep, session: SessionDep, _: WorkerAuth
) -> dict[str, Any]:
    """queued → running for this worker; 409 when the job is no longer queued (a duplicate)."""
    found = jobs.claim_job(
        session, job_id, worker_id=body.worker_id, lease_seconds=runtime.settings.lease_seconds
    )
    if found is None:
        status = jobs.get_job(session, job_id).status
        raise InvalidTransition(f"job {job_id} is not queued (status {status})")
    return {
        "job_id": found.job_id,
        "job_type": found.job_type,
        "video_id": found.video_id,
        "source_key": found.source_key,
        "params": found.params,
        "attempt": found.attempt,
        "fencing_token": found.fencing_token,
        "lease_seconds": runtime.settings.lease_seconds,
    }


@router.post("/jobs/{job_id}/progress", responses={404: {}, 409: {}})
def progress(
    job_id: str, body: ProgressReport, runtime: RuntimeDep, session: SessionDep, _: WorkerAuth
) -> dict[str, bool]:
    """Renew the lease; `continue: false` means the job was cancelled: stop now."""
    alive = jobs.heartbeat(
        session,
        job_id,
        body.fencing_token,
        progress=body.percent,
        step=body.step or None,
        lease_seconds=runtime.settings.lease_seconds,
    )
    return {"continue": alive}


@router.post("/jobs/{job_id}/complete", responses={404: {}, 409: {}})
def complete(
    job_id: str, body: CompletionReport, session: SessionDep, _: WorkerAuth
) -> dict[str, str]:
    """Accept the attempt's outputs once; a repeated report of the accepted attempt is a 200."""
    records = [OutputRecord(**item.model_dump()) for item in body.outputs]
    try:
        job = jobs.complete(session, job_id, body.fencing_token, body.result, records)
    except StaleAttempt:
        session.rollback()
        current = jobs.get_job(session, job_id)
        if current.status == JobStatus.COMPLETED and current.fencing_token == body.fencing_token:
            return {"status": current.status}  # our answer to the first report was lost
        raise
    return {"status": job.status}


@router.post("/jobs/{job_id}/fail", responses={404: {}, 409: {}})
def fail(
    job_id: str, body: FailureReport, runtime: RuntimeDep, session: SessionDep, _: WorkerAuth
) -> dict[str, str]:
    """Record the attempt's failure; the job core retries transient errors with backoff."""
    error = error_from_report(body.error_class, body.message, permanent=body.permanent)
    job = jobs.fail(
        session,
        job_id,
        body.fencing_token,
        error,
        body.log_tail,
        retry_base=runtime.settings.retry_base_seconds,
        retry_max=runtime.settings.retry_max_seconds,
    )
    return {"status": job.status}


@router.post("/jobs/{job_id}/release", responses={404: {}, 409: {}})
def release(
    job_id: str, body: ReleaseReport, runtime: RuntimeDep, session: SessionDep, _: WorkerAuth
) -> dict[str, str]:
    """A stopping worker hands its job back: queued again at once, the attempt not counted."""
    job = jobs.release(session, job_id, body.fencing_token)
    if job.status == JobStatus.QUEUED:
        runtime.requeued([job_id])
    return {"status": job.status}


@router.post("/xapi/claim")
def xapi_claim(
    body: XapiClaimRequest, runtime: RuntimeDep, session: SessionDep, _: WorkerAuth
) -> dict[str, Any]:
    """Lease a batch of due statements to a remote delivery worker (the `xapi` queue)."""
    lease = delivery.delivery_lease_seconds(runtime.settings)
    rows = outbox.claim_due(session, body.limit, lease)
    return {
        "lease_seconds": lease,
        "statements": [{"id": row.id, "statement": row.statement} for row in rows],
    }


@router.post("/xapi/record")
def xapi_record(
    body: XapiRecordRequest, runtime: RuntimeDep, session: SessionDep, _: WorkerAuth
) -> dict[str, int]:
    """Write the outcome of a remote delivery round (same rules as the embedded loop)."""
    results = {
        key: outbox.Result(value.outcome, value.status, value.reason)
        for key, value in body.results.items()
    }
    outbox.record(
        session,
        results,
        retry_base=runtime.settings.xapi_retry_base_seconds,
        retry_max=runtime.settings.xapi_retry_max_seconds,
    )
    return {"recorded": len(results)}

"""Runner tasks in SQL: accept (deduplicated, within capacity), follow their job, finish once.

A task's life, in Pod's words:

    running (fetching the source) ──► running (its job, queued or running) ──► completed
                  │                                         │                   failed
                  └──────────────── failed ◄────────────────┘                   timeout
    completed, but the end notification never got through ──► warning

The job's own state is the truth while it runs; when it ends, `sync_finished` copies the
outcome to the task exactly once (a conditional update) and queues the notification.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from datetime import UTC, datetime
from typing import Any, cast

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import CursorResult, func, select, text, update
from sqlalchemy.orm import Session

from vidfarm import jobs
from vidfarm.config import Settings
from vidfarm.db import is_postgresql, write_transaction
from vidfarm.errors import InvalidParameters, InvalidTransition, NotFound, TransientError
from vidfarm.media.profiles import load_profile, profile_from_rendition_json
from vidfarm.models import Job, JobStatus, JobType, RunnerTask
from vidfarm.runner_service import chunks
from vidfarm.runner_service.assets import remote_spec
from vidfarm.transcribe.engines import resolve as resolve_language
from vidfarm.urlguard import check_url

PENDING = "pending"
RUNNING = "running"
COMPLETED = "completed"
FAILED = "failed"
TIMEOUT = "timeout"
WARNING = "warning"
ACTIVE = (PENDING, RUNNING)
STATUSES = (PENDING, RUNNING, COMPLETED, FAILED, TIMEOUT, WARNING)

TASK_TYPES = {
    "encoding": JobType.ENCODE.value,
    "transcription": JobType.TRANSCRIPTION.value,
    "studio": JobType.ENCODE.value,  # the mediapackage's tracks, laid out, then the ladder
    **chunks.TASK_TYPES,  # a vidfarm control plane's chunked encodes (announced in health)
}
#: Job outcome -> task status (a cancelled job is a stopped task: Pod only knows "failed").
JOB_OUTCOME = {
    JobStatus.COMPLETED.value: COMPLETED,
    JobStatus.FAILED.value: FAILED,
    JobStatus.CANCELLED.value: FAILED,
    JobStatus.TIMEOUT.value: TIMEOUT,
}
STOPPED_MESSAGE = "stopped by the client"
_ID = re.compile(r"^[0-9a-f]{32}$")
_TIMECODE = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d+)?)$")
_ADVISORY_LOCK = 0x76_69_64_66  # "vidf": serialises accepting tasks on PostgreSQL


class NoCapacity(TransientError):
    """Every slot of this runner is taken: the client should try another manager."""


class NotFinished(TransientError):
    """The task has not ended yet: its result does not exist (HTTP 425 Too Early)."""


class TaskRequest(BaseModel):
    """The body of `POST /task/execute`, as Esup-Pod sends it (extra fields are kept)."""

    model_config = ConfigDict(extra="allow")

    etab_name: str = ""
    app_name: str = ""
    app_version: str = ""
    task_type: str = Field(min_length=1, max_length=32)
    source_url: str = Field(min_length=1, max_length=4096)
    affiliation: str = ""
    notify_url: str | None = Field(default=None, max_length=4096)
    parameters: dict[str, Any] = Field(default_factory=dict)


def utcnow() -> datetime:
    return datetime.now(UTC)


def fingerprint(request: TaskRequest) -> str:
    """Identical requests (type, source, parameters, notify URL, app) share one fingerprint."""
    identity = {
        "task_type": request.task_type,
        "source_url": request.source_url.strip(),
        "parameters": request.parameters,
        "notify_url": (request.notify_url or "").strip(),
        "app": [request.etab_name, request.app_name, request.app_version],
    }
    canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def parse_timecode(value: object, name: str) -> float | None:
    """Seconds from 12.5, "12.5", "00:01:02" or "1:02.5"; empty means not set."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    match = _TIMECODE.match(str(value).strip())
    if not match:
        raise InvalidParameters(f"parameters.cut.{name}: expected seconds or HH:MM:SS")
    parts = [float(p) for p in match.groups() if p is not None]
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return seconds


def _json_parameter(parameters: dict[str, Any], name: str) -> Any:
    """Pod sends some parameters as JSON strings; accept an object too."""
    value = parameters.get(name)
    if isinstance(value, str):
        if not value.strip():
            return None
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise InvalidParameters(f"parameters.{name}: not valid JSON ({error.msg})") from None
    return value


def job_for(request: TaskRequest, settings: Settings) -> tuple[str, dict[str, Any]]:
    """The job type and params a request asks for; InvalidParameters (one line) if refused."""
    job_type = TASK_TYPES.get(request.task_type)
    if job_type is None:
        raise InvalidParameters(
            f"task_type: unsupported {request.task_type!r} "
            f"(this runner does: {', '.join(TASK_TYPES)})"
        )
    parameters = request.parameters
    if request.task_type in chunks.TASK_TYPES:
        allow = settings.runner_allow_private_urls
        return job_type, chunks.job_params(request.task_type, parameters, allow_private=allow)
    if job_type == JobType.TRANSCRIPTION.value:
        # Pod sends `language` (older Pods `lang`) and `source_language` (often "auto").
        language = str(
            parameters.get("language")
            or parameters.get("lang")
            or parameters.get("source_language")
            or ""
        )
        if not language.strip() or language.strip().lower() == "auto":
            language = settings.runner_default_language
        try:
            spec = resolve_language(language, settings)
        except InvalidParameters as error:
            raise InvalidParameters(f"parameters.language: {error}") from None
        return job_type, {"language": spec.language}
    # Pod's runner import needs single-file HLS (`<h>p.m3u8` + `<h>p.ts`): every runner task
    # gets it, whoever sends it (a vidfarm control plane imports either layout).
    params: dict[str, Any] = {"hls_single_file": True}
    rendition = parameters.get("rendition")
    if rendition not in (None, "", {}):
        base = load_profile(settings.default_profile, settings.user_profiles_dir)
        try:
            profile = profile_from_rendition_json(rendition, base)
        except InvalidParameters as error:
            raise InvalidParameters(f"parameters.{error}") from None
        params["renditions"] = [spec.model_dump() for spec in profile.renditions]
    cut = _json_parameter(parameters, "cut")
    if cut:
        if not isinstance(cut, dict):
            raise InvalidParameters("parameters.cut: expected an object with start and end")
        for name in ("start", "end"):
            seconds = parse_timecode(cut.get(name), name)
            if seconds is not None:
                params[name] = seconds
    # Dressing and studio: files fetched with the source, then a composition (assets.py).
    remote = remote_spec(
        request.task_type, parameters, allow_private=settings.runner_allow_private_urls
    )
    if remote:
        params["remote"] = remote
    return job_type, params


def submit(
    session: Session,
    settings: Settings,
    request: TaskRequest,
    *,
    token_sha256: str,
    capacity: int,
) -> tuple[RunnerTask, bool]:
    """Accept a task, or return the identical one in flight: (task, created).

    Everything a worker would refuse is refused here first (422). NoCapacity when every slot
    is taken; checking and inserting happen in one writing transaction, so two requests at
    once cannot both take the last slot.
    """
    allow = settings.runner_allow_private_urls
    check_url(request.source_url, allow_private=allow, name="source_url")
    if request.notify_url:
        check_url(request.notify_url, allow_private=allow, name="notify_url")
    job_type, params = job_for(request, settings)
    digest = fingerprint(request)
    with write_transaction(session):
        if is_postgresql(session):
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK})
        same = session.scalars(
            select(RunnerTask)
            .where(
                RunnerTask.fingerprint == digest,
                RunnerTask.status.in_(ACTIVE),
                # one tenant's identical request never hands it another tenant's task
                RunnerTask.token_sha256 == token_sha256,
            )
            .limit(1)
        ).first()
        if same is not None:
            return same, False
        active = session.scalar(
            select(func.count()).select_from(RunnerTask).where(RunnerTask.status.in_(ACTIVE))
        )
        if (active or 0) >= capacity:
            raise NoCapacity(f"No runners available (all {capacity} slots are busy)")
        now = utcnow()
        task = RunnerTask(
            task_type=request.task_type,
            fingerprint=digest,
            request={**request.model_dump(), "job": {"type": job_type, "params": params}},
            source_url=request.source_url.strip(),
            notify_url=(request.notify_url or "").strip() or None,
            token_sha256=token_sha256,
            status=RUNNING,
            fetch_attempts=0,
            fetch_next_at=now,
            notify_state="none",
            notify_attempts=0,
            created_at=now,
            updated_at=now,
        )
        session.add(task)
    return task, True


def get_task(session: Session, task_id: str, *, token_sha256: str | None = None) -> RunnerTask:
    """The task; with `token_sha256`, only if that client token created it (else NotFound).

    The digests are compared in constant time; another client's task answers like none.
    """
    task = session.get(RunnerTask, task_id, populate_existing=True) if _ID.match(task_id) else None
    if task is None or (
        token_sha256 is not None
        and not hmac.compare_digest(task.token_sha256.encode(), token_sha256.encode())
    ):
        raise NotFound(f"no task {task_id}")
    return task


def finish(
    session: Session,
    task_id: str,
    status: str,
    *,
    error_message: str | None = None,
    script_output: str | None = None,
) -> bool:
    """End an active task once and queue its notification; False if it had already ended."""
    now = utcnow()
    with write_transaction(session):
        notify_url = session.scalar(select(RunnerTask.notify_url).where(RunnerTask.id == task_id))
        result = cast(
            CursorResult[Any],
            session.execute(
                update(RunnerTask)
                .where(RunnerTask.id == task_id, RunnerTask.status.in_(ACTIVE))
                .values(
                    status=status,
                    error_message=error_message,
                    script_output=script_output,
                    finished_at=now,
                    updated_at=now,
                    notify_state="pending" if notify_url else "none",
                    notify_next_at=now,
                )
                .execution_options(synchronize_session=False)
            ),
        )
    return result.rowcount == 1


def script_output_of(job: Job) -> str:
    """What Pod shows as the task's output: the log tail, or a one-line summary."""
    if job.log_tail:
        return job.log_tail
    result = job.result or {}
    outputs = result.get("outputs") or []
    took = (result.get("encode") or result.get("transcribe") or {}).get("wall_seconds")
    summary = f"{job.type} job {job.id} {job.status} after {job.attempts} attempt(s)"
    if outputs:
        summary += f": {len(outputs)} outputs"
    if took is not None:
        summary += f" in {took:.1f} s"
    return summary


def sync_finished(session: Session) -> list[str]:
    """Finish the active tasks whose job has ended (or vanished); returns their ids."""
    rows = session.execute(
        select(RunnerTask.id, RunnerTask.job_id)
        .where(RunnerTask.status.in_(ACTIVE), RunnerTask.job_id.is_not(None))
        .order_by(RunnerTask.created_at)
    ).all()
    session.rollback()
    finished: list[str] = []
    for task_id, job_id in rows:
        job = session.get(Job, job_id, populate_existing=True)
        if job is not None and job.status not in JOB_OUTCOME:
            continue
        if job is None:
            done = finish(session, task_id, FAILED, error_message=f"job {job_id} was deleted")
        else:
            error = job.error if job.status != JobStatus.COMPLETED.value else None
            if job.status == JobStatus.CANCELLED.value:
                error = STOPPED_MESSAGE
            done = finish(
                session,
                task_id,
                JOB_OUTCOME[job.status],
                error_message=error,
                script_output=script_output_of(job),
            )
        if done:
            finished.append(task_id)
    return finished


def stop(session: Session, task_id: str, *, token_sha256: str | None = None) -> RunnerTask:
    """Stop a task: its job is cancelled (the worker stops at its next report), task failed."""
    task = get_task(session, task_id, token_sha256=token_sha256)
    if task.status not in ACTIVE:
        raise InvalidTransition(f"task {task_id} has already ended ({task.status})")
    job_id = task.job_id
    if job_id is not None:
        try:
            jobs.cancel(session, job_id)
        except InvalidTransition:
            sync_finished(session)  # the job ended meanwhile: report what really happened
            return get_task(session, task_id)
    finish(session, task_id, FAILED, error_message=STOPPED_MESSAGE, script_output=STOPPED_MESSAGE)
    return get_task(session, task_id)


def view(session: Session, task: RunnerTask) -> dict[str, Any]:
    """A task as `GET /task/status` shows it."""
    job = session.get(Job, task.job_id, populate_existing=True) if task.job_id else None
    if task.status in ACTIVE:
        progress = job.progress if job else 0.0
        step = (job.step or job.status) if job else "downloading the source"
    else:
        progress = 100.0 if task.status in (COMPLETED, WARNING) else (job.progress if job else 0)
        step = None
    return {
        "task_id": task.id,
        "task_type": task.task_type,
        "status": task.status,
        "progress": round(progress, 1),
        "step": step,
        "error_message": task.error_message,
        "script_output": task.script_output,
        "created_at": _iso(task.created_at),
        "finished_at": _iso(task.finished_at),
        "notify": {
            "state": task.notify_state,
            "attempts": task.notify_attempts,
            "error": task.notify_error,
        },
        "app_name": task.request.get("app_name"),
        "etab_name": task.request.get("etab_name"),
    }


def _iso(value: datetime | None) -> str | None:
    return None if value is None else jobs.as_utc(value).isoformat()


def list_tasks(
    session: Session,
    *,
    status: str | None = None,
    limit: int = 200,
    token_sha256: str | None = None,
) -> list[RunnerTask]:
    stmt = select(RunnerTask).order_by(RunnerTask.created_at.desc()).limit(limit)
    if token_sha256 is not None:
        stmt = stmt.where(RunnerTask.token_sha256 == token_sha256)
    if status is not None:
        if status not in STATUSES:
            raise InvalidParameters(f"status: unknown {status!r} (one of: {', '.join(STATUSES)})")
        stmt = stmt.where(RunnerTask.status == status)
    return list(session.scalars(stmt.execution_options(populate_existing=True)))


def active_count(session: Session) -> int:
    count = select(func.count()).select_from(RunnerTask).where(RunnerTask.status.in_(ACTIVE))
    return int(session.scalar(count) or 0)


def status_counts(session: Session) -> dict[str, int]:
    """How many tasks are in each status (for the read-only status page)."""
    rows = session.execute(
        select(RunnerTask.status, func.count()).group_by(RunnerTask.status)
    ).all()
    return {status: int(count) for status, count in rows}

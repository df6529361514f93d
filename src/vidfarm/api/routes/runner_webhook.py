"""What runner managers call on the control plane: the end-of-task webhook and the source.

`POST /runner/notify_task_end/` keeps Esup-Pod's semantics so an Esup-Runner manager needs no
change: JSON only (415), a Bearer token (401), a known `task_id` (404), the token of the
manager that holds that task, compared in constant time (403). It only records the news; a
completed task's result is imported in the background, never inside this request.

`GET /runner/source/{assignment}/{secret}/{name}` lets the manager download the source without
an API token: the secret is random per assignment, stored as a hash, compared in constant
time, and only valid while the task is being submitted or runs. A stitch sent to a `vidfarm
runner` fetches its chunks' files the same way, with the same secret:
`GET /runner/input/{assignment}/{secret}/{chunk index}/{file name}`, only files the stitch
lists (never a path: a name that is not listed is unknown).
"""

from __future__ import annotations

import hmac
import json
import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response

from vidfarm.api.deps import RuntimeDep
from vidfarm.dispatch.runners import registry as runner_registry
from vidfarm.dispatch.runners.assignments import (
    RUNNING,
    SUBMITTING,
    Notification,
    NotYetRegistered,
    find_assignments,
    secret_matches,
    submitting_managers,
)
from vidfarm.dispatch.runners.dispatcher import RunnersDispatcher
from vidfarm.models import Job, RunnerAssignment, Video
from vidfarm.runtime import Runtime
from vidfarm.storage.base import content_type_for

router = APIRouter(tags=["runner managers"])
MAX_BODY_BYTES = 1 << 20
MAX_TASK_ID_CHARS = 128
_ID = re.compile(r"^[0-9a-f]{32}$")
_TASK_ID = re.compile(rf"^[\x20-\x7e]{{1,{MAX_TASK_ID_CHARS}}}$")  # UUIDs in Esup-Runner
MAX_DEPTH = 32  # Esup-Runner's answers nest three or four levels
_DUMMY_TOKEN = "vidfarm: no manager token"  # noqa: S105 - compared, never accepted


async def _read_limited(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it is larger than `limit` (never held whole in memory)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


#: Esup-Runner's notification, as the manager sends it (read by hand above: 415, 413, 400).
NOTIFY_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["task_id", "status"],
                "properties": {
                    "task_id": {"type": "string", "pattern": _TASK_ID.pattern},
                    "status": {"type": "string", "pattern": r"\S"},
                    "script_output": {"type": "string"},
                    "error_message": {"type": ["string", "null"]},
                },
            }
        }
    },
}


def _too_deep(value: object, limit: int = MAX_DEPTH) -> bool:
    """Whether JSON data nests deeper than `limit`; iterative, so it cannot recurse too far."""
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if not isinstance(item, list):
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in item)
    return False


def _answer(status: int, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


@router.post(
    "/runner/notify_task_end/",
    responses={400: {}, 401: {}, 403: {}, 404: {}, 413: {}, 415: {}, 503: {}},
    openapi_extra={"requestBody": NOTIFY_BODY},
)
@router.post("/runner/notify_task_end", include_in_schema=False)
async def notify_task_end(request: Request, runtime: RuntimeDep) -> JSONResponse:
    """A runner manager says a task ended: `{task_id, status, script_output, error_message}`."""
    if "application/json" not in request.headers.get("content-type", "").lower():
        return _answer(415, "only application/json is accepted")
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        return _answer(401, "missing Bearer token")
    body = await _read_limited(request, MAX_BODY_BYTES)
    if body is None:
        return _answer(413, f"body larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return _answer(400, "the body is not valid JSON")
    except RecursionError:  # `[[[[...` a thousand deep: the parser gives up, we refuse
        return _answer(400, f"the body nests deeper than {MAX_DEPTH} levels")
    if _too_deep(data):  # what the parser took may still exhaust a later json.dumps
        return _answer(400, f"the body nests deeper than {MAX_DEPTH} levels")
    if not isinstance(data, dict):
        return _answer(400, "the body must be a JSON object")
    task_id = data.get("task_id")
    if not isinstance(task_id, str | int) or isinstance(task_id, bool) or not str(task_id):
        return _answer(400, "no task_id in the request")
    if not _TASK_ID.match(str(task_id)):
        return _answer(400, "task_id is not a task id")
    status = data.get("status")
    if not isinstance(status, str) or not status.strip():
        return _answer(400, "no status in the request")
    status_code, message = await run_in_threadpool(
        _handle, runtime, token, str(task_id), status, data
    )
    if status_code == 200:
        return JSONResponse({"status": "OK"})
    return _answer(status_code, message)


def _handle(
    runtime: Runtime, token: str, task_id: str, status: str, data: dict[str, Any]
) -> tuple[int, str]:
    cipher = runner_registry.load_cipher(runtime.settings)
    with runtime.sessions() as session:
        found = find_assignments(session, task_id)
        if not found:
            # Its submission may not be recorded yet: a manager of ours gets "retry later".
            pending = submitting_managers(session)
            if any(
                _token_matches(token, runner_registry.decrypt_token(cipher, m)) for m in pending
            ):
                return 503, f"task {task_id} is being registered; send it again shortly"
            return 404, f"unknown task {task_id}"
        matched: RunnerAssignment | None = None
        for assignment, manager in found:  # compare against every candidate: constant work
            if _token_matches(token, runner_registry.decrypt_token(cipher, manager)):
                matched = matched or assignment
        if matched is None:
            return 403, "this token does not belong to the task's runner manager"
        assignment_id = matched.id
    dispatcher = runtime.dispatcher
    if not isinstance(dispatcher, RunnersDispatcher):  # the farm is not dispatching to runners
        dispatcher = RunnersDispatcher(runtime.sessions, runtime.settings, runtime.storage)
    news = Notification(
        status=status,
        error_message=_text(data.get("error_message")),
        script_output=_text(data.get("script_output")),
    )
    try:
        dispatcher.record_news(assignment_id, news)
    except NotYetRegistered as error:
        return 503, str(error)
    return 200, "OK"


def _token_matches(presented: str, expected: str) -> bool:
    return hmac.compare_digest(presented.encode(), (expected or _DUMMY_TOKEN).encode())


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _assigned_job(runtime: Runtime, assignment_id: str, secret: str) -> Job | None:
    """The job of an assignment being submitted or running, if `secret` is its secret."""
    with runtime.sessions() as session:
        found = session.get(RunnerAssignment, assignment_id) if _ID.match(assignment_id) else None
        expected = found.source_secret_sha256 if found is not None else None
        if not secret_matches(secret, expected) or found is None:
            return None
        if found.state not in (SUBMITTING, RUNNING):
            return None
        job = session.get(Job, found.job_id)
        if job is not None:
            session.expunge(job)
        return job


def _stored_file(
    runtime: Runtime, key: str, filename: str, missing: str, *, original: str | None = None
) -> Response:
    """The stored file: streamed, or a redirect to a presigned URL (S3) that names it
    `original` (the uploaded file's name), else `filename`."""
    storage = runtime.storage
    url = storage.url_for(key, filename=original or filename)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    path = storage.local_path(key)
    if path is None or not path.is_file():
        return _answer(404, missing)
    return FileResponse(path, media_type=content_type_for(key), filename=filename)


@router.get("/runner/source/{assignment_id}/{secret}/{name}", responses={404: {}})
def runner_source(assignment_id: str, secret: str, name: str, runtime: RuntimeDep) -> Response:
    """The source file of a job handed to a runner manager (no API token: the URL's secret)."""
    job = _assigned_job(runtime, assignment_id, secret)
    with runtime.sessions() as session:
        video = session.get(Video, job.video_id) if job is not None and job.video_id else None
    if video is None:
        return _answer(404, "no such source")
    return _stored_file(runtime, video.source_key, name, "no such source", original=video.filename)


@router.get("/runner/input/{assignment_id}/{secret}/{index}/{name}", responses={404: {}})
def runner_input(
    assignment_id: str, secret: str, index: int, name: str, runtime: RuntimeDep
) -> Response:
    """A file of one of the chunks a stitch joins, for the `vidfarm runner` running it."""
    job = _assigned_job(runtime, assignment_id, secret)
    children = (job.params or {}).get("children") if job is not None else None
    for child in children or []:
        result = child.get("result") or {}
        if int(child.get("index", -1)) == index and name in (result.get("files") or []):
            return _stored_file(runtime, f"{result['prefix']}/{name}", name, "no such input")
    return _answer(404, "no such input")

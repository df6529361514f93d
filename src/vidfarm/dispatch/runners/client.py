"""The client side of the runner-manager protocol (Esup-Runner): one manager, over HTTP.

Every call carries the manager's token as a Bearer header, has a time limit (Pod: 30 s), does
not follow redirects, and connects only to addresses the SSRF guard allows (checked again
when each connection opens, so DNS cannot be turned against us after registration).
Failures come out as the error classes below, all transient for the job: a manager that is
down, busy or misconfigured is the infrastructure's problem, not the video's.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from vidfarm.errors import TransientError
from vidfarm.urlguard import guarded_client, is_forbidden

HEALTH_PATHS = ("/manager/health", "/api/health")


class ManagerUnavailable(TransientError):
    """The manager did not answer usefully: connection refused, timeout, 5xx, bad reply."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class ManagerBusy(ManagerUnavailable):
    """503: the manager has no free runner right now."""


class ManagerRefused(ManagerUnavailable):
    """401/403: the manager does not accept our token."""


class TaskRejected(ManagerUnavailable):
    """Another 4xx (400, 413, 422...): the manager refuses this task, e.g. Esup-Runner's 422
    for a source_url whose host is an IP literal. Asking again the same way will not help."""


class TaskUnknown(ManagerUnavailable):
    """404 on a task: the manager does not know (or no longer knows) it."""


class ResultNotReady(ManagerUnavailable):
    """425: the task has not finished, its result cannot be read yet."""


@dataclass(frozen=True)
class HealthReport:
    ok: bool
    status_code: int | None
    latency_ms: float | None
    message: str
    warnings: tuple[str, ...] = ()
    #: The task types the manager announced (`vidfarm runner` does; Esup-Runner says none).
    task_types: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _detail(response: httpx.Response) -> str:
    """The manager's own one-line reason, if it gave one."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("detail", "error", "message"):
            if body.get(key):
                return " ".join(str(body[key]).split())[:300]
    text = " ".join(response.text.split())[:300] if response.text else ""
    return text or response.reason_phrase


def _task_types(response: httpx.Response) -> tuple[str, ...]:
    """The `task_types` list of a health answer, if it has one (short plain names only)."""
    try:
        body = response.json()
    except ValueError:
        return ()
    announced = body.get("task_types") if isinstance(body, dict) else None
    if not isinstance(announced, list):
        return ()
    names = {str(name) for name in announced[:64] if isinstance(name, str)}
    return tuple(sorted(name for name in names if 0 < len(name) <= 32 and name.isprintable()))


def _transport_problem(error: httpx.HTTPError, url: str, timeout: float) -> str:
    """A clear sentence for what went wrong below HTTP."""
    parts = urlsplit(url)
    where = parts.netloc or url
    if is_forbidden(error):
        cause: BaseException | None = error
        while cause is not None and cause.__cause__ is not None:
            cause = cause.__cause__
        return f"refused by the SSRF guard: {cause or error}"
    if isinstance(error, httpx.TimeoutException):
        return f"no answer from {where} within {timeout:g} s (timeout)"
    text = str(error)
    if isinstance(error, httpx.ConnectError):
        if "refused" in text.lower():
            return f"connection refused: nothing listens at {where}"
        if "name or service" in text.lower() or "resolve" in text.lower():
            return f"cannot resolve {parts.hostname!r}"
        return f"cannot connect to {where}: {text}"
    return f"{type(error).__name__} talking to {where}: {text}"


class ManagerClient:
    """Requests to one manager; use as a context manager (it holds a connection pool)."""

    def __init__(
        self, *, name: str, url: str, token: str, timeout: float, allow_private: bool
    ) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._client = guarded_client(allow_private=allow_private, timeout=timeout)

    def __enter__(self) -> ManagerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _headers(self, accept: str = "application/json") -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}", "Accept": accept}

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = self.url + path
        try:
            return self._client.request(method, url, headers=self._headers(), **kwargs)
        except httpx.HTTPError as error:
            raise ManagerUnavailable(
                f"runner manager {self.name}: {_transport_problem(error, url, self._timeout)}"
            ) from None

    def _fail(self, response: httpx.Response, what: str) -> ManagerUnavailable:
        code = response.status_code
        message = f"runner manager {self.name}: {what}: HTTP {code} {_detail(response)}"
        if code in (401, 403):
            return ManagerRefused(message, status_code=code)
        if code == 503:
            return ManagerBusy(message, status_code=code)
        if code == 404:
            return TaskUnknown(message, status_code=code)
        if code == 425:
            return ResultNotReady(message, status_code=code)
        if 400 <= code < 500 and code not in (408, 409, 429):
            return TaskRejected(message, status_code=code)
        return ManagerUnavailable(message, status_code=code)

    def _json_object(self, response: httpx.Response, what: str) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ManagerUnavailable(
                f"runner manager {self.name}: {what}: the answer is not a JSON object",
                status_code=response.status_code,
            )
        return body

    # -- the protocol ----------------------------------------------------------------------------

    def execute(self, body: dict[str, Any]) -> str:
        """POST /task/execute; the manager's task id, or ManagerBusy (503) and the like."""
        response = self._send("POST", "/task/execute", json=body)
        if not response.is_success:
            raise self._fail(response, "task refused")
        answer = self._json_object(response, "task submission")
        task_id = answer.get("task_id")
        if not isinstance(task_id, str | int) or not str(task_id).strip():
            raise ManagerUnavailable(f"runner manager {self.name}: no task_id in its answer")
        return str(task_id).strip()

    def status(self, task_id: str) -> dict[str, Any]:
        """GET /task/status/{id}: at least {"status": ...}."""
        response = self._send("GET", f"/task/status/{quote(task_id, safe='')}")
        if not response.is_success:
            raise self._fail(response, f"status of task {task_id}")
        return self._json_object(response, f"status of task {task_id}")

    def result(self, task_id: str) -> dict[str, Any]:
        """GET /task/result/{id}: the manifest {"files": [...]}; ResultNotReady on 425."""
        response = self._send("GET", f"/task/result/{quote(task_id, safe='')}")
        if not response.is_success:
            raise self._fail(response, f"result of task {task_id}")
        return self._json_object(response, f"result of task {task_id}")

    @contextmanager
    def stream_file(self, task_id: str, path: str) -> Iterator[httpx.Response]:
        """GET /task/result/{id}/file/{path}, streamed; the caller reads it in chunks."""
        url = f"{self.url}/task/result/{quote(task_id, safe='')}/file/{quote(path, safe='/')}"
        try:
            with self._client.stream("GET", url, headers=self._headers("*/*")) as response:
                if not response.is_success:
                    response.read()
                    raise self._fail(response, f"file {path} of task {task_id}")
                yield response
        except httpx.HTTPError as error:
            raise ManagerUnavailable(
                f"runner manager {self.name}: {_transport_problem(error, url, self._timeout)}"
            ) from None

    def stop(self, task_id: str) -> bool:
        """POST /task/stop/{id}: whether that is settled (the manager took the request, or
        knows no such running task: 404, 409...). False: ask again later (no answer, 5xx,
        401/403 until the token is fixed, 408, 429)."""
        try:
            response = self._send("POST", f"/task/stop/{quote(task_id, safe='')}")
        except ManagerUnavailable:
            return False
        code = response.status_code
        return response.is_success or (400 <= code < 500 and code not in (401, 403, 408, 429))

    def health(self) -> HealthReport:
        """`GET /manager/health` (Pod's test), else `/api/health` (the manager's own)."""
        report = HealthReport(False, None, None, "not tried")
        for path in HEALTH_PATHS:
            report = self._health_at(path)
            if report.status_code != 404:
                return report
        return HealthReport(
            False,
            404,
            report.latency_ms,
            f"no health endpoint at {self.url}{HEALTH_PATHS[0]} nor {HEALTH_PATHS[1]} (404): "
            "is this the manager's base URL?",
        )

    def _health_at(self, path: str) -> HealthReport:
        url = self.url + path
        started = time.perf_counter()
        try:
            response = self._client.get(url, headers=self._headers())
        except httpx.HTTPError as error:
            return HealthReport(False, None, None, _transport_problem(error, url, self._timeout))
        latency = round((time.perf_counter() - started) * 1000, 1)
        code = response.status_code
        if response.is_success:
            message = f"OK: {path} answered {code} in {latency} ms"
            return HealthReport(True, code, latency, message, task_types=_task_types(response))
        if code == 401:
            message = "the manager wants a token and refused ours (401): check the token"
        elif code == 403:
            message = "the manager refused our token (403): check the token"
        else:
            message = f"{path} answered HTTP {code}: {_detail(response)}"
        return HealthReport(False, code, latency, message)

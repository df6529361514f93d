"""A remote worker's side of the worker API: claim, report with fencing tokens, xAPI outbox.

A Celery worker has a broker, storage and this client; never a database connection
(ARCHITECTURE.md, invariant 3).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx

from vidfarm import __version__
from vidfarm.claims import Claim, OutputRecord
from vidfarm.errors import (
    ConfigError,
    ControlPlaneDown,
    JobCancelled,
    StaleAttempt,
    VidfarmError,
    WorkerUnreachable,
)
from vidfarm.xapi.delivery import Leased
from vidfarm.xapi.outbox import Result

log = logging.getLogger(__name__)

#: A report is retried this long while the API is unreachable (connection refused, 5xx). While
#: the control plane or its database is down nobody can take our lease, and when it comes
#: back it waits one lease before reclaiming (scheduler.OutageGrace): a worker that keeps
#: trying gets its finished result accepted. Past this, the job is retried from scratch.
REPORT_PATIENCE_SECONDS = 3600.0
#: The longest pause between two tries; also at most a quarter lease (see `ping`), so one try
#: lands inside the control plane's grace after it comes back.
MAX_RETRY_DELAY_SECONDS = 10.0
#: While the worker shuts down (SIGTERM), a report waits at most this long: the process is
#: leaving, and a job it could not hand back is reclaimed when its lease runs out.
SHUTDOWN_PATIENCE_SECONDS = 30.0


class ControlPlane:
    """The worker API of `vidfarm serve`, as seen by a worker holding a worker token."""

    def __init__(self, api_url: str, token: str, *, timeout: float = 30.0) -> None:
        if not api_url:
            raise ConfigError("a remote worker needs VIDFARM_API_URL (the control plane's URL)")
        if not token:
            raise ConfigError("a remote worker needs VIDFARM_WORKER_TOKEN (role worker)")
        self.api_url = api_url.rstrip("/")
        self._client = httpx.Client(
            base_url=f"{self.api_url}/api/v1/worker",
            headers={
                "Authorization": f"Bearer {token}",
                "User-Agent": f"vidfarm-worker/{__version__}",
            },
            timeout=timeout,
        )
        self.patience = REPORT_PATIENCE_SECONDS
        self.max_delay = MAX_RETRY_DELAY_SECONDS
        self.stopping: Callable[[], bool] = lambda: False  # the worker process is leaving

    def close(self) -> None:
        self._client.close()

    # -- calls -------------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        """Check URL and token at start; one clear line when either is wrong."""
        try:
            response = self._client.get("/ping")
        except httpx.HTTPError as error:
            raise WorkerUnreachable(
                f"cannot reach the API at {self.api_url}: {_reason(error)}"
            ) from None
        if response.status_code in (401, 403):
            raise WorkerUnreachable(
                f"the API at {self.api_url} refused VIDFARM_WORKER_TOKEN "
                f"({response.status_code}: {_detail(response)})"
            )
        if response.status_code != 200:
            raise WorkerUnreachable(
                f"the API at {self.api_url} answered {response.status_code} to /api/v1/worker/ping"
                " (is VIDFARM_API_URL the vidfarm control plane?)"
            )
        answer: dict[str, Any] = response.json()
        lease = float(answer.get("lease_seconds") or 0)
        if lease > 0:
            self.max_delay = max(0.1, min(self.max_delay, lease / 4))
        return answer

    def claim(self, job_id: str, worker_id: str) -> Claim | None:
        """The job for this message, or None when it is not queued any more (a duplicate)."""
        response = self._post(f"/jobs/{job_id}/claim", {"worker_id": worker_id}, patient=True)
        if response.status_code in (404, 409):
            log.info("job %s: not claimed: %s", job_id, _detail(response))
            return None
        body = response.json()
        return Claim(
            job_id=body["job_id"],
            job_type=body["job_type"],
            video_id=body["video_id"],
            source_key=body["source_key"],
            params=body["params"] or {},
            attempt=body["attempt"],
            fencing_token=body["fencing_token"],
        )

    def progress(self, claim: Claim, percent: float, step: str) -> bool:
        body = {"fencing_token": claim.fencing_token, "percent": percent, "step": step[:64]}
        response = self._post(f"/jobs/{claim.job_id}/progress", body, patient=False)
        if response.status_code in (404, 409):  # superseded, or the job was deleted
            raise StaleAttempt(_detail(response))
        return bool(response.json()["continue"])

    def complete(self, claim: Claim, result: dict[str, Any], outputs: list[OutputRecord]) -> None:
        body = {
            "fencing_token": claim.fencing_token,
            "result": result,
            "outputs": [output.__dict__ for output in outputs],
        }
        response = self._post(f"/jobs/{claim.job_id}/complete", body, patient=True)
        if response.status_code in (404, 409):  # superseded, or the job was deleted
            raise StaleAttempt(_detail(response))

    def fail(self, claim: Claim, error: VidfarmError, log_tail: list[str]) -> None:
        body = {
            "fencing_token": claim.fencing_token,
            "error_class": error.error_class[:64],
            "message": (str(error) or error.error_class)[:4000],
            "permanent": error.permanent,
            "log_tail": [line[:2000] for line in log_tail[-200:]],
        }
        response = self._post(f"/jobs/{claim.job_id}/fail", body, patient=True)
        if response.status_code in (404, 409):  # superseded, or the job was deleted
            raise StaleAttempt(_detail(response))

    def release(self, claim: Claim) -> None:
        body = {"fencing_token": claim.fencing_token}
        response = self._post(f"/jobs/{claim.job_id}/release", body, patient=True)
        if response.status_code in (404, 409):  # superseded, or the job was deleted
            raise StaleAttempt(_detail(response))

    def xapi_claim(self, limit: int) -> list[Leased]:
        response = self._post("/xapi/claim", {"limit": limit}, patient=True)
        return [Leased(item["id"], item["statement"]) for item in response.json()["statements"]]

    def xapi_record(self, results: dict[str, Result]) -> None:
        body = {
            "results": {
                key: {"outcome": r.outcome, "status": r.status, "reason": r.reason[:2000]}
                for key, r in results.items()
            }
        }
        self._post("/xapi/record", body, patient=True)

    # -- transport ---------------------------------------------------------------------------

    def _post(self, path: str, body: dict[str, Any], *, patient: bool) -> httpx.Response:
        """POST; 5xx and connection errors are retried (with backoff) only when `patient`.

        Reports are idempotent on the server (the fencing token decides), so a retry after a
        lost answer has no second effect. 4xx other than 404/409 is a bug or a revoked token.
        """
        started = time.monotonic()
        deadline = started + (self.patience if patient else 0.0)
        delay = 0.5
        while True:
            if self.stopping():
                deadline = min(deadline, started + SHUTDOWN_PATIENCE_SECONDS)
            try:
                response = self._client.post(path, json=body)
            except httpx.HTTPError as error:
                failure = f"cannot reach the API at {self.api_url}: {_reason(error)}"
            else:
                if response.status_code < 500:
                    if response.status_code in (401, 403):
                        raise WorkerUnreachable(
                            f"the API refused the worker token ({response.status_code})"
                        )
                    if response.status_code >= 400 and response.status_code not in (404, 409):
                        raise WorkerUnreachable(
                            f"the API refused {path}: {response.status_code} {_detail(response)}"
                        )
                    return response
                failure = f"the API answered {response.status_code} to {path}"
            if time.monotonic() + delay > deadline:
                raise ControlPlaneDown(failure)
            log.warning("%s; retrying in %.1f s", failure, delay)
            time.sleep(delay * random.uniform(0.5, 1.0))
            delay = min(delay * 2, self.max_delay)


class HttpReporter:
    """A claim's reports over HTTP, with the same contract as `reporting.DirectReporter`.

    Progress is sent from a background thread: the encoder's progress callback (which reads
    ffmpeg's output) never waits for the network, and a slow API costs the job nothing.
    `progress()` answers with what the API last said (stop when cancelled or superseded).
    Final reports (complete, fail, release) are synchronous and retried.
    """

    def __init__(
        self,
        plane: ControlPlane,
        claim: Claim,
        *,
        lease_seconds: float,
        time_limit: float | None = None,
        should_stop: Callable[[], bool] | None = None,
        listener: Callable[[float, str], None] | None = None,
    ) -> None:
        self._plane = plane
        self._listener = listener  # told every progress report (Celery's PROGRESS state)
        self.claim = claim
        self._lease = lease_seconds
        self._deadline = None if time_limit is None else time.monotonic() + time_limit
        self._should_stop = should_stop or (lambda: False)
        self._lock = threading.Lock()
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidfarm-progress")
        self._in_flight: Future[None] | None = None
        self._closing = False
        self._min_interval = min(1.0, lease_seconds / 4)
        self._last_write = float("-inf")
        self._last_ok = time.monotonic()  # the lease was granted by the claim just now
        self.finished = False
        self.released = False
        self.interrupted = False
        self._timed_out = False

    @property
    def stopping(self) -> bool:
        return self._should_stop()

    @property
    def timed_out(self) -> bool:
        return self._timed_out

    def progress(self, percent: float, step: str) -> bool:
        if self.stopping or self.finished or self.interrupted:
            return False
        if self._deadline is not None and time.monotonic() > self._deadline:
            self._timed_out = True
            return False
        if self._listener is not None:
            self._listener(percent, step)
        with self._lock:
            if self._closing:
                return not self.interrupted
            now = time.monotonic()
            # At most one report per interval, whatever the step: the next call (or the
            # keep-alive) carries the latest state; a short job costs few requests.
            due = now - self._last_write >= self._min_interval
            if due and (self._in_flight is None or self._in_flight.done()):
                self._last_write = now
                self._in_flight = self._sender.submit(self._send, percent, step)
        return not self.interrupted

    def _send(self, percent: float, step: str) -> None:
        try:
            alive = self._plane.progress(self.claim, percent, step)
        except StaleAttempt as error:
            log.info("job %s: %s; stopping this attempt", self.claim.job_id, error)
            alive = False
        except ControlPlaneDown as error:
            # The control plane is down (or we cannot reach it): nobody can take our lease
            # meanwhile, and it waits a lease for us when it returns. Keep working; the first
            # report that goes through says whether this attempt is still the current one.
            log.warning("job %s: progress not recorded: %s", self.claim.job_id, error)
            alive = time.monotonic() - self._last_ok < self._plane.patience
        except Exception as error:  # an answer we cannot read
            # Keep working while our lease may still hold; past it, the job is someone else's.
            log.warning("job %s: progress not recorded: %s", self.claim.job_id, error)
            alive = time.monotonic() - self._last_ok < self._lease
        else:
            self._last_ok = time.monotonic()
        if not alive:
            self.interrupted = True

    def _end_progress(self) -> None:
        """No progress report may arrive after the final one."""
        with self._lock:
            self._closing = True
            in_flight = self._in_flight
        if in_flight is not None:
            in_flight.result()  # _send never raises
        self._sender.shutdown(wait=True)

    def complete(self, result: dict[str, Any], outputs: list[OutputRecord]) -> None:
        self._end_progress()
        try:
            self._plane.complete(self.claim, result, outputs)
        finally:
            self.finished = True

    def fail(self, error: VidfarmError, log_tail: list[str]) -> None:
        self._end_progress()
        try:
            if self.stopping and (isinstance(error, JobCancelled) or not error.permanent):
                self.release()
                return
            self._plane.fail(self.claim, error, log_tail)
        except StaleAttempt as stale:
            log.info("job %s: failure report dropped: %s", self.claim.job_id, stale)
        self.finished = True

    def release(self) -> None:
        self._end_progress()
        try:
            self._plane.release(self.claim)
            self.released = True
        except StaleAttempt as stale:
            log.info("job %s: release dropped: %s", self.claim.job_id, stale)
        self.finished = True


class HttpOutbox:
    """The xAPI outbox seen through the worker API (for a Celery worker of the `xapi` queue)."""

    def __init__(self, plane: ControlPlane) -> None:
        self._plane = plane

    def claim(self, limit: int, lease_seconds: float) -> Sequence[Leased]:
        return self._plane.xapi_claim(limit)

    def record(self, results: dict[str, Result]) -> None:
        self._plane.xapi_record(results)


def _reason(error: httpx.HTTPError) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = None
    return str(detail or response.reason_phrase)

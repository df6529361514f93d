"""Tell the client a task ended: POST {task_id, status, script_output, error_message}.

State lives in SQL (the task's notify_* columns), so a notification due when the runner
stops is still sent after it starts again. Connection errors, 408, 429 and 5xx are retried
with backoff (x1.5 per try); after `runner_notify_retries` tries, or a refusal (other 4xx),
the notification has failed and a completed task becomes `warning`.

A read timeout is different: the request was sent and no answer came (after 15 s, as
Esup-Runner waits). The client may have received it and be importing the result, so sending
it again could import twice: it is not retried, and the task stays `completed` (state
`unconfirmed`), as Esup-Runner leaves it. `error_message` is null on success: Pod appends
"\n---\n" and the message to `script_output` whenever one is given.
"""

from __future__ import annotations

import enum
import logging
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from vidfarm.config import Settings
from vidfarm.db import write_transaction
from vidfarm.models import RunnerTask
from vidfarm.runner_service import tasks, tokens
from vidfarm.urlguard import guarded_client, is_forbidden

log = logging.getLogger(__name__)

BACKOFF_FACTOR = 1.5
ERROR_MAX_CHARS = 500


class Outcome(enum.Enum):
    SENT = "sent"
    RETRY = "retry"  # nothing was delivered; another try may work
    GIVE_UP = "give_up"  # refused: never send again
    UNCONFIRMED = "unconfirmed"  # sent, no answer in time: perhaps delivered, never resend


@dataclass(frozen=True)
class Attempt:
    outcome: Outcome
    detail: str


def send(client: httpx.Client, url: str, token: str, body: dict[str, Any]) -> Attempt:
    """One POST of `body` to `url` with the Bearer token, classified."""
    try:
        response = client.post(url, json=body, headers={"Authorization": f"Bearer {token}"})
    except httpx.ReadTimeout:
        return Attempt(
            Outcome.UNCONFIRMED, "no answer in time; not sent again (it may have arrived)"
        )
    except httpx.TransportError as error:
        if is_forbidden(error):
            return Attempt(Outcome.GIVE_UP, f"notify_url refused: {error}")
        return Attempt(Outcome.RETRY, f"{type(error).__name__}: {error}".rstrip(": "))
    status = response.status_code
    if 200 <= status < 300:
        return Attempt(Outcome.SENT, f"{status}")
    detail = f"notify_url answered {status}: {' '.join(response.text[:200].split())}".strip()
    if status >= 500 or status in (408, 429):
        return Attempt(Outcome.RETRY, detail)
    return Attempt(Outcome.GIVE_UP, detail)


def backoff(settings: Settings, tries: int) -> float:
    """Seconds to wait after try number `tries` (1-based)."""
    return settings.runner_notify_backoff * BACKOFF_FACTOR ** max(0, tries - 1)


class Notifier:
    """A thread sending due notifications, one at a time, in the order they became due."""

    def __init__(self, sessions: sessionmaker[Session], settings: Settings) -> None:
        self._sessions = sessions
        self._settings = settings
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="vidfarm-notify", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _loop(self) -> None:
        with guarded_client(
            allow_private=self._settings.runner_allow_private_urls,
            timeout=httpx.Timeout(self._settings.runner_notify_timeout, connect=5.0),
        ) as client:
            while not self._stopping.is_set():
                try:
                    self.run_due(client)
                except Exception:
                    log.exception("notifier: a pass failed; trying again soon")
                self._wake.wait(self._settings.poll_seconds)
                self._wake.clear()

    def run_due(self, client: httpx.Client) -> int:
        """Try every due notification once; returns how many were tried."""
        with self._sessions() as session:
            due = list(
                session.scalars(
                    select(RunnerTask.id)
                    .where(
                        RunnerTask.notify_state == "pending",
                        RunnerTask.notify_next_at <= tasks.utcnow(),
                    )
                    .order_by(RunnerTask.notify_next_at)
                    .limit(50)
                )
            )
        for task_id in due:
            if self._stopping.is_set():
                break
            self.deliver(client, task_id)
        return len(due)

    def deliver(self, client: httpx.Client, task_id: str) -> Outcome:
        with self._sessions() as session:
            task = tasks.get_task(session, task_id)
            body = {
                "task_id": task.id,
                "status": task.status,
                "script_output": task.script_output or "",
                "error_message": task.error_message or None,
            }
            url, digest = task.notify_url or "", task.token_sha256
        token = tokens.secret_for(self._settings.runner_tokens, digest)
        if token is None:
            attempt = Attempt(Outcome.GIVE_UP, "the token that created the task is gone")
        else:
            attempt = send(client, url, token, body)
        log.info("task %s: notification %s (%s)", task_id, attempt.outcome.value, attempt.detail)
        with self._sessions() as session:
            self._record(session, task_id, attempt)
        return attempt.outcome

    def _record(self, session: Session, task_id: str, attempt: Attempt) -> None:
        now = tasks.utcnow()
        with write_transaction(session):
            task = session.get(RunnerTask, task_id, populate_existing=True)
            if task is None or task.notify_state != "pending":
                return
            task.notify_attempts += 1
            task.updated_at = now
            if attempt.outcome is Outcome.SENT:
                task.notify_state = "sent"
                task.notify_error = None
                return
            task.notify_error = attempt.detail[:ERROR_MAX_CHARS]
            if attempt.outcome is Outcome.UNCONFIRMED:
                task.notify_state = "unconfirmed"  # the task keeps its status
                return
            retries_left = task.notify_attempts < self._settings.runner_notify_retries
            if attempt.outcome is Outcome.RETRY and retries_left:
                delay = backoff(self._settings, task.notify_attempts)
                task.notify_next_at = now + timedelta(seconds=delay)
                return
            task.notify_state = "failed"
            if task.status == tasks.COMPLETED:
                task.status = tasks.WARNING

"""End-of-task notifications against a real loopback webhook and a real database:
what is retried, what is not, and when a task becomes `warning`."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.orm import Session, sessionmaker

from vidfarm.config import Settings
from vidfarm.runner_service import tasks, tokens
from vidfarm.runner_service.notify import Notifier, Outcome, backoff, send
from vidfarm.urlguard import guarded_client

TOKEN = "the-pod-token"


class Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def log_message(self, *_: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Hook.received.append(
            {"path": self.path, "auth": self.headers["Authorization"], "body": body}
        )
        code = int(self.path.rsplit("/", 1)[-1])
        if code == 999:  # swallow the request and answer too late
            time.sleep(1.5)
            code = 200
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


@pytest.fixture(scope="module")
def hook() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    server.daemon_threads = True
    server.handle_error = lambda *_: None  # type: ignore[method-assign]  # timed-out clients
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with guarded_client(allow_private=True, timeout=httpx.Timeout(0.5)) as client:
        yield client


@pytest.mark.parametrize(
    ("code", "outcome"),
    [
        (200, Outcome.SENT),
        (204, Outcome.SENT),
        (500, Outcome.RETRY),
        (503, Outcome.RETRY),
        (429, Outcome.RETRY),
        (403, Outcome.GIVE_UP),
        (404, Outcome.GIVE_UP),
        (999, Outcome.UNCONFIRMED),  # read timeout: it may have arrived, never resend
    ],
)
def test_send_classifies(hook: str, client: httpx.Client, code: int, outcome: Outcome) -> None:
    body = {"task_id": "t", "status": "completed", "script_output": "", "error_message": ""}
    attempt = send(client, f"{hook}/hook/{code}", TOKEN, body)
    assert attempt.outcome is outcome, attempt
    assert Hook.received[-1]["auth"] == f"Bearer {TOKEN}"
    assert Hook.received[-1]["body"] == body


def test_send_connection_refused_is_retried(client: httpx.Client) -> None:
    attempt = send(client, "http://127.0.0.1:9/hook", TOKEN, {})
    assert attempt.outcome is Outcome.RETRY and "ConnectError" in attempt.detail


def test_send_to_a_forbidden_address_gives_up() -> None:
    with guarded_client(allow_private=False, timeout=1) as strict:
        attempt = send(strict, "http://127.0.0.1:9/hook", TOKEN, {})
    assert attempt.outcome is Outcome.GIVE_UP and "loopback" in attempt.detail


def test_backoff_grows_by_half() -> None:
    settings = Settings(runner_notify_backoff=60)
    assert [backoff(settings, n) for n in (1, 2, 3)] == [60.0, 90.0, 135.0]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path,
        runner_allow_private_urls=True,
        runner_tokens=[SecretStr("other"), SecretStr(TOKEN)],
        runner_notify_retries=3,
        runner_notify_backoff=0,
    )


def ended_task(
    sessions: sessionmaker[Session], settings: Settings, notify_url: str, status: str
) -> str:
    request = tasks.TaskRequest(
        task_type="encoding", source_url="http://127.0.0.1:1/v.mp4", notify_url=notify_url
    )
    with sessions() as session:
        task, _ = tasks.submit(
            session, settings, request, token_sha256=tokens.digest(TOKEN), capacity=99
        )
        tasks.finish(session, task.id, status, error_message="why", script_output="log")
        return task.id


def state(sessions: sessionmaker[Session], task_id: str) -> tuple[str, str, int]:
    with sessions() as session:
        task = tasks.get_task(session, task_id)
        return task.status, task.notify_state, task.notify_attempts


def test_notifier_sends_with_the_tasks_token(
    session_factory: sessionmaker[Session], settings: Settings, hook: str, client: httpx.Client
) -> None:
    task_id = ended_task(session_factory, settings, f"{hook}/hook/200", tasks.COMPLETED)
    notifier = Notifier(session_factory, settings)
    assert notifier.run_due(client) == 1
    assert Hook.received[-1] == {
        "path": "/hook/200",
        "auth": f"Bearer {TOKEN}",
        "body": {
            "task_id": task_id,
            "status": "completed",
            "script_output": "log",
            "error_message": "why",
        },
    }
    assert state(session_factory, task_id) == ("completed", "sent", 1)
    assert notifier.run_due(client) == 0  # sent once


def test_retries_then_warning(
    session_factory: sessionmaker[Session], settings: Settings, hook: str, client: httpx.Client
) -> None:
    completed = ended_task(session_factory, settings, f"{hook}/hook/500", tasks.COMPLETED)
    failed = ended_task(session_factory, settings, f"{hook}/hook/502", tasks.FAILED)
    notifier = Notifier(session_factory, settings)
    for _ in range(5):
        notifier.run_due(client)
    assert state(session_factory, completed) == ("warning", "failed", 3)
    assert state(session_factory, failed) == ("failed", "failed", 3)  # a failure stays one


def test_refusal_and_timeout_are_not_retried(
    session_factory: sessionmaker[Session], settings: Settings, hook: str, client: httpx.Client
) -> None:
    refused = ended_task(session_factory, settings, f"{hook}/hook/403", tasks.COMPLETED)
    silent = ended_task(session_factory, settings, f"{hook}/hook/999", tasks.COMPLETED)
    notifier = Notifier(session_factory, settings)
    for _ in range(3):
        notifier.run_due(client)
    assert state(session_factory, refused) == ("warning", "failed", 1)
    # Sent, no answer in time: perhaps imported, so the task stays completed (Esup-Runner's way).
    assert state(session_factory, silent) == ("completed", "unconfirmed", 1)
    with session_factory() as session:
        assert "may have arrived" in (tasks.get_task(session, silent).notify_error or "")


def test_error_message_is_null_on_success(
    session_factory: sessionmaker[Session], settings: Settings, hook: str, client: httpx.Client
) -> None:
    """Pod appends "\n---\n" + error_message to script_output whenever it is not null."""
    request = tasks.TaskRequest(
        task_type="encoding", source_url="http://127.0.0.1:1/v.mp4", notify_url=f"{hook}/hook/200"
    )
    with session_factory() as session:
        task, _ = tasks.submit(
            session, settings, request, token_sha256=tokens.digest(TOKEN), capacity=99
        )
        tasks.finish(session, task.id, tasks.COMPLETED, script_output="log")
    Notifier(session_factory, settings).run_due(client)
    assert Hook.received[-1]["body"]["error_message"] is None
    assert Hook.received[-1]["body"]["status"] == "completed"


def test_default_capacity_is_more_than_one_where_cores_allow() -> None:
    from vidfarm.cli.runner import default_capacity

    assert [default_capacity(n) for n in (1, 2, 4, 8, 16, 32, 128)] == [1, 2, 2, 2, 4, 8, 8]


def test_a_removed_token_cannot_be_used(
    session_factory: sessionmaker[Session], settings: Settings, hook: str, client: httpx.Client
) -> None:
    task_id = ended_task(session_factory, settings, f"{hook}/hook/200", tasks.COMPLETED)
    rotated = settings.model_copy(update={"runner_tokens": [SecretStr("new-token")]})
    Notifier(session_factory, rotated).run_due(client)
    assert state(session_factory, task_id) == ("warning", "failed", 1)


def test_token_matching() -> None:
    configured = [SecretStr("alpha"), SecretStr("beta")]
    assert tokens.match(configured, "beta") == tokens.digest("beta")
    assert tokens.match(configured, "gamma") is None
    assert tokens.match(configured, "") is None
    assert tokens.match(configured, "x" * 5000) is None
    assert tokens.secret_for(configured, tokens.digest("alpha")) == "alpha"
    assert tokens.secret_for(configured, tokens.digest("gone")) is None

"""Runner managers: the API and CLI contract, tokens encrypted at rest, dispatch order."""

from __future__ import annotations

import socket
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import Result
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from vidfarm.api.app import create_app
from vidfarm.auth import Role, create_token
from vidfarm.cli.app import app
from vidfarm.config import Settings
from vidfarm.dispatch.runners import registry as runner_registry
from vidfarm.errors import ConfigError, InvalidParameters
from vidfarm.models import RunnerManager
from vidfarm.runtime import Runtime, open_runtime

TOKEN = "s3cret-manager-token"


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    rt = open_runtime(Settings(data_dir=tmp_path / "data", runners_allow_private_urls=True))
    yield rt
    rt.engine.dispose()


@pytest.fixture
def api(runtime: Runtime) -> Iterator[TestClient]:
    with runtime.sessions() as session:
        admin, _ = create_token(session, role=Role.ADMIN, name="admin")
    with TestClient(create_app(runtime, run_farm=False)) as client:
        client.headers["Authorization"] = f"Bearer {admin}"
        yield client


def test_api_contract_never_returns_the_token(api: TestClient, runtime: Runtime) -> None:
    body = {"name": "rm1", "priority": 2, "url": "http://127.0.0.1:9/", "token": TOKEN}
    created = api.post("/api/v1/runners", json={**body, "active": True})
    assert created.status_code == 201
    view = created.json()
    assert set(view) == {
        "id", "name", "priority", "url", "active", "created_at", "last_used_at", "task_types"
    }  # fmt: skip
    assert view["url"] == "http://127.0.0.1:9" and view["priority"] == 2 and view["active"]
    listed = api.get("/api/v1/runners")
    assert listed.status_code == 200 and listed.json() == [view]
    patched = api.patch(f"/api/v1/runners/{view['id']}", json={"active": False, "priority": 1})
    assert patched.status_code == 200
    assert patched.json() == {**view, "active": False, "priority": 1}
    assert TOKEN not in created.text + listed.text + patched.text
    with runtime.sessions() as session:
        stored = session.scalars(select(RunnerManager)).one()
        assert TOKEN not in stored.token_encrypted
        cipher = runner_registry.load_cipher(runtime.settings)
        assert runner_registry.decrypt_token(cipher, stored) == TOKEN
    key = runtime.settings.data_dir / runner_registry.SECRET_FILE
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_api_refusals(api: TestClient, runtime: Runtime) -> None:
    body = {"name": "rm1", "url": "http://127.0.0.1:9", "token": TOKEN}
    assert api.post("/api/v1/runners", json=body).status_code == 201
    duplicate = api.post("/api/v1/runners", json=body)
    assert duplicate.status_code == 409 and "already exists" in duplicate.json()["detail"]
    for bad in (
        {**body, "name": "x", "url": "ftp://example.org"},
        {**body, "name": "y", "url": "http://169.254.169.254/"},
        {**body, "name": "z", "token": ""},
        {**body, "name": "w", "priority": 10**6},
        {**body, "name": "v", "extra": 1},
    ):
        answer = api.post("/api/v1/runners", json=bad)
        assert answer.status_code == 422, (bad, answer.text)
    assert api.patch("/api/v1/runners/nope", json={"active": True}).status_code == 404
    assert api.post("/api/v1/runners/nope/test").status_code == 404
    with runtime.sessions() as session:
        user, _ = create_token(session, role=Role.USER, name="user")
    forbidden = api.get("/api/v1/runners", headers={"Authorization": f"Bearer {user}"})
    assert forbidden.status_code == 403
    assert api.get("/api/v1/runners", headers={"Authorization": ""}).status_code == 401


def test_test_connection_explains_failures(api: TestClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    body = {"name": "gone", "url": f"http://127.0.0.1:{port}", "token": TOKEN}
    runner_id = api.post("/api/v1/runners", json=body).json()["id"]
    report = api.post(f"/api/v1/runners/{runner_id}/test").json()
    warnings = report.pop("warnings")
    assert report == {
        "ok": False,
        "status_code": None,
        "latency_ms": None,
        "message": f"connection refused: nothing listens at 127.0.0.1:{port}",
        "task_types": [],
    }
    assert len(warnings) == 1 and "no DNS name" in warnings[0]  # http://host:port, an address


def test_test_connection_timeout_and_no_health_endpoint(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path, runners_allow_private_urls=True, runners_request_timeout=0.3
    )
    with socket.socket() as silent:  # accepts connections (backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        manager = RunnerManager(
            name="slow",
            url=f"http://127.0.0.1:{port}",
            token_encrypted=runner_registry.encrypt_token(
                runner_registry.load_cipher(settings), TOKEN
            ),
        )
        report = runner_registry.test_connection(settings, manager)
    assert not report.ok and report.status_code is None
    assert report.message == f"no answer from 127.0.0.1:{port} within 0.3 s (timeout)"


@pytest.mark.parametrize("refusal", [401, 403])
def test_a_wrong_token_is_answered_at_once_without_a_retry(tmp_path: Path, refusal: int) -> None:
    """A refused token is permanent: one request, no retry, no fallback to /api/health
    (issue 18: the dashboard's wrong-token check must answer as fast as the manager does)."""
    seen: list[str] = []

    class Refusing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.path)
            body = b'{"detail": "invalid token"}'
            self.send_response(refusal)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    manager_server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    thread = threading.Thread(target=manager_server.serve_forever, daemon=True)
    thread.start()
    settings = Settings(data_dir=tmp_path, runners_allow_private_urls=True)
    try:
        manager = RunnerManager(
            name="strict",
            url=f"http://127.0.0.1:{manager_server.server_address[1]}",
            token_encrypted=runner_registry.encrypt_token(
                runner_registry.load_cipher(settings), "wrong-token"
            ),
        )
        report = runner_registry.test_connection(settings, manager)
    finally:
        manager_server.shutdown()
        manager_server.server_close()
    assert seen == ["/manager/health"]
    assert not report.ok and report.status_code == refusal
    assert f"({refusal}): check the token" in report.message


def test_private_urls_need_the_setting(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    with pytest.raises(InvalidParameters, match="loopback address"):
        runner_registry.check_manager_url("http://127.0.0.1:8000", settings)
    with pytest.raises(InvalidParameters, match="no query"):
        runner_registry.check_manager_url("http://8.8.8.8/?a=1", settings)
    allowed = settings.model_copy(update={"runners_allow_private_urls": True})
    assert runner_registry.check_manager_url("http://10.1.2.3:80/rm/", allowed) == (
        "http://10.1.2.3:80/rm"
    )
    with pytest.raises(InvalidParameters, match="metadata"):
        runner_registry.check_manager_url("http://169.254.169.254", allowed)


def test_configured_key_and_a_changed_key(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, runners_secret_key="any passphrase will do")
    cipher = runner_registry.load_cipher(settings)
    manager = RunnerManager(name="rm", token_encrypted=runner_registry.encrypt_token(cipher, TOKEN))
    assert runner_registry.decrypt_token(cipher, manager) == TOKEN
    assert not (tmp_path / runner_registry.SECRET_FILE).exists()
    other = runner_registry.load_cipher(Settings(data_dir=tmp_path))  # the generated key
    with pytest.raises(ConfigError, match="cannot be decrypted"):
        runner_registry.decrypt_token(other, manager)


def test_dispatch_order_priority_then_least_recently_used() -> None:
    now = datetime.now(UTC)

    def manager(name: str, priority: int, used: int | None, active: bool = True) -> RunnerManager:
        return RunnerManager(
            id=name,
            name=name,
            priority=priority,
            active=active,
            created_at=now,
            last_used_at=None if used is None else now - timedelta(seconds=used),
        )

    managers = [
        manager("b-recent", 1, used=1),
        manager("b-old", 1, used=100),
        manager("c", 5, used=None),
        manager("a-off", 0, used=None, active=False),
        manager("b-never", 1, used=None),
    ]
    order = [m.name for m in runner_registry.dispatch_order(managers)]
    assert order == ["b-never", "b-old", "b-recent", "c"]


def test_cli_add_list_test_disable_enable_edit(tmp_path: Path) -> None:
    env = {
        "VIDFARM_DATA_DIR": str(tmp_path),
        "VIDFARM_RUNNERS_ALLOW_PRIVATE_URLS": "true",
        "VIDFARM_RUNNER_TOKEN": TOKEN,
    }
    runner = CliRunner()

    def cli(*args: str) -> Result:
        return runner.invoke(app, ["runners", *args], env=env)

    added = cli("add", "rm1", "http://127.0.0.1:9", "--priority", "3")
    assert added.exit_code == 0, added.output
    assert "rm1" in added.stdout and "priority 3" in added.stdout and TOKEN not in added.stdout
    listed = cli("list", "--json")
    assert '"name": "rm1"' in listed.stdout and TOKEN not in listed.stdout
    tested = cli("test", "rm1")
    assert tested.exit_code == 1
    assert "connection refused" in tested.stderr and len(tested.stderr.splitlines()) == 1
    assert "disabled" in cli("disable", "rm1").stdout
    assert "active" in cli("enable", "rm1").stdout
    edited = cli("edit", "rm1", "--name", "rm-one", "--priority", "-1")
    assert edited.exit_code == 0 and "'rm-one': priority -1" in edited.stdout
    missing = cli("disable", "nope")
    assert missing.exit_code == 1
    assert missing.stderr.strip() == "vidfarm: error: no runner manager nope"


@pytest.mark.parametrize(
    ("public", "warned"),
    [
        ("http://10.0.0.5:8000", True),
        ("http://[2001:db8::1]:8000", True),
        ("http://localhost:8000", True),
        ("https://vidfarm.univ.example", False),
        ("", True),  # empty: http://host:port, an address
    ],
)
def test_runners_test_warns_when_managers_get_an_ip_literal(public: str, warned: bool) -> None:
    """Esup-Runner refuses source/notify URLs on an IP address (422) or localhost (400)."""
    settings = Settings(runners_public_url=public, host="127.0.0.1")
    warnings = runner_registry.public_url_warnings(settings)
    assert bool(warnings) is warned
    if warned:
        assert "DNS name" in warnings[0] and "VIDFARM_RUNNERS_PUBLIC_URL" in warnings[0]

"""The runner's HTTP API in-process with its default (strict) URL policy."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from vidfarm.config import Settings
from vidfarm.runner_service.app import create_runner_app
from vidfarm.runner_service.service import RunnerService
from vidfarm.runtime import open_runtime

TOKEN = "strict-token"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(data_dir=tmp_path, runner_tokens=[SecretStr(TOKEN)])
    runtime = open_runtime(settings)
    app = create_runner_app(RunnerService(runtime, capacity=1), run_farm=False)
    try:
        with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as test_client:
            yield test_client
    finally:
        runtime.engine.dispose()


@pytest.mark.parametrize(
    ("source", "notify", "message"),
    [
        ("http://127.0.0.1:8000/v.mp4", None, "source_url: host '127.0.0.1' resolves to 127.0.0.1"),
        ("http://localhost/v.mp4", None, "a loopback address: refused"),
        ("http://192.168.1.20/v.mp4", None, "a private address: refused"),
        ("http://93.184.216.34/v.mp4", "http://[::1]:80/notify", "notify_url: host '::1'"),
        ("file:///etc/passwd", None, "source_url: only http and https URLs are allowed"),
    ],
)
def test_private_urls_are_refused_by_default(
    client: TestClient, source: str, notify: str | None, message: str
) -> None:
    body = {"task_type": "encoding", "source_url": source, "notify_url": notify}
    response = client.post("/task/execute", json=body)
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert client.get("/task/list").json() == {"tasks": []}  # nothing was accepted


def test_body_errors_name_the_field(client: TestClient) -> None:
    response = client.post("/task/execute", json={"source_url": "http://93.184.216.34/v.mp4"})
    assert response.status_code == 422
    assert response.json() == {"detail": "body.task_type: Field required"}
    assert client.get("/task/list?status=lost").json() == {
        "detail": "status: unknown 'lost' (one of: pending, running, completed, failed, "
        "timeout, warning)"
    }


def test_auth_comes_before_the_body(client: TestClient) -> None:
    response = client.post("/task/execute", json={}, headers={"Authorization": ""})
    assert response.status_code == 401 and response.json() == {"detail": "missing token"}
    wrong = {"Authorization": "", "X-API-Token": "x"}
    response = client.post("/task/execute", json={}, headers=wrong)
    assert response.status_code == 403 and response.json() == {"detail": "invalid token"}


def test_pods_admin_link_shows_a_read_only_status_page(client: TestClient) -> None:
    """Pod's runner-manager admin links to {url}/admin (was a 404)."""
    page = client.get("/admin", headers={"Authorization": ""})  # a browser sends no token
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "Task slots: 1; in use: 0; free: 1." in page.text
    for status in ("pending", "running", "completed", "failed", "timeout", "warning"):
        assert f"<th scope=row>{status}</th><td>0</td>" in page.text
    assert TOKEN not in page.text

"""The dashboard's routes and its hls.js build step, without a browser.

(The browser tests are tests/e2e/test_dashboard.py.)
"""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from vidfarm.api.app import create_app
from vidfarm.api.web import assets, router
from vidfarm.auth import create_token
from vidfarm.config import Settings
from vidfarm.runtime import open_runtime


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """One app for the module: these tests only read."""
    runtime = open_runtime(Settings(data_dir=tmp_path_factory.mktemp("web") / "data"))
    tokens = {}
    with runtime.sessions() as session:
        for role in ("admin", "user"):
            tokens[role], _ = create_token(session, role=role, name=f"web {role}")
    with TestClient(create_app(runtime, run_farm=False)) as test_client:
        yield test_client, tokens
    runtime.engine.dispose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_root_serves_the_dashboard_with_a_strict_policy(
    client: tuple[TestClient, dict[str, str]],
) -> None:
    http, _ = client
    page = http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "unsafe-inline" not in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script type="module" src="/ui/static/app.js">' in page.text


def test_the_api_docs_page_runs_only_its_pinned_files_and_its_own_inline_script(
    client: tuple[TestClient, dict[str, str]],
) -> None:
    """Swagger UI comes from a CDN: the policy allows exactly those files and that script."""
    import base64

    from vidfarm.api.docs_page import SWAGGER_CSS, SWAGGER_JS

    http, _ = client
    page = http.get("/docs")
    assert page.status_code == 200
    header = page.headers["content-security-policy"]
    policy = {name: value for name, _, value in (p.partition(" ") for p in header.split("; "))}
    assert policy["default-src"] == "'none'" and policy["connect-src"] == "'self'"
    assert "unsafe-inline" not in header
    assert f'src="{SWAGGER_JS}"' in page.text and f'href="{SWAGGER_CSS}"' in page.text
    inline = re.findall(r"<script>(.*?)</script>", page.text, re.DOTALL)
    assert inline  # Swagger UI's start-up script
    for script in inline:
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in policy["script-src"]
    assert policy["script-src"].split()[0] == SWAGGER_JS  # no other script source
    assert policy["style-src"] == SWAGGER_CSS


def test_every_module_the_pages_import_is_served(
    client: tuple[TestClient, dict[str, str]],
) -> None:
    """Follow the import graph from app.js: a missing or misnamed module breaks every page."""
    http, _ = client
    seen: set[str] = set()
    pending = ["app.js", "style.css"]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        response = http.get(f"/ui/static/{name}")
        assert response.status_code == 200, name
        if name.endswith(".js"):
            assert response.headers["content-type"].startswith("text/javascript")
            pending += re.findall(r'from "\./([a-z0-9_-]+\.js)"', response.text)
    assert {"api.js", "ui.js", "jobs.js", "player.js", "workers.js", "xapi.js"} <= seen


@pytest.mark.parametrize(
    "path",
    [
        "/ui/static/router.py",
        "/ui/static/..%2Frouter.py",
        "/ui/static/%2e%2e%2f__init__.py",
        "/ui/static/.hidden.js",
        "/ui/static/missing.js",
    ],
)
def test_nothing_but_the_static_files_is_served(
    client: tuple[TestClient, dict[str, str]], path: str
) -> None:
    http, _ = client
    response = http.get(path)
    assert response.status_code == 404
    assert "def " not in response.text


def test_the_dashboard_shadows_no_route(client: tuple[TestClient, dict[str, str]]) -> None:
    http, tokens = client
    assert http.get("/healthz").json() == {"status": "ok"}
    paths = http.get("/openapi.json").json()["paths"]
    assert {"/videos/upload", "/xapi/video/", "/api/v1/jobs", "/api/v1/me"} <= set(paths)
    assert "/" not in paths  # the page is not part of the API's schema
    assert http.get("/api/v1/videos", headers=bearer(tokens["user"])).status_code == 200


def test_every_operation_has_its_own_id(client: tuple[TestClient, dict[str, str]]) -> None:
    """Client generators (openapi-generator) refuse a schema with a repeated operationId;
    media paths answer GET and HEAD as two operations."""
    http, _ = client
    paths = http.get("/openapi.json").json()["paths"]
    ids = [operation["operationId"] for path in paths.values() for operation in path.values()]
    assert sorted(ids) == sorted(set(ids))
    assert set(paths["/videos/stream/{path}"]) == {"get", "head"}


def test_me_names_the_token_and_its_role(client: tuple[TestClient, dict[str, str]]) -> None:
    http, tokens = client
    admin = http.get("/api/v1/me", headers=bearer(tokens["admin"])).json()
    user = http.get("/api/v1/me", headers=bearer(tokens["user"])).json()
    assert (admin["name"], admin["role"]) == ("web admin", "admin")
    assert (user["name"], user["role"]) == ("web user", "user")
    assert user["server"]["xapi_enabled"] is False
    assert "encode" in user["server"]["job_types"]
    missing = http.get("/api/v1/me")
    assert missing.status_code == 401 and missing.json() == {"detail": "missing API token"}


def test_without_hls_js_the_asset_is_a_clear_404(
    client: tuple[TestClient, dict[str, str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    http, tokens = client
    monkeypatch.setattr(router, "VENDOR_DIR", tmp_path / "no-vendor")
    response = http.get("/ui/vendor/hls.min.js")
    assert response.status_code == 404
    assert "python -m vidfarm.api.web.assets" in response.json()["detail"]
    me = http.get("/api/v1/me", headers=bearer(tokens["user"])).json()
    assert me["server"]["hls_js"] is False


def tarball(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return buffer.getvalue()


def test_a_tarball_that_is_not_the_pinned_one_is_refused() -> None:
    with pytest.raises(assets.AssetError, match="integrity mismatch"):
        assets.check_integrity(b"not the hls.js tarball")


def test_extract_refuses_content_that_differs_from_the_pins(tmp_path: Path) -> None:
    forged = tarball(
        {"package/dist/hls.min.js": b"alert('forged')", "package/LICENSE": b"Apache 2.0"}
    )
    with pytest.raises(assets.AssetError, match="differs from the pinned"):
        assets.extract(forged, tmp_path)
    assert not (tmp_path / "hls.min.js").exists()
    assert not assets.present(tmp_path)


def test_extract_writes_only_pinned_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script, licence = b"/* hls */", b"licence"
    pinned = (
        assets.Asset("package/dist/hls.min.js", "hls.min.js", hashlib.sha256(script).hexdigest()),
        assets.Asset("package/LICENSE", "hls.js.LICENSE", hashlib.sha256(licence).hexdigest()),
    )
    monkeypatch.setattr(assets, "ASSETS", pinned)
    data = tarball(
        {
            "package/dist/hls.min.js": script,
            "package/LICENSE": licence,
            "package/../../escape.js": b"outside",
            "package/dist/hls.js": b"unminified",
        }
    )
    assets.extract(data, tmp_path / "vendor")
    assert sorted(p.name for p in (tmp_path / "vendor").iterdir()) == [
        "hls.js.LICENSE",
        "hls.min.js",
    ]
    assert not (tmp_path / "escape.js").exists()
    assert assets.present(tmp_path / "vendor")


def test_ensure_downloads_nothing_when_the_files_are_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not assets.present():
        pytest.skip("hls.js is not fetched here (python -m vidfarm.api.web.assets)")
    for asset in assets.ASSETS:
        shutil.copy(assets.VENDOR_DIR / asset.name, tmp_path / asset.name)

    def no_network(*_: object, **__: object) -> bytes:
        raise AssertionError("downloaded although the files were there")

    monkeypatch.setattr(assets, "download", no_network)
    assert assets.ensure(tmp_path) is False

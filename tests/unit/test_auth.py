"""API tokens: hashed at rest, verified in constant time, roles enforced by the API deps."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine, delete, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from vidfarm import auth
from vidfarm.api.deps import (
    AdminAuth,
    AnyAuth,
    MediaAuth,
    Principal,
    RuntimeDep,
    SessionDep,
    UserAuth,
    WorkerAuth,
)
from vidfarm.auth import (
    Role,
    create_token,
    has_admin_token,
    list_tokens,
    parse_token,
    revoke_token,
    verify_token,
)
from vidfarm.config import Settings
from vidfarm.db import make_engine
from vidfarm.errors import InvalidParameters, NotFound
from vidfarm.models import Token
from vidfarm.runtime import Runtime
from vidfarm.storage import LocalStorage


@pytest.fixture
def sessions(session_factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions on a migrated database without tokens (fixtures_db does not empty `tokens`)."""
    with session_factory() as session:
        session.execute(delete(Token))
        session.commit()
    return session_factory


def as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


# --- tokens -------------------------------------------------------------------------------------


def test_token_format_and_roundtrip(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        for role in Role:
            plaintext, token = create_token(session, role=role, name=f"  the {role}  ")
            prefix, token_id, secret = plaintext.split("_", 2)
            assert (prefix, token_id) == ("vf", token.id)
            assert len(token_id) == 12 and token_id.isalnum() and token_id.islower()
            assert len(secret) >= 43  # token_urlsafe(32)
            assert parse_token(plaintext) == (token_id, secret)
            found = verify_token(session, plaintext)
            assert found is not None
            assert (found.id, found.role, found.name) == (token.id, role.value, f"the {role}")


def test_secret_is_hashed_at_rest(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        plaintext, token = create_token(session, role=Role.USER, name="uploader")
        secret = plaintext.split("_", 2)[2]
        row = session.execute(text("SELECT * FROM tokens")).mappings().one()
    stored = " ".join(str(value) for value in row.values())
    assert secret not in stored and plaintext not in stored
    assert row["secret_sha256"] == hashlib.sha256(secret.encode()).hexdigest()
    assert row["id"] == token.id


def test_verify_refuses_without_raising(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        plaintext, token = create_token(session, role=Role.ADMIN, name="ops")
        revoked, old = create_token(session, role=Role.ADMIN, name="old")
        revoke_token(session, old.id)
        secret = plaintext.split("_", 2)[2]
        wrong_secret = plaintext[:-2] + ("AA" if not plaintext.endswith("AA") else "BB")
        unknown_id = f"vf_{'z' * 12}_{secret}"
        refused = [
            wrong_secret,
            unknown_id,
            revoked,
            "",
            "vf_",
            "vf__",
            f"vf_{token.id}",
            f"vf_{token.id}_",
            f"VF_{token.id}_{secret}",
            f"vf_{token.id.upper()}_{secret}",
            f"Bearer {plaintext}",
            f" {plaintext}",
            f"{plaintext}é",
            "vf_" + "é" * 12 + "_x",
            "\x00" * 20,
            plaintext + "x" * 10_000,
        ]
        for candidate in refused:
            assert verify_token(session, candidate) is None, candidate
        assert verify_token(session, plaintext) is not None


def test_unknown_and_malformed_tokens_still_compare_a_hash(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    with sessions() as session:
        plaintext, _ = create_token(session, role=Role.USER, name="u")
        for candidate in (plaintext, f"vf_{'q' * 12}_secret", "nonsense"):
            calls.clear()
            verify_token(session, candidate)
            assert len(calls) == 1, candidate
            assert all(len(side) == 64 for side in calls[0])  # two hex SHA-256 digests


def test_last_used_is_written_at_most_once_a_minute(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        plaintext, token = create_token(session, role=Role.WORKER, name="w")
        assert token.last_used_at is None
    with sessions() as session:
        assert verify_token(session, plaintext) is not None
        used = session.scalar(select(Token.last_used_at).where(Token.id == token.id))
        assert used is not None
        first = as_utc(used)
        assert datetime.now(UTC) - first < timedelta(seconds=30)
    with sessions() as session:
        assert verify_token(session, plaintext) is not None
        again = session.scalar(select(Token.last_used_at).where(Token.id == token.id))
        assert again is not None and as_utc(again) == first  # no second write
        earlier = first - timedelta(minutes=5)
        session.execute(update(Token).where(Token.id == token.id).values(last_used_at=earlier))
        session.commit()
    with sessions() as session:
        assert verify_token(session, plaintext) is not None
        moved = session.scalar(select(Token.last_used_at).where(Token.id == token.id))
        assert moved is not None and as_utc(moved) > first


def test_list_revoke_and_admin_presence(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        assert not has_admin_token(session)
        create_token(session, role=Role.USER, name="a user")
        assert not has_admin_token(session)
        _, admin = create_token(session, role="admin", name="boss")
        assert has_admin_token(session)
        first = revoke_token(session, admin.id).revoked_at
        assert first is not None
        again = revoke_token(session, admin.id).revoked_at
        assert again is not None and as_utc(again) == as_utc(first)  # idempotent
        assert not has_admin_token(session)
        assert [t.name for t in list_tokens(session)] == ["a user", "boss"]
        assert [t.name for t in list_tokens(session, include_revoked=False)] == ["a user"]
        with pytest.raises(NotFound, match="no token nosuch"):
            revoke_token(session, "nosuch")
        with pytest.raises(InvalidParameters, match="unknown role 'root'"):
            create_token(session, role="root", name="x")
        with pytest.raises(InvalidParameters, match="longer than 128"):
            create_token(session, role=Role.USER, name="n" * 129)


def test_admin_may_do_what_any_role_may() -> None:
    assert auth.allows(Role.ADMIN, Role.WORKER) and auth.allows(Role.ADMIN, Role.USER)
    assert auth.allows(Role.USER, Role.USER) and not auth.allows(Role.USER, Role.WORKER)
    assert not auth.allows(Role.WORKER, Role.ADMIN) and not auth.allows(None, Role.USER)


# --- FastAPI dependencies -----------------------------------------------------------------------


def make_app(runtime: Runtime) -> FastAPI:
    app = FastAPI()
    app.state.runtime = runtime

    def show(principal: Principal) -> dict[str, str | None]:
        return {"name": principal.name, "role": principal.role}

    @app.get("/admin")
    def admin(principal: AdminAuth) -> dict[str, str | None]:
        return show(principal)

    @app.get("/user")
    def user(principal: UserAuth) -> dict[str, str | None]:
        return show(principal)

    @app.get("/worker")
    def worker(principal: WorkerAuth) -> dict[str, str | None]:
        return show(principal)

    @app.get("/any")
    def any_(principal: AnyAuth) -> dict[str, str | None]:
        return show(principal)

    @app.get("/media")
    def media(caller: MediaAuth) -> dict[str, str | None]:
        return show(caller.principal)

    @app.get("/count")
    def count(db: SessionDep, rt: RuntimeDep) -> dict[str, int | bool]:
        return {"tokens": len(list_tokens(db)), "public": rt.settings.public_media}

    return app


ROUTES = ["/admin", "/user", "/worker", "/any", "/media"]
ALLOWED = {
    "/admin": {Role.ADMIN},
    "/user": {Role.ADMIN, Role.USER},
    "/worker": {Role.ADMIN, Role.WORKER},
    "/any": set(Role),
    "/media": set(Role),
}
NEEDED = {"/admin": "admin", "/user": "user", "/worker": "worker"}


@pytest.fixture
def farm(
    sessions: sessionmaker[Session], engine: Engine, tmp_path: Path
) -> Iterator[tuple[Runtime, dict[Role, str], str]]:
    """A runtime (media private), a token per role, and one revoked admin token."""
    settings = Settings(data_dir=tmp_path / "data", public_media=False)
    runtime = Runtime(
        settings=settings, engine=engine, sessions=sessions, storage=LocalStorage(tmp_path)
    )
    with sessions() as session:
        tokens = {role: create_token(session, role=role, name=role.value)[0] for role in Role}
        revoked, old = create_token(session, role=Role.ADMIN, name="old")
        revoke_token(session, old.id)
    yield runtime, tokens, revoked


def test_roles_per_route(farm: tuple[Runtime, dict[Role, str], str]) -> None:
    runtime, tokens, _ = farm
    with TestClient(make_app(runtime)) as client:
        for route in ROUTES:
            for role, plaintext in tokens.items():
                # Both header forms, each alone.
                for headers in (
                    {"Authorization": f"Bearer {plaintext}"},
                    {"X-API-Token": plaintext},
                ):
                    response = client.get(route, headers=headers)
                    if role in ALLOWED[route]:
                        assert response.status_code == 200, (route, role, response.text)
                        assert response.json() == {"name": role.value, "role": role.value}
                    else:
                        assert response.status_code == 403, (route, role)
                        needed = NEEDED[route]
                        assert response.json() == {"detail": f"this action needs the {needed} role"}
        assert client.get("/count").json() == {"tokens": 4, "public": False}


def test_missing_and_invalid_tokens_are_401(farm: tuple[Runtime, dict[Role, str], str]) -> None:
    runtime, tokens, revoked = farm
    admin = tokens[Role.ADMIN]
    missing = [{}, {"Authorization": "Bearer "}, {"Authorization": f"Basic {admin}"}]
    invalid = [
        {"Authorization": f"Bearer {revoked}"},
        {"X-API-Token": revoked},
        {"Authorization": f"Bearer {admin[:-1]}"},
        {"X-API-Token": "vf_nonsense"},
        {"Authorization": "Bearer not-a-token-at-all"},
    ]
    with TestClient(make_app(runtime)) as client:
        for route in ROUTES:
            for headers, detail in [(h, "missing API token") for h in missing] + [
                (h, "invalid API token") for h in invalid
            ]:
                if route == "/media" and detail == "missing API token":
                    continue  # media decide per video (public ones need none): test_ownership
                response = client.get(route, headers=headers)
                assert response.status_code == 401, (route, headers)
                assert response.json() == {"detail": detail}, (route, headers)
                assert response.headers["www-authenticate"] == "Bearer"


def test_query_token_only_for_media(farm: tuple[Runtime, dict[Role, str], str]) -> None:
    runtime, tokens, revoked = farm
    with TestClient(make_app(runtime)) as client:
        for role, plaintext in tokens.items():
            response = client.get("/media", params={"token": plaintext})
            assert response.status_code == 200
            assert response.json()["role"] == role.value
            for route in ("/admin", "/user", "/worker", "/any"):
                response = client.get(route, params={"token": plaintext})
                assert response.status_code == 401
                assert response.json() == {"detail": "missing API token"}
        response = client.get("/media", params={"token": revoked})
        assert response.status_code == 401
        assert response.json() == {"detail": "invalid API token"}


def test_public_media_needs_no_token(farm: tuple[Runtime, dict[Role, str], str]) -> None:
    private, tokens, _ = farm
    settings = private.settings.model_copy(update={"public_media": True})
    runtime = Runtime(
        settings=settings, engine=private.engine, sessions=private.sessions, storage=private.storage
    )
    with TestClient(make_app(runtime)) as client:
        response = client.get("/media")
        assert response.status_code == 200
        assert response.json() == {"name": "anonymous", "role": None}
        assert client.get("/media", headers={"X-API-Token": "junk"}).status_code == 200
        assert client.get("/any").status_code == 401  # everything else still needs a token
        headers = {"X-API-Token": tokens[Role.USER]}
        assert client.get("/user", headers=headers).status_code == 200


# --- the command line ---------------------------------------------------------------------------


def vidfarm(*args: str, data: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDFARM_")}
    return subprocess.run(
        [sys.executable, "-m", "vidfarm", "token", *args],
        env={**env, "VIDFARM_DATA_DIR": str(data)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_create_list_revoke(tmp_path: Path) -> None:
    data = tmp_path / "data"
    created = vidfarm("create", "--role", "admin", "--name", "ops team", data=data)
    assert created.returncode == 0, created.stderr
    plaintext = created.stdout.strip()
    assert plaintext.startswith("vf_") and len(created.stdout.splitlines()) == 1
    token_id, secret = parse_token(plaintext) or ("", "")
    assert "cannot be shown again" in created.stderr and token_id in created.stderr
    assert secret not in created.stderr

    worker = vidfarm("create", "--role", "worker", data=data)
    assert worker.returncode == 0, worker.stderr
    worker_id = (parse_token(worker.stdout.strip()) or ("", ""))[0]

    listed = vidfarm("list", data=data)
    assert listed.returncode == 0, listed.stderr
    assert token_id in listed.stdout and worker_id in listed.stdout
    assert "ops team" in listed.stdout and "worker" in listed.stdout
    assert secret not in listed.stdout and plaintext not in listed.stdout

    engine = make_engine(f"sqlite:///{data / 'vidfarm.db'}")
    try:
        with Session(engine) as session:
            found = verify_token(session, plaintext)
            assert found is not None and found.role == "admin" and found.name == "ops team"
            assert has_admin_token(session)

        revoked = vidfarm("revoke", token_id, data=data)
        assert revoked.returncode == 0, revoked.stderr
        assert f"token {token_id} revoked" in revoked.stdout
        with Session(engine) as session:
            assert verify_token(session, plaintext) is None
            assert not has_admin_token(session)
    finally:
        engine.dispose()

    row = next(line for line in vidfarm("list", data=data).stdout.splitlines() if token_id in line)
    assert row.count("Z") == 3  # created, last used (by verify_token above), revoked
    unknown = vidfarm("revoke", "nosuch", data=data)
    assert unknown.returncode == 1
    assert unknown.stderr.strip().splitlines() == ["vidfarm: error: no token nosuch"]
    bad_role = vidfarm("create", "--role", "root", data=data)
    assert bad_role.returncode == 2 and "root" in bad_role.stderr

"""Runner managers the control plane may hand jobs to: records, encrypted tokens, order.

A manager's token is a shared secret we must send back to it (Bearer) and compare the
manager's webhook calls against, so it cannot be hashed like our own API tokens: it is
encrypted at rest with Fernet (AES-128-CBC + HMAC-SHA256) under a key from the setting
VIDFARM_RUNNERS_SECRET_KEY, else one generated once into <data_dir>/runner-secret-key (0600).
Losing that key means re-entering the managers' tokens, nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select
from sqlalchemy.orm import Session

from vidfarm.config import Settings
from vidfarm.db import write_transaction
from vidfarm.dispatch.runners.client import HealthReport, ManagerClient
from vidfarm.dispatch.runners.request import public_url
from vidfarm.errors import ConfigError, InvalidParameters, InvalidTransition, NotFound
from vidfarm.jobs import as_utc
from vidfarm.models import RunnerManager, utcnow, vidfarm_only
from vidfarm.urlguard import check_url

SECRET_FILE = "runner-secret-key"  # noqa: S105 - a file name, not a secret
NAME_MAX_CHARS = 128
TOKEN_MAX_CHARS = 4096
PRIORITY_RANGE = (-1000, 1000)
_ID = re.compile(r"^[0-9a-f]{32}$")


class DuplicateManager(InvalidTransition):
    """Another runner manager already has this name (HTTP 409)."""


# --- the token cipher ---------------------------------------------------------------------------


def load_cipher(settings: Settings) -> Fernet:
    """The Fernet cipher for manager tokens: the setting's key, else the data folder's."""
    configured = settings.runners_secret_key.get_secret_value().strip()
    if configured:
        return Fernet(_fernet_key(configured))
    path = settings.data_dir / SECRET_FILE
    try:
        return Fernet(_read_key(path))
    except FileNotFoundError:
        pass
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it meanwhile
        return Fernet(_read_key(path))
    with os.fdopen(descriptor, "w") as handle:
        handle.write(Fernet.generate_key().decode() + "\n")
    return Fernet(_read_key(path))


def _fernet_key(secret: str) -> bytes:
    """A Fernet key as given, or one derived from any other secret string (SHA-256)."""
    try:
        Fernet(secret.encode())
        return secret.encode()
    except ValueError:
        return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


def _read_key(path: Path) -> bytes:
    value = path.read_text().strip()
    try:
        Fernet(value.encode())
    except ValueError:
        raise ConfigError(
            f"{path} holds no usable Fernet key; remove it and re-add the managers"
        ) from None
    return value.encode()


def encrypt_token(cipher: Fernet, token: str) -> str:
    return cipher.encrypt(token.encode()).decode()


def decrypt_token(cipher: Fernet, manager: RunnerManager) -> str:
    try:
        return cipher.decrypt(manager.token_encrypted.encode()).decode()
    except InvalidToken:
        raise ConfigError(
            f"runner manager {manager.name}: its token cannot be decrypted with this "
            "runner secret key (VIDFARM_RUNNERS_SECRET_KEY or <data_dir>/runner-secret-key "
            "changed?); set it again with `vidfarm runners edit`"
        ) from None


# --- checking what an admin enters --------------------------------------------------------------


def check_name(name: str) -> str:
    cleaned = " ".join(str(name).split())
    if not cleaned:
        raise InvalidParameters("name: a runner manager needs a name")
    if len(cleaned) > NAME_MAX_CHARS or not cleaned.isprintable():
        raise InvalidParameters(f"name: at most {NAME_MAX_CHARS} printable characters")
    return cleaned


def check_priority(priority: int) -> int:
    low, high = PRIORITY_RANGE
    if isinstance(priority, bool) or not isinstance(priority, int) or not low <= priority <= high:
        raise InvalidParameters(f"priority: an integer from {low} to {high} (lower runs first)")
    return priority


def check_token(token: str) -> str:
    token = str(token).strip()
    if not token:
        raise InvalidParameters("token: the manager's token is required")
    if len(token) > TOKEN_MAX_CHARS or not token.isascii() or not token.isprintable():
        raise InvalidParameters(f"token: at most {TOKEN_MAX_CHARS} printable ASCII characters")
    return token


def check_manager_url(url: str, settings: Settings) -> str:
    """http(s), no credentials, no query; private addresses only when allowed (SSRF)."""
    url = check_url(url, allow_private=settings.runners_allow_private_urls, name="url")
    if "@" in url.split("//", 1)[-1].split("/", 1)[0]:
        raise InvalidParameters("url: put the token in `token`, not in the URL")
    if "?" in url or "#" in url:
        raise InvalidParameters("url: the manager's base URL takes no query or fragment")
    return url.rstrip("/")


# --- records ------------------------------------------------------------------------------------


def manager_view(manager: RunnerManager) -> dict[str, Any]:
    """What the API and CLI show of a manager: never its token."""
    return {
        "id": manager.id,
        "name": manager.name,
        "priority": manager.priority,
        "url": manager.url,
        "active": manager.active,
        "task_types": manager.task_types or [],
        "created_at": as_utc(manager.created_at).isoformat() if manager.created_at else None,
    }


def list_managers(session: Session) -> list[RunnerManager]:
    """Every manager in dispatch order (priority, then name)."""
    stmt = select(RunnerManager).order_by(RunnerManager.priority, RunnerManager.name)
    return list(session.scalars(stmt.execution_options(populate_existing=True)))


def get_manager(session: Session, key: str) -> RunnerManager:
    """A manager by id or by name."""
    if not key or len(key) > NAME_MAX_CHARS or not key.isprintable():
        raise NotFound(f"no runner manager {key[:NAME_MAX_CHARS]!r}")
    manager = session.get(RunnerManager, key, populate_existing=True) if _ID.match(key) else None
    if manager is None:
        manager = session.scalar(select(RunnerManager).where(RunnerManager.name == key))
    if manager is None:
        raise NotFound(f"no runner manager {key}")
    return manager


def add_manager(
    session: Session,
    settings: Settings,
    *,
    name: str,
    url: str,
    token: str,
    priority: int = 0,
    active: bool = True,
) -> RunnerManager:
    name = check_name(name)
    manager = RunnerManager(
        name=name,
        priority=check_priority(priority),
        url=check_manager_url(url, settings),
        token_encrypted=encrypt_token(load_cipher(settings), check_token(token)),
        active=bool(active),
        created_at=utcnow(),
        updated_at=utcnow(),
    )
    with write_transaction(session):
        _refuse_duplicate(session, name, None)
        session.add(manager)
    return manager


def update_manager(
    session: Session, settings: Settings, key: str, changes: dict[str, Any]
) -> RunnerManager:
    """Change any of name, priority, url, token, active; the others stay as they are."""
    unknown = sorted(set(changes) - {"name", "priority", "url", "token", "active"})
    if unknown:
        raise InvalidParameters(f"unknown field {', '.join(unknown)}")
    checked: dict[str, Any] = {}
    if "name" in changes:
        checked["name"] = check_name(changes["name"])
    if "priority" in changes:
        checked["priority"] = check_priority(changes["priority"])
    if "url" in changes:
        checked["url"] = check_manager_url(changes["url"], settings)
    if "token" in changes:
        checked["token_encrypted"] = encrypt_token(
            load_cipher(settings), check_token(changes["token"])
        )
    if "url" in checked or "token" in checked:  # maybe another manager: ask it again
        checked["task_types"] = None
        checked["task_types_checked_at"] = None
    if "active" in changes:
        if not isinstance(changes["active"], bool):
            raise InvalidParameters("active: true or false")
        checked["active"] = changes["active"]
    with write_transaction(session):
        manager = get_manager(session, key)
        if "name" in checked:
            _refuse_duplicate(session, checked["name"], manager.id)
        for field, value in checked.items():
            setattr(manager, field, value)
        manager.updated_at = utcnow()
    return manager


def _refuse_duplicate(session: Session, name: str, own_id: str | None) -> None:
    existing = session.scalar(select(RunnerManager.id).where(RunnerManager.name == name))
    if existing is not None and existing != own_id:
        raise DuplicateManager(f"a runner manager named {name!r} already exists")


def dispatch_order(managers: Sequence[RunnerManager]) -> list[RunnerManager]:
    """Active managers, lowest priority value first; equal priorities take turns.

    Within a priority the least recently used manager comes first (a manager never used
    before comes before all others), which is round-robin kept in SQL, so every process of
    the control plane agrees on whose turn it is.
    """
    active = [m for m in managers if m.active]
    return sorted(
        active,
        key=lambda m: (
            m.priority,
            m.last_used_at is not None,
            as_utc(m.last_used_at).timestamp() if m.last_used_at else 0.0,
            as_utc(m.created_at).timestamp() if m.created_at else 0.0,
            m.id,
        ),
    )


def record_task_types(session: Session, manager_id: str, report: HealthReport) -> None:
    """Remember what a manager's health answer announced (an answer that failed says nothing
    new: what was known stays)."""
    if not report.ok:
        return
    with write_transaction(session):
        manager = session.get(RunnerManager, manager_id, populate_existing=True)
        if manager is not None:
            manager.task_types = list(report.task_types) or None
            manager.task_types_checked_at = utcnow()


def takes(manager: RunnerManager, task_type: str) -> bool:
    """Whether the manager may be offered `task_type`: Pod's types go to every manager, a
    vidfarm-only type only to one that announced it."""
    return not vidfarm_only(task_type) or task_type in (manager.task_types or [])


def test_connection(
    settings: Settings, manager: RunnerManager, session: Session | None = None
) -> HealthReport:
    """Pod's "Test connection": the manager's health endpoint, with its token; with a
    session, what it announced is remembered (`record_task_types`)."""
    token = decrypt_token(load_cipher(settings), manager)
    with ManagerClient(
        name=manager.name,
        url=manager.url,
        token=token,
        timeout=settings.runners_request_timeout,
        allow_private=settings.runners_allow_private_urls,
    ) as client:
        report = client.health()
    if session is not None:
        record_task_types(session, manager.id, report)
    return replace(report, warnings=public_url_warnings(settings))


def public_url_warnings(settings: Settings) -> tuple[str, ...]:
    """Esup-Runner refuses (422) every source_url and notify_url whose host is an IP literal
    in a private or loopback range, and `localhost` for notify: say so before a job waits."""
    url = public_url(settings)
    host = (urlsplit(url).hostname or "").strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            return ()
    setting = "VIDFARM_RUNNERS_PUBLIC_URL" if settings.runners_public_url else "host:port"
    return (
        f"the URL managers are given ({url}, from {setting}) has no DNS name: Esup-Runner "
        "refuses source and notify URLs on an IP address or localhost (422); set "
        "VIDFARM_RUNNERS_PUBLIC_URL to a DNS name that resolves to this control plane",
    )

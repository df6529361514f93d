"""/api/v1/runners: the runner managers jobs are dispatched to (admin only).

Tokens go in, never out: a manager's token is encrypted at rest and no route returns it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Body, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, select

from vidfarm.api.deps import AdminAuth, RuntimeDep, SessionDep
from vidfarm.db import write_transaction
from vidfarm.dispatch.runners import registry as runner_registry
from vidfarm.errors import InvalidParameters, InvalidTransition
from vidfarm.jobs import as_utc
from vidfarm.models import RunnerAssignment, RunnerManager

router = APIRouter(prefix="/api/v1/runners", tags=["runners"])


_URL = r"^https?://[A-Za-z0-9.\[\]:-]+"  # the schema's share; the address is checked on save
_TOKEN = r"^[\x20-\x7e]+$"  # noqa: S105 - a pattern: printable ASCII, as a header needs
_LOW, _HIGH = runner_registry.PRIORITY_RANGE


class RunnerIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=runner_registry.NAME_MAX_CHARS)
    url: str = Field(
        min_length=1, max_length=4096, pattern=_URL, description="The manager's base URL."
    )
    token: str = Field(min_length=1, max_length=runner_registry.TOKEN_MAX_CHARS, pattern=_TOKEN)
    priority: int = Field(
        default=0, ge=_LOW, le=_HIGH, description="Lower is tried first; equal ones take turns."
    )
    active: bool = True


class RunnerPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=128)
    url: str | None = Field(default=None, min_length=1, max_length=4096, pattern=_URL)
    token: str | None = Field(default=None, min_length=1, max_length=4096, pattern=_TOKEN)
    priority: int | None = Field(default=None, ge=_LOW, le=_HIGH)
    active: bool | None = None


@router.get("")
def list_runners(session: SessionDep, _: AdminAuth) -> list[dict[str, Any]]:
    """Every runner manager, in dispatch order (the token is never shown), with the last time
    a job was handed to it."""
    return [_view(m) for m in runner_registry.list_managers(session)]


@router.post("", status_code=201, responses={409: {}, 422: {}})
def add_runner(
    body: Annotated[RunnerIn, Body()], runtime: RuntimeDep, session: SessionDep, _: AdminAuth
) -> dict[str, Any]:
    """Register a runner manager (Esup-Runner protocol) with its shared token."""
    with _private_hint():
        manager = runner_registry.add_manager(
            session,
            runtime.settings,
            name=body.name,
            url=body.url,
            token=body.token,
            priority=body.priority,
            active=body.active,
        )
    return _view(manager)


@router.patch("/{runner_id}", responses={404: {}, 409: {}, 422: {}})
def edit_runner(
    runner_id: str,
    body: Annotated[RunnerPatch, Body()],
    runtime: RuntimeDep,
    session: SessionDep,
    _: AdminAuth,
) -> dict[str, Any]:
    """Change any of name, priority, url, token, active (e.g. `{"active": false}`)."""
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    with _private_hint():
        manager = runner_registry.update_manager(session, runtime.settings, runner_id, changes)
    return _view(manager)


@router.delete("/{runner_id}", status_code=204, responses={404: {}, 409: {}})
def delete_runner(runner_id: str, session: SessionDep, _: AdminAuth) -> Response:
    """Forget a runner manager; refused while it holds a job (disable it and wait)."""
    with write_transaction(session):  # the check and the delete under one write lock
        manager = runner_registry.get_manager(session, runner_id)
        busy = session.scalar(
            select(func.count())
            .select_from(RunnerAssignment)
            .where(
                RunnerAssignment.manager_id == manager.id,
                RunnerAssignment.state.in_(["submitting", "running"]),
            )
        )
        if busy:
            raise InvalidTransition(
                f"{manager.name} holds {busy} job(s): disable it and delete it once they end"
            )
        session.delete(manager)
    return Response(status_code=204)


def _view(manager: RunnerManager) -> dict[str, Any]:
    """The registry's view, and when a job was last handed to the manager."""
    last = manager.last_used_at
    return {
        **runner_registry.manager_view(manager),
        "last_used_at": None if last is None else as_utc(last).isoformat(),
    }


_PRIVATE = ("a private address", "a loopback address")
_HINT = "set VIDFARM_RUNNERS_ALLOW_PRIVATE_URLS=true to allow managers on this network"


@contextmanager
def _private_hint() -> Iterator[None]:
    """A private/loopback refusal says which setting allows it (a LAN runner is common)."""
    try:
        yield
    except InvalidParameters as error:
        if any(words in str(error) for words in _PRIVATE):
            raise InvalidParameters(f"{error} ({_HINT})") from None
        raise


@router.post("/{runner_id}/test", responses={404: {}})
def test_runner(
    runner_id: str, runtime: RuntimeDep, session: SessionDep, _: AdminAuth
) -> dict[str, Any]:
    """Pod's "Test connection": GET {url}/manager/health (else /api/health), with the token."""
    manager = runner_registry.get_manager(session, runner_id)
    return runner_registry.test_connection(runtime.settings, manager, session).as_dict()

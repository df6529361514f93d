"""/api/v1/runners: the runner managers jobs are dispatched to (admin only).

Tokens go in, never out: a manager's token is encrypted at rest and no route returns it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field

from vidfarm.api.deps import AdminAuth, RuntimeDep, SessionDep
from vidfarm.dispatch.runners import registry as runner_registry

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
    """Every runner manager, in dispatch order (the token is never shown)."""
    return [runner_registry.manager_view(m) for m in runner_registry.list_managers(session)]


@router.post("", status_code=201, responses={409: {}, 422: {}})
def add_runner(
    body: Annotated[RunnerIn, Body()], runtime: RuntimeDep, session: SessionDep, _: AdminAuth
) -> dict[str, Any]:
    """Register a runner manager (Esup-Runner protocol) with its shared token."""
    manager = runner_registry.add_manager(
        session,
        runtime.settings,
        name=body.name,
        url=body.url,
        token=body.token,
        priority=body.priority,
        active=body.active,
    )
    return runner_registry.manager_view(manager)


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
    manager = runner_registry.update_manager(session, runtime.settings, runner_id, changes)
    return runner_registry.manager_view(manager)


@router.post("/{runner_id}/test", responses={404: {}})
def test_runner(
    runner_id: str, runtime: RuntimeDep, session: SessionDep, _: AdminAuth
) -> dict[str, Any]:
    """Pod's "Test connection": GET {url}/manager/health (else /api/health), with the token."""
    manager = runner_registry.get_manager(session, runner_id)
    return runner_registry.test_connection(runtime.settings, manager).as_dict()

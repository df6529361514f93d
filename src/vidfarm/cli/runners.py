"""`vidfarm runners ...`: the runner managers this control plane dispatches to.

(Not to be confused with `vidfarm runner`, which *is* a runner manager.)
"""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

import typer
from rich.table import Table

from vidfarm.cli.support import console, errors, fail, guarded, runtime
from vidfarm.dispatch.runners import registry as runner_registry

runners_app = typer.Typer(
    help="Runner managers (Esup-Runner protocol) that jobs are sent to with "
    "VIDFARM_DISPATCHER=runners: add, list, test, disable, enable, edit.",
    no_args_is_help=True,
)
TOKEN_ENV = "VIDFARM_RUNNER_TOKEN"  # noqa: S105 - a variable name


def _token(given: str | None) -> str | None:
    """--token, else $VIDFARM_RUNNER_TOKEN (keeps it out of the shell history)."""
    return given if given else os.environ.get(TOKEN_ENV) or None


def _show(view: dict[str, Any]) -> None:
    state = "active" if view["active"] else "disabled"
    console.print(
        f"runner manager {view['id']} {view['name']!r}: priority {view['priority']}, "
        f"{view['url']}, {state}",
        markup=False,
        highlight=False,
    )


@runners_app.command("add")
@guarded
def add(
    name: Annotated[str, typer.Argument(help="A name for the manager.")],
    url: Annotated[str, typer.Argument(help="The manager's base URL, e.g. https://rm.example")],
    token: Annotated[
        str | None, typer.Option(help=f"The manager's token (or set ${TOKEN_ENV}).")
    ] = None,
    priority: Annotated[int, typer.Option(help="Lower is tried first; equal ones rotate.")] = 0,
    disabled: Annotated[bool, typer.Option("--disabled", help="Add it inactive.")] = False,
) -> None:
    """Register a runner manager; its token is stored encrypted."""
    secret = _token(token)
    if secret is None:
        fail(f"the manager's token is required: --token TOKEN or ${TOKEN_ENV}")
    with runtime() as rt, rt.sessions() as session:
        manager = runner_registry.add_manager(
            session, rt.settings, name=name, url=url, token=secret, priority=priority,
            active=not disabled,
        )  # fmt: skip
        _show(runner_registry.manager_view(manager))


@runners_app.command("list")
@guarded
def list_runners(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List runner managers in dispatch order (never their tokens)."""
    with runtime() as rt, rt.sessions() as session:
        views = [runner_registry.manager_view(m) for m in runner_registry.list_managers(session)]
    if as_json:
        console.print_json(json.dumps(views))
        return
    table = Table("id", "name", "priority", "url", "active", "created")
    for view in views:
        table.add_row(
            view["id"],
            view["name"],
            str(view["priority"]),
            view["url"],
            "yes" if view["active"] else "no",
            (view["created_at"] or "-")[:16],
        )
    console.print(table)


@runners_app.command("test")
@guarded
def test(
    runner: Annotated[str, typer.Argument(help="Runner manager id or name.")],
) -> None:
    """Test the connection: GET {url}/manager/health (else /api/health) with the token."""
    with runtime() as rt, rt.sessions() as session:
        manager = runner_registry.get_manager(session, runner)
        report = runner_registry.test_connection(rt.settings, manager, session)
    if not report.ok:  # one line: what is wrong now
        fail(f"runner manager {manager.name}: {report.message}")
    console.print(f"runner manager {manager.name}: {report.message}", highlight=False)
    if report.task_types:
        console.print(f"task types: {', '.join(report.task_types)}", highlight=False)
    for warning in report.warnings:
        errors.print(f"warning: {warning}", markup=False, highlight=False, soft_wrap=True)


def _edit(runner: str, changes: dict[str, Any]) -> None:
    with runtime() as rt, rt.sessions() as session:
        manager = runner_registry.update_manager(session, rt.settings, runner, changes)
        _show(runner_registry.manager_view(manager))


@runners_app.command("disable")
@guarded
def disable(runner: Annotated[str, typer.Argument(help="Runner manager id or name.")]) -> None:
    """Stop sending new jobs to a manager (tasks it runs still finish and are imported)."""
    _edit(runner, {"active": False})


@runners_app.command("enable")
@guarded
def enable(runner: Annotated[str, typer.Argument(help="Runner manager id or name.")]) -> None:
    """Send jobs to a disabled manager again."""
    _edit(runner, {"active": True})


@runners_app.command("edit")
@guarded
def edit(
    runner: Annotated[str, typer.Argument(help="Runner manager id or name.")],
    name: Annotated[str | None, typer.Option(help="New name.")] = None,
    url: Annotated[str | None, typer.Option(help="New base URL.")] = None,
    token: Annotated[
        str | None, typer.Option(help=f"New token (or set ${TOKEN_ENV} and pass --new-token).")
    ] = None,
    new_token: Annotated[
        bool, typer.Option("--new-token", help=f"Take the new token from ${TOKEN_ENV}.")
    ] = False,
    priority: Annotated[int | None, typer.Option(help="New priority.")] = None,
) -> None:
    """Change a manager's name, URL, token or priority."""
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if url is not None:
        changes["url"] = url
    if priority is not None:
        changes["priority"] = priority
    if token is not None or new_token:
        secret = _token(token)
        if secret is None:
            fail(f"--new-token needs ${TOKEN_ENV}")
        changes["token"] = secret
    if not changes:
        fail("nothing to change: give --name, --url, --token or --priority")
    _edit(runner, changes)

"""`vidfarm xapi ...`: watch the xAPI outbox, redeliver dead letters, deliver by hand."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from vidfarm.cli.support import console, guarded, runtime
from vidfarm.errors import ConfigError
from vidfarm.xapi import outbox
from vidfarm.xapi.delivery import XapiDelivery

xapi_app = typer.Typer(help="xAPI outbox: status, dead letters, delivery.", no_args_is_help=True)


@xapi_app.command("status")
@guarded
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Pending, delivered and dead statements; whether delivery is paused, and why."""
    with runtime() as rt, rt.sessions() as session:
        state = outbox.outbox_status(session).as_dict()
    if as_json:
        console.print_json(json.dumps(state))
        return
    line = f"pending {state['pending']}, delivered {state['delivered']}, dead {state['dead']}"
    console.print(line, highlight=False)
    if state["paused"]:
        console.print(f"PAUSED: {state['pause_reason']}", markup=False, highlight=False)
    if state["retrying"]:
        console.print(
            f"retrying {state['retrying']} (next at {state['next_attempt_at']}): "
            f"{state['last_error']}",
            markup=False,
            highlight=False,
        )


@xapi_app.command("retry-dead")
@guarded
def retry_dead(
    ids: Annotated[
        list[str] | None, typer.Argument(help="Statement ids; all dead if none.")
    ] = None,
) -> None:
    """Queue dead statements again (after the LRS or the statement was fixed)."""
    with runtime() as rt, rt.sessions() as session:
        moved = outbox.redeliver_dead(session, ids or None)
    console.print(f"{moved} statements queued again", highlight=False)


@xapi_app.command("deliver")
@guarded
def deliver(
    rounds: Annotated[int, typer.Option(help="At most this many batches.", min=1)] = 1000,
) -> None:
    """Deliver due statements now, batch after batch, until none is due or delivery pauses."""
    with runtime() as rt:
        if not rt.settings.xapi_lrs_url:
            raise ConfigError("VIDFARM_XAPI_LRS_URL is not set")
        delivery = XapiDelivery(rt.sessions, rt.settings)
        totals = {"delivered": 0, "dead": 0, "retried": 0}
        try:
            for _ in range(rounds):
                report = delivery.deliver_once()
                totals["delivered"] += report.delivered
                totals["dead"] += report.dead
                totals["retried"] += report.retried
                if report.paused:
                    raise ConfigError(f"delivery paused: {report.reason}")
                if report.claimed == 0:
                    break
        finally:
            delivery.stop()
    console.print(
        f"delivered {totals['delivered']}, dead {totals['dead']}, retry later {totals['retried']}",
        highlight=False,
    )

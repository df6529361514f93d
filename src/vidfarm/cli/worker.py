"""`vidfarm worker`: a Celery worker of the farm (no database; the API, storage and a broker)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

from vidfarm.cli.support import console, settings
from vidfarm.errors import ConfigError


def worker_command(
    queues: Annotated[
        str,
        typer.Option(help="Comma-separated: encoding, transcription, xapi (vidfarm's queues)."),
    ] = "",
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Jobs run at once.")] = 1,
    name: Annotated[str, typer.Option(help="Worker name (shown in Flower and inspect).")] = "",
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "info",
) -> None:
    """Run a Celery worker: claims jobs over the API, reports with fencing tokens."""
    from vidfarm.dispatch.celery_app import make_celery, worker_context
    from vidfarm.dispatch.queues import (
        POD_QUEUES,
        check_queues,
        describe_broker,
        own_queues,
        resolve_queues,
    )

    config = settings()
    if not config.broker_url:
        raise ConfigError("vidfarm worker needs VIDFARM_BROKER_URL (redis://... or amqp://...)")
    chosen = resolve_queues(config, queues)
    worker_context()  # URL, token and API answer checked now, in one line if wrong
    logging.basicConfig(level=loglevel.upper(), format="%(levelname)s %(name)s: %(message)s")
    broker = describe_broker(config.broker_url)
    try:
        check = check_queues(config.broker_url, {q: own_queues(config)[q] for q in chosen})
    except Exception as error:  # down now: Celery keeps retrying, the queues are checked then
        console.print(
            f"cannot check the queues on {broker} yet: {error}", markup=False, highlight=False
        )
        without_priority: list[str] = []
    else:
        if check.refused:
            raise ConfigError(next(iter(check.refused.values())))
        for warning in check.warnings:
            console.print(f"warning: {warning}", markup=False, highlight=False)
        without_priority = check.without_priority
    for queue in set(chosen) & POD_QUEUES:
        console.print(
            f"warning: {queue} is also an Esup-Pod queue name: on a broker database/vhost "
            "shared with Pod, keep vidfarm's default names (vidfarm.*)",
            markup=False,
            highlight=False,
        )
    app = make_celery(config, without_priority)
    hostname = f"{name or 'vidfarm'}@%h"
    console.print(
        f"vidfarm worker {hostname}: {broker}, queues {', '.join(chosen)} "
        f"(concurrency {concurrency})",
        markup=False,
        highlight=False,
    )
    argv = [
        "worker",
        f"--queues={','.join(chosen)}",
        f"--concurrency={concurrency}",
        f"--hostname={hostname}",
        f"--loglevel={loglevel}",
        "--pool=threads",
        "--task-events",
        "--without-mingle",
    ]
    app.worker_main(argv)

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
        typer.Option(help="Comma-separated queues: encoding, transcription, xapi (or yours)."),
    ] = "",
    concurrency: Annotated[int, typer.Option(min=1, max=64, help="Jobs run at once.")] = 1,
    name: Annotated[str, typer.Option(help="Worker name (shown in Flower and inspect).")] = "",
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "info",
) -> None:
    """Run a Celery worker: claims jobs over the API, reports with fencing tokens."""
    from vidfarm.dispatch.celery_app import make_celery, worker_context
    from vidfarm.dispatch.celery_app import queues as default_queues

    config = settings()
    if not config.broker_url:
        raise ConfigError("vidfarm worker needs VIDFARM_BROKER_URL (redis://... or amqp://...)")
    chosen = [q.strip() for q in queues.split(",") if q.strip()] or default_queues(config)
    worker_context()  # URL, token and API answer checked now, in one line if wrong
    logging.basicConfig(level=loglevel.upper(), format="%(levelname)s %(name)s: %(message)s")
    app = make_celery(config)
    hostname = f"{name or 'vidfarm'}@%h"
    console.print(
        f"vidfarm worker {hostname} on {', '.join(chosen)} (concurrency {concurrency})",
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

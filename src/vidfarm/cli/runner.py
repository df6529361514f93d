"""`vidfarm runner`: serve the Esup-Runner protocol, running tasks on the embedded farm."""

from __future__ import annotations

import logging
import os
from typing import Annotated

import typer

from vidfarm import __version__
from vidfarm.cli.support import console, settings
from vidfarm.config import Settings
from vidfarm.errors import ConfigError
from vidfarm.runtime import open_runtime


def default_capacity(cores: int) -> int:
    """Task slots when none are configured: more than one wherever cores allow.

    x264 already spreads one 1080p ladder over the cores, so slots beyond a quarter of them
    only add memory; but a second slot overlaps one task's download, hashing, publishing and
    notification (one core, mostly I/O) with another's encode, and lets a short clip start
    while a two-hour lecture encodes. docs/runner.md says the same.
    """
    return 1 if cores < 2 else max(2, min(8, cores // 4))


def runner_settings(config: Settings) -> tuple[Settings, int]:
    """The settings a runner runs with, and its capacity; refuses to start without a token."""
    if not config.runner_tokens or not all(t.get_secret_value() for t in config.runner_tokens):
        raise ConfigError(
            "VIDFARM_RUNNER_TOKENS is empty: set the token(s) Esup-Pod will send "
            '(comma-separated or a JSON list), e.g. VIDFARM_RUNNER_TOKENS="$(openssl rand -hex 32)"'
        )
    capacity = config.runner_capacity or default_capacity(os.cpu_count() or 1)
    # One job per task slot, on this process's own pool (never a broker or other runners).
    return config.model_copy(
        update={"worker_concurrency": capacity, "dispatcher": "local"}
    ), capacity


def runner_command(
    host: Annotated[str | None, typer.Option(help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port.")] = None,
) -> None:
    """Run a runner manager for Esup-Pod: /task/execute, /task/result, ... on HOST:PORT."""
    import uvicorn

    from vidfarm.runner_service.app import create_runner_app
    from vidfarm.runner_service.service import RunnerService

    config, capacity = runner_settings(settings())
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    rt = open_runtime(config)
    listen_host, listen_port = host or config.host, port or config.port
    console.print(
        f"vidfarm runner {__version__}: data in {config.data_dir.resolve()}, "
        f"{capacity} task slot(s), {len(config.runner_tokens)} client token(s); "
        f"Esup-Pod's runner manager URL: http://{listen_host}:{listen_port}"
    )
    if config.runner_allow_private_urls:
        console.print("warning: VIDFARM_RUNNER_ALLOW_PRIVATE_URLS is on (private URLs allowed)")
    try:
        uvicorn.run(
            create_runner_app(RunnerService(rt, capacity)),
            host=listen_host,
            port=listen_port,
            log_level="info",
            timeout_graceful_shutdown=30,
        )
    finally:
        rt.engine.dispose()

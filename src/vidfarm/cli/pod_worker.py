"""`vidfarm pod-worker`: Esup-Pod's remote workers, replaced with no change to Pod.

Settings keep Pod's names (environment, or the site's settings_local.py with --pod-settings,
read without executing it). Pod's queues live on two brokers (xapi apart): one Celery worker
runs per broker, in its own process when both are asked for.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from vidfarm.cli.support import console, settings
from vidfarm.errors import ConfigError


def pod_worker_command(
    queues: Annotated[
        str, typer.Option(help="Comma-separated Pod queues: encoding, transcripting, xapi.")
    ] = "encoding,transcripting,xapi",
    pod_settings: Annotated[
        Path | None,
        typer.Option(help="Pod's settings_local.py: literal settings are read, never executed."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, max=64, help="Encoding/transcription tasks run at once.")
    ] = 1,
    xapi_batch_size: Annotated[
        int,
        typer.Option(
            min=1, max=500, help="Most xAPI statements per POST (the xapi worker takes as many)."
        ),
    ] = 50,
    xapi_requeue_seconds: Annotated[
        float,
        typer.Option(
            min=0.1,
            help="First wait in the broker of a statement the LRS refused (doubles to 10 min).",
        ),
    ] = 30.0,
    metrics_port: Annotated[
        int, typer.Option(min=0, max=65535, help="Serve Prometheus metrics here (0: off).")
    ] = 0,
    metrics_address: Annotated[str, typer.Option(help="Address of the metrics server.")] = (
        "127.0.0.1"
    ),
    visibility_timeout: Annotated[
        float,
        typer.Option(
            min=1, help="Seconds before Redis hands a dead worker's task out again (12 h)."
        ),
    ] = 12 * 3600,
    loglevel: Annotated[str, typer.Option(help="Celery log level.")] = "info",
) -> None:
    """Run Pod's Celery tasks (Pod's names, arguments, files and callbacks) with vidfarm."""
    from vidfarm.dispatch.queues import describe_broker
    from vidfarm.pod_worker.app import QUEUES, Context, configure, make_pod_app
    from vidfarm.pod_worker.callbacks import PodApi
    from vidfarm.pod_worker.settings import load_pod_settings

    pod = load_pod_settings(os.environ, pod_settings)
    chosen = [q.strip() for q in queues.split(",") if q.strip()]
    for queue in chosen:
        if queue not in QUEUES:
            raise ConfigError(
                f"--queues: {queue!r} is not a Pod queue (one of: {', '.join(QUEUES)})"
            )
    if not chosen:
        raise ConfigError("--queues: name at least one of Pod's queues")
    _check(pod, chosen)
    groups: dict[tuple[str, bool], list[str]] = {}
    for queue in chosen:  # xapi apart: its worker takes a batch of messages at once
        groups.setdefault((pod.broker_for(queue), queue == "xapi"), []).append(queue)
    if len(groups) > 1:  # one Celery worker per broker (and for xapi), each its own process
        _run_children(list(groups.values()), sys.argv[1:])
        return
    [((broker, is_xapi), group)] = groups.items()
    logging.basicConfig(level=loglevel.upper(), format="%(levelname)s %(name)s: %(message)s")
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=metrics_address)
    api = PodApi(url=pod.api_url, token=pod.api_token)
    configure(
        Context(
            pod=pod,
            settings=settings(),
            api=api,
            xapi_batch_size=xapi_batch_size,
            xapi_requeue_seconds=xapi_requeue_seconds,
        )
    )
    hostname = f"pod-{'-'.join(group)}@%h"
    console.print(
        f"vidfarm pod-worker {hostname}: {describe_broker(broker)}, queues {', '.join(group)}; "
        f"Pod API {pod.api_url}; MEDIA_ROOT {pod.media_root or '(not set)'}",
        markup=False,
        highlight=False,
    )
    make_pod_app(broker, visibility_timeout).worker_main(
        [
            "worker",
            f"--queues={','.join(group)}",
            # xapi: one thread per statement of a batch, each waiting for the batch's POST
            f"--concurrency={xapi_batch_size if is_xapi else concurrency}",
            f"--hostname={hostname}",
            f"--loglevel={loglevel}",
            "--pool=threads",
            "--without-mingle",
        ]
    )


def _check(pod: object, chosen: list[str]) -> None:
    """Pod's worker crashes later with an unclear error on a missing setting: say it now."""
    from vidfarm.pod_worker.settings import PodSettings

    assert isinstance(pod, PodSettings)
    needed = []
    if "encoding" in chosen or "transcripting" in chosen:
        if not pod.encoding_broker:
            needed.append("ENCODING_TRANSCODING_CELERY_BROKER_URL")
        if not pod.api_url:
            needed.append("POD_API_URL (e.g. https://pod.univ.fr/rest)")
        if not pod.api_token:
            needed.append("POD_API_TOKEN (a staff user's token)")
        if pod.media_root is None:
            needed.append("MEDIA_ROOT (Pod's media folder, shared)")
    if "xapi" in chosen:
        if not pod.xapi_broker:
            needed.append("XAPI_CELERY_BROKER_URL")
        if not pod.lrs_url:
            needed.append("XAPI_LRS_URL")
    if needed:
        raise ConfigError(
            "Pod settings missing (environment or --pod-settings): " + ", ".join(needed)
        )


def _run_children(groups: list[list[str]], argv: list[str]) -> None:
    """One child per broker; SIGTERM/SIGINT reach every child; the first to fail ends all."""
    base = [a for a in argv if not a.startswith("--queues")]
    if "--queues" in argv:  # "--queues X" as two words
        i = argv.index("--queues")
        base = argv[:i] + argv[i + 2 :]
    children = [
        subprocess.Popen([sys.executable, "-m", "vidfarm", *base, f"--queues={','.join(group)}"])
        for group in groups
    ]

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.poll() is None:
                child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [child.wait() for child in children]
    if any(codes):
        raise typer.Exit(max(codes))

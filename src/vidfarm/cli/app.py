"""The `vidfarm` command: encode a file, run the farm; the command groups live beside it.

Every command exits 0 on success and non-zero with one line on stderr on failure: no traceback
unless VIDFARM_DEBUG=1.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from vidfarm import __version__
from vidfarm.auth import has_admin_token
from vidfarm.cli import jobs as jobs_commands
from vidfarm.cli.deploy import deploy_app
from vidfarm.cli.pod_worker import pod_worker_command
from vidfarm.cli.runner import runner_command
from vidfarm.cli.runners import runners_app
from vidfarm.cli.support import console, guarded, progress_bar, runtime, settings
from vidfarm.cli.tokens import token_app
from vidfarm.cli.transcribe import transcribe as transcribe_command
from vidfarm.cli.worker import worker_command
from vidfarm.cli.xapi import xapi_app
from vidfarm.config import Settings
from vidfarm.media.parallel import encode_parallel
from vidfarm.media.plan import plan_encode
from vidfarm.media.probe import probe
from vidfarm.media.profiles import available_profiles, load_profile
from vidfarm.media.tools import ffmpeg_executable
from vidfarm.runtime import open_runtime

app = typer.Typer(
    name="vidfarm",
    help="An open video processing farm: adaptive-streaming encodes, transcription, xAPI.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.command()
@guarded
def encode(
    source: Annotated[Path, typer.Argument(help="The video or audio file to encode.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Folder to create.")],
    profile: Annotated[str | None, typer.Option(help="Encoding profile name.")] = None,
    start: Annotated[float | None, typer.Option(help="Cut: start at this second.")] = None,
    end: Annotated[float | None, typer.Option(help="Cut: end at this second.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output folder.")] = False,
    parallel: Annotated[
        int,
        typer.Option(
            min=1,
            help="Encode in chunks, this many ffmpeg processes at once (VIDFARM_CHUNK_SECONDS, "
            "VIDFARM_CHUNK_MIN_SECONDS); 1 is one pass.",
        ),
    ] = 1,
) -> None:
    """Encode SOURCE into OUTPUT: HLS ladder, MP4, MP3, thumbnails, sprite, manifest.json."""
    config = settings()
    chosen = load_profile(profile or config.default_profile, config.user_profiles_dir)
    info = probe(source)
    plan_encode(info, chosen, start=start, end=end)  # refuse a bad cut before the bar shows
    if overwrite and output.exists():
        shutil.rmtree(output)
    with progress_bar() as bar:
        task = bar.add_task(f"encoding {source.name}", total=100)

        def on_progress(percent: float) -> bool:
            bar.update(task, completed=percent)
            return True

        result = encode_parallel(  # one pass when not asked for, or when it cannot chunk
            source,
            output,
            profile=chosen,
            ffmpeg=ffmpeg_executable(config.ffmpeg),
            workers=parallel,
            chunk_seconds=config.chunk_seconds,
            min_seconds=config.chunk_min_seconds if parallel > 1 else math.inf,
            start=start,
            end=end,
            on_progress=on_progress,
            time_limit_factor=config.time_limit_factor,
            time_limit_min=config.time_limit_min_seconds,
            info=info,
        )
        bar.update(task, completed=100)
    table = Table("kind", "file", "size", "bytes", title=f"{output}/manifest.json")
    for entry in result.manifest["outputs"]:
        size = f"{entry['width']}x{entry['height']}" if entry.get("width") else ""
        table.add_row(entry["kind"], entry["path"], size, str(entry["size"]))
    console.print(table)
    if "chunks" in result.manifest:
        console.print(f"{len(result.manifest['chunks'])} chunks, {parallel} at a time")
    speed = result.manifest["duration"] / max(result.run.wall_seconds, 1e-6)
    console.print(
        f"{result.manifest['duration']:.1f} s of media in {result.run.wall_seconds:.1f} s "
        f"({speed:.1f}x real time, {result.run.cpu_seconds:.1f} CPU s)"
    )


@app.command()
@guarded
def serve(
    host: Annotated[str | None, typer.Option(help="Listen address.")] = None,
    port: Annotated[int | None, typer.Option(help="Listen port.")] = None,
    no_workers: Annotated[
        bool, typer.Option("--no-workers", help="API-only replica: no embedded worker pool.")
    ] = False,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=64, help="uvicorn worker processes.")
    ] = 1,
) -> None:
    """Run the farm: HTTP API, reconcile loop and the embedded worker pool.

    Replicas on one PostgreSQL share the work; the reconciler runs on one of them at a time.
    """
    import uvicorn

    from vidfarm.api.app import create_app

    if no_workers:  # read by every uvicorn worker process through the settings
        os.environ["VIDFARM_EMBEDDED_POOL"] = "false"
    config = settings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    rt = open_runtime(config)
    console.print(
        f"vidfarm {__version__}: data in {config.data_dir.resolve()}, database "
        f"{rt.engine.url.render_as_string(hide_password=True)}, {_transport_line(config)}"
        + (f", {workers} API processes" if workers > 1 else "")
    )
    with rt.sessions() as session:
        if not has_admin_token(session):
            console.print(
                "no admin token yet: create one with `vidfarm token create --role admin` "
                "(same VIDFARM_DATA_DIR / VIDFARM_DATABASE_URL), then send it as "
                "`Authorization: Bearer <token>`"
            )
    shown = host or config.host
    url = f"http://{'127.0.0.1' if shown in ('0.0.0.0', '::') else shown}:{port or config.port}"  # noqa: S104
    console.print(
        f"Dashboard at {url}/ ; API at {url}/api/v1 (docs at /docs); "
        "submit work with: vidfarm submit FILE   (then: vidfarm jobs)"
    )
    listen_host, listen_port = host or config.host, port or config.port
    if workers > 1:  # each process opens its own runtime (migrations are serialised)
        rt.engine.dispose()
        uvicorn.run(
            "vidfarm.api.server:app_from_settings",
            factory=True,
            workers=workers,
            host=listen_host,
            port=listen_port,
            log_level="info",
            timeout_graceful_shutdown=30,
        )
        return
    uvicorn.run(
        create_app(rt),
        host=listen_host,
        port=listen_port,
        log_level="info",
        timeout_graceful_shutdown=30,
    )
    rt.engine.dispose()


def _transport_line(config: Settings) -> str:
    if config.transport == "celery":
        queues = ", ".join((config.queue_encoding, config.queue_transcription, config.queue_xapi))
        return f"jobs go to Celery queues {queues} (start workers with `vidfarm worker`)"
    if config.transport == "runners":
        return "jobs go to runner managers (`vidfarm runners list`)"
    return f"{config.worker_concurrency} embedded worker(s)"


@app.command("process-tasks")
@guarded
def process_tasks() -> None:
    """One reconcile pass: requeue lost jobs, queue due jobs, repair the transport."""
    from vidfarm.scheduler import Scheduler

    with runtime() as rt:
        dispatcher = rt.make_dispatcher()
        try:
            result = Scheduler(rt.sessions, dispatcher, rt.settings).tick()
        finally:
            dispatcher.stop(30.0)
        console.print(f"reclaimed {len(result.reclaimed)}, dispatched {len(result.dispatched)}")


@app.command()
@guarded
def profiles() -> None:
    """List encoding profiles (built in, and from the profiles folder)."""
    config = settings()
    table = Table("name", "renditions", "preset", "file")
    for name, path in sorted(available_profiles(config.user_profiles_dir).items()):
        profile = load_profile(name, config.user_profiles_dir)
        ladder = ", ".join(f"{r.height}p{'+mp4' if r.mp4 else ''}" for r in profile.ladder)
        table.add_row(name, ladder, profile.preset, str(path))
    console.print(table)


@app.command()
def version() -> None:
    """Print the version."""
    console.print(__version__)


app.command()(guarded(jobs_commands.submit))
app.command("jobs")(guarded(jobs_commands.list_jobs))
app.command("job")(guarded(jobs_commands.show_job))
app.command()(guarded(jobs_commands.cancel))
app.command()(guarded(jobs_commands.restart))
app.add_typer(token_app, name="token")
app.add_typer(xapi_app, name="xapi")
app.add_typer(runners_app, name="runners")
app.add_typer(deploy_app, name="deploy")
app.command("transcribe")(guarded(transcribe_command))
app.command("runner")(guarded(runner_command))
app.command("worker")(guarded(worker_command))
app.command("pod-worker")(guarded(pod_worker_command))


def main() -> None:  # pragma: no cover - console entry point
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    app()

"""The `vidfarm` command: encode a file, run the farm, submit and follow jobs.

Every command exits 0 on success and non-zero with one line on stderr on failure: no traceback
unless VIDFARM_DEBUG=1.
"""

from __future__ import annotations

import logging
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from vidfarm import __version__, jobs
from vidfarm.auth import Role, create_token, has_admin_token, list_tokens, revoke_token
from vidfarm.cli.runner import runner_command
from vidfarm.cli.runners import runners_app
from vidfarm.cli.support import console, errors, fail, guarded, progress_bar, runtime, settings
from vidfarm.cli.transcribe import transcribe as transcribe_command
from vidfarm.cli.worker import worker_command
from vidfarm.cli.xapi import xapi_app
from vidfarm.config import Settings
from vidfarm.media.encode import encode as encode_media
from vidfarm.media.plan import plan_encode
from vidfarm.media.probe import probe
from vidfarm.media.profiles import available_profiles, load_profile
from vidfarm.media.tools import ffmpeg_executable
from vidfarm.models import Job, JobStatus, Output
from vidfarm.runtime import Runtime, open_runtime
from vidfarm.transcribe.engines import resolve as resolve_engine
from vidfarm.videos import add_video, check_affiliation, check_encode_params, submit_encode

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

        result = encode_media(
            source,
            output,
            profile=chosen,
            ffmpeg=ffmpeg_executable(config.ffmpeg),
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
) -> None:
    """Run the farm: HTTP API, reconcile loop and the embedded worker pool."""
    import uvicorn

    from vidfarm.api.app import create_app

    config = settings()
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("alembic").setLevel(logging.WARNING)
    rt = open_runtime(config)
    console.print(
        f"vidfarm {__version__}: data in {config.data_dir.resolve()}, database "
        f"{rt.engine.url.render_as_string(hide_password=True)}, {_transport_line(config)}"
    )
    with rt.sessions() as session:
        if not has_admin_token(session):
            console.print(
                "no admin token yet: create one with `vidfarm token create --role admin` "
                "(same VIDFARM_DATA_DIR / VIDFARM_DATABASE_URL), then send it as "
                "`Authorization: Bearer <token>`"
            )
    console.print(
        f"API on http://{host or config.host}:{port or config.port} (docs at /docs); "
        "submit work with: vidfarm submit FILE   (then: vidfarm jobs)"
    )
    uvicorn.run(
        create_app(rt),
        host=host or config.host,
        port=port or config.port,
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


@app.command()
@guarded
def submit(
    source: Annotated[Path, typer.Argument(help="The video or audio file to process.")],
    profile: Annotated[str | None, typer.Option(help="Encoding profile name.")] = None,
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    start: Annotated[float | None, typer.Option(help="Cut: start at this second.")] = None,
    end: Annotated[float | None, typer.Option(help="Cut: end at this second.")] = None,
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends.")] = False,
    lang: Annotated[
        str | None, typer.Option(help="Spoken language: a transcription follows the encode.")
    ] = None,
    affiliation: Annotated[
        str | None, typer.Option(help="Submitter class (staff, student...): sets priority.")
    ] = None,
) -> None:
    """Store SOURCE and queue its encode; a running `vidfarm serve` picks it up."""
    with runtime() as rt:
        config = rt.settings
        asked = {"profile": profile, "start": start, "end": end}
        params: dict[str, Any] = {k: v for k, v in asked.items() if v is not None}
        check_encode_params(config, params)  # refuse bad parameters before storing anything
        if lang:
            resolve_engine(lang, config)
        check_affiliation(config, affiliation)
        with rt.sessions() as session:
            video, _ = add_video(session, rt.storage, source, language=lang)
            job = submit_encode(
                session,
                config,
                video,
                params=params,
                priority=priority,
                affiliation=affiliation,
            )
            position, waiting = jobs.rank(session, job.id)
            job_id = job.id
        console.print(f"job {job_id} queued for video {video.id} (rank {position} of {waiting})")
        if wait:
            follow(rt, job_id)


def follow(rt: Runtime, job_id: str) -> None:
    with progress_bar() as bar:
        task = bar.add_task(f"job {job_id[:8]}", total=100)
        while True:
            with rt.sessions() as session:
                job = jobs.get_job(session, job_id)
                status, progress, step, error = job.status, job.progress, job.step, job.error
            bar.update(task, completed=progress, description=f"job {job_id[:8]} {step or status}")
            if JobStatus(status).is_final:
                break
            time.sleep(0.5)
    if status != JobStatus.COMPLETED:
        fail(f"job {job_id} {status}: {error or 'no error recorded'}")
    console.print(f"job {job_id} completed")


@app.command("jobs")
@guarded
def list_jobs(
    status: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """List jobs, newest first, with progress and queue rank."""
    if status is not None and status not in {s.value for s in JobStatus}:
        fail(f"unknown status {status!r} (one of: {', '.join(s.value for s in JobStatus)})")
    with runtime() as rt, rt.sessions() as session:
        table = Table("id", "type", "status", "progress", "rank", "attempts", "video", "error")
        for job in jobs.list_jobs(session, status=status, limit=limit):
            position, waiting = jobs.rank(session, job.id)
            table.add_row(
                job.id,
                job.type,
                job.status,
                f"{job.progress:.0f}%",
                f"{position}/{waiting}" if position else "",
                f"{job.attempts}/{job.max_attempts}",
                job.video_id or "",
                job.error or "",
            )
        console.print(table)


@app.command("job")
@guarded
def show_job(job_id: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Show one job: state, progress, attempts, error, log tail and outputs."""
    with runtime() as rt, rt.sessions() as session:
        job = jobs.get_job(session, job_id)
        _print_job(session, job)


def _print_job(session: Any, job: Job) -> None:
    position, waiting = jobs.rank(session, job.id)
    rows = {
        "id": job.id,
        "type": job.type,
        "status": job.status,
        "video": job.video_id,
        "progress": f"{job.progress:.1f}% {job.step or ''}".strip(),
        "attempts": f"{job.attempts}/{job.max_attempts}",
        "priority": job.priority,
        "rank": f"{position} of {waiting} waiting" if position else "-",
        "created": job.created_at,
        "finished": job.finished_at or "-",
        "error": f"{job.error} ({job.error_class})" if job.error else "-",
    }
    for key, value in rows.items():
        console.print(f"[bold]{key:>9}[/bold]  {value}", highlight=False)
    if job.log_tail:
        console.print("[bold]      log[/bold]", highlight=False)
        console.print(job.log_tail, markup=False, highlight=False)
    outputs = session.query(Output).filter(Output.job_id == job.id).all()
    if outputs:
        table = Table("kind", "key", "size", "bytes")
        for out in outputs:
            size = f"{out.width}x{out.height}" if out.width else ""
            table.add_row(out.kind, out.key, size, str(out.size))
        console.print(table)


@app.command()
@guarded
def cancel(job_id: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Cancel a waiting or running job."""
    with runtime() as rt, rt.sessions() as session:
        job = jobs.cancel(session, job_id)
        console.print(f"job {job.id} {job.status}")


@app.command()
@guarded
def restart(job_id: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Run a finished (failed, timed-out, cancelled or completed) job again."""
    with runtime() as rt, rt.sessions() as session:
        job = jobs.restart(session, job_id)
        console.print(f"job {job.id} {job.status}")


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


# --- tokens -------------------------------------------------------------------------------------

token_app = typer.Typer(help="API tokens: create, list, revoke.", no_args_is_help=True)
app.add_typer(token_app, name="token")


def _when(value: Any) -> str:
    return value.strftime("%Y-%m-%d %H:%MZ") if value is not None else "-"  # UTC


@token_app.command("create")
@guarded
def token_create(
    role: Annotated[Role, typer.Option(help="What the token may do.", case_sensitive=False)],
    name: Annotated[str | None, typer.Option(help="A note on who holds it.")] = None,
) -> None:
    """Create a token and print it, once: only its hash is stored."""
    with runtime() as rt, rt.sessions() as session:
        plaintext, token = create_token(session, role=role, name=name or role.value)
        token_id = token.id
    console.print(plaintext, markup=False, highlight=False, soft_wrap=True)
    errors.print(
        f"token {token_id} ({role.value}) created: store it now, it cannot be shown again",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@token_app.command("list")
@guarded
def token_list() -> None:
    """List tokens (never their secrets)."""
    with runtime() as rt, rt.sessions() as session:
        table = Table("id", "name", "role", "created", "last used", "revoked")
        for token in list_tokens(session):
            table.add_row(
                token.id,
                token.name,
                token.role,
                _when(token.created_at),
                _when(token.last_used_at),
                _when(token.revoked_at),
            )
        console.print(table)


@token_app.command("revoke")
@guarded
def token_revoke(token_id: Annotated[str, typer.Argument(help="Token id.")]) -> None:
    """Revoke a token: requests carrying it are refused from now on."""
    with runtime() as rt, rt.sessions() as session:
        token = revoke_token(session, token_id)
        console.print(f"token {token.id} revoked", highlight=False)


app.add_typer(xapi_app, name="xapi")
app.add_typer(runners_app, name="runners")
app.command("transcribe")(guarded(transcribe_command))
app.command("runner")(guarded(runner_command))
app.command("worker")(guarded(worker_command))


def main() -> None:  # pragma: no cover - console entry point
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    app()

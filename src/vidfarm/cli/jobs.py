"""Jobs from the command line: submit a file, list, show, cancel, restart, follow."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from vidfarm import jobs, videos
from vidfarm.cli.support import console, fail, progress_bar, runtime
from vidfarm.models import Job, JobStatus, Output
from vidfarm.runtime import Runtime
from vidfarm.transcribe.engines import resolve as resolve_engine
from vidfarm.videos import add_video, check_affiliation, check_encode_params, submit_encode


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


def list_jobs(
    status: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
) -> None:
    """List jobs, newest first, with progress and queue rank."""
    if status is not None and status not in {s.value for s in JobStatus}:
        fail(f"unknown status {status!r} (one of: {', '.join(s.value for s in JobStatus)})")
    with runtime() as rt, rt.sessions() as session:
        table = Table(
            "id", "type", "status", "progress", "rank", "attempts", "video", "parent", "error"
        )
        found = jobs.list_jobs(session, status=status, limit=limit)
        places, waiting = jobs.ranks(session, found)  # two queries for the whole table
        for job in found:
            position = places.get(job.id)
            table.add_row(
                job.id,
                job.type,
                job.status,
                f"{job.progress:.0f}%",
                f"{position}/{waiting}" if position else "",
                f"{job.attempts}/{job.max_attempts}",
                job.video_id or "",
                (job.parent_id or "")[:8],
                job.error or "",
            )
        console.print(table)


def show_job(job_id: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Show one job: state, progress, attempts, error, log tail and outputs."""
    with runtime() as rt, rt.sessions() as session:
        job = jobs.get_job(session, job_id)
        _print_job(session, job)


def _quiet(job: Job) -> str:
    """` (no news for 40 s)` while a running job's worker has been silent a while."""
    news = jobs.news(job)
    return f" ({news})" if news else ""


def _print_job(session: Any, job: Job) -> None:
    position, waiting = jobs.rank(session, job.id)
    rows = {
        "id": job.id,
        "type": job.type,
        "status": job.status,
        "video": job.video_id,
        "progress": " ".join(
            filter(
                None, [f"{job.progress:.1f}%", job.step, jobs.news(job) and f"({jobs.news(job)})"]
            )
        ),
        "attempts": f"{job.attempts}/{job.max_attempts}",
        "priority": job.priority,
        "rank": f"{position} of {waiting} waiting" if position else "-",
        "created": job.created_at,
        "finished": job.finished_at or "-",
        "error": f"{job.error} ({job.error_class})" if job.error else "-",
        "parent": job.parent_id or "-",
    }
    for key, value in rows.items():
        console.print(f"[bold]{key:>9}[/bold]  {value}", highlight=False)
    if job.log_tail:
        console.print("[bold]      log[/bold]", highlight=False)
        console.print(job.log_tail, markup=False, highlight=False)
    if job.join_type is not None:
        table = Table("chunk", "type", "status", "progress", "span (s)", "attempts")
        for child in jobs.summary(session, job.id):
            span = f"{child['start']:g}-{child['end']:g}" if child["start"] is not None else ""
            table.add_row(
                child["id"], child["type"], child["status"], f"{child['progress']:.0f}%", span,
                str(child["attempts"]),
            )  # fmt: skip
        console.print(table)
    outputs = session.query(Output).filter(Output.job_id == job.id).all()
    if outputs:
        table = Table("kind", "key", "size", "bytes")
        for out in outputs:
            size = f"{out.width}x{out.height}" if out.width else ""
            table.add_row(out.kind, out.key, size, str(out.size))
        console.print(table)


def cancel(job_id: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Cancel a waiting or running job."""
    with runtime() as rt, rt.sessions() as session:
        job = jobs.cancel(session, job_id)
        console.print(f"job {job.id} {job.status}")


def restart(job_id: Annotated[str, typer.Argument(help="Job id.")]) -> None:
    """Run a finished (failed, timed-out, cancelled or completed) job again."""
    with runtime() as rt, rt.sessions() as session:
        job = videos.restart_job(session, rt.settings, rt.storage, job_id)
        parts = jobs.children_of(session, job.id)
        console.print(f"job {job.id} {job.status}" + (f" in {len(parts)} chunks" if parts else ""))

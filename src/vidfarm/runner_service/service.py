"""The runner's background work beside the embedded farm: fetch sources, follow jobs, notify.

- Fetching: a task without a job downloads its source (up to `capacity` at once), then
  becomes a Video and a Job in one step; the embedded pool runs the job like any other.
- Following: a loop copies each ended job's outcome to its task (once) and wakes the
  notifier; once an hour it deletes tasks past their retention.
- Everything is read from SQL, so after a restart (even kill -9) the same loop picks up
  where it was: sources are downloaded again, jobs whose lease expired run again (the job
  core), due notifications are sent.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from sqlalchemy import or_, select

from vidfarm import jobs
from vidfarm.db import write_transaction
from vidfarm.errors import JobCancelled, UnexpectedError, VidfarmError
from vidfarm.models import Job, JobStatus, RunnerTask, new_id
from vidfarm.runner_service import assets, chunks, tasks
from vidfarm.runner_service.cleanup import purge_old_tasks
from vidfarm.runner_service.fetch import download
from vidfarm.runner_service.notify import Notifier
from vidfarm.runtime import Runtime
from vidfarm.videos import add_video, delete_video

log = logging.getLogger(__name__)

CLEANUP_EVERY_SECONDS = 3600.0


class RunnerService:
    def __init__(self, runtime: Runtime, capacity: int) -> None:
        self.runtime = runtime
        self.settings = runtime.settings
        self.capacity = capacity
        self.notifier = Notifier(runtime.sessions, self.settings)
        self.incoming = self.settings.data_dir / "runner" / "incoming"
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._fetching: set[str] = set()
        self._stopped: set[str] = set()  # tasks stopped by the client while downloading
        self._executor = ThreadPoolExecutor(max_workers=capacity, thread_name_prefix="vf-fetch")
        self._thread = threading.Thread(target=self._loop, name="vidfarm-runner", daemon=True)
        self._last_cleanup = float("-inf")

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        shutil.rmtree(self.incoming, ignore_errors=True)  # partial downloads of a dead process
        self.incoming.mkdir(parents=True, exist_ok=True)
        self.notifier.start()
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop fetching and notifying; unfinished work is picked up again at the next start."""
        self._stopping.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.notifier.stop(timeout)

    def wake(self) -> None:
        self._wake.set()

    def forget_download(self, task_id: str) -> None:
        """The client stopped this task: abandon its download, if one is running."""
        with self._lock:
            self._stopped.add(task_id)

    # -- the loop ----------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("runner: a pass failed; trying again soon")
            self._wake.wait(self.settings.poll_seconds)
            self._wake.clear()

    def tick(self) -> None:
        self._start_due_fetches()
        with self.runtime.sessions() as session:
            if tasks.sync_finished(session):
                self.notifier.wake()
        if time.monotonic() - self._last_cleanup >= CLEANUP_EVERY_SECONDS:
            self._last_cleanup = time.monotonic()
            with self.runtime.sessions() as session:
                purge_old_tasks(
                    session, self.runtime.storage, self.settings.runner_task_retention_days
                )

    def _start_due_fetches(self) -> None:
        with self.runtime.sessions() as session:
            due = list(
                session.scalars(
                    select(RunnerTask.id)
                    .where(
                        RunnerTask.status.in_(tasks.ACTIVE),
                        RunnerTask.job_id.is_(None),
                        or_(
                            RunnerTask.fetch_next_at.is_(None),
                            RunnerTask.fetch_next_at <= tasks.utcnow(),
                        ),
                    )
                    .order_by(RunnerTask.created_at)
                )
            )
        for task_id in due:
            with self._lock:
                if task_id in self._fetching or self._stopping.is_set():
                    continue
                self._fetching.add(task_id)
            self._executor.submit(self._fetch, task_id)

    # -- one source --------------------------------------------------------------------------

    def _fetch(self, task_id: str) -> None:
        try:
            self._fetch_and_queue(task_id)
        except Exception as error:
            log.exception("task %s: fetching failed unexpectedly", task_id)
            try:  # counted like any transient failure: retried with backoff, then failed
                self._fetch_failed(task_id, UnexpectedError(error))
            except Exception:
                log.exception("task %s: could not record the failure", task_id)
        finally:
            with self._lock:
                self._fetching.discard(task_id)
                self._stopped.discard(task_id)

    def _should_stop(self, task_id: str) -> bool:
        with self._lock:
            return self._stopping.is_set() or task_id in self._stopped

    def _fetch_and_queue(self, task_id: str) -> None:
        with self.runtime.sessions() as session:
            task = tasks.get_task(session, task_id)
            if task.status not in tasks.ACTIVE or task.job_id is not None:
                return
            url = task.source_url
            job_spec: dict[str, Any] = dict(task.request.get("job") or {})
            affiliation = str(task.request.get("affiliation") or "").lower()
            parameters = dict(task.request.get("parameters") or {})
        target = self.incoming / task_id
        fetcher = assets.Fetcher(
            folder=self.incoming / f"{task_id}.assets",
            max_bytes=self.settings.runner_max_source_bytes,
            allow_private=self.settings.runner_allow_private_urls,
            should_stop=lambda: self._should_stop(task_id),
        )
        params = dict(job_spec.get("params") or {})
        remote = params.pop("remote", None)
        remote_chunks = params.pop("remote_chunks", None)  # a stitch's inputs (chunks.py)
        video_id = None
        try:
            studio, cut = None, None
            if remote and "studio" in remote:  # the source is Opencast's mediapackage
                studio, cut = assets.read_studio(url, {**parameters, **remote["studio"]}, fetcher)
                url = studio.urls()[assets.main_role(studio)]
            name = download(
                url,
                target,
                max_bytes=self.settings.runner_max_source_bytes,
                allow_private=self.settings.runner_allow_private_urls,
                should_stop=lambda: self._should_stop(task_id),
            )
            with self.runtime.sessions() as session:
                video, _ = add_video(
                    session, self.runtime.storage, target, filename=name, move=True
                )
                video_id = video.id
            if remote:
                urls = assets.dressing_urls(remote)
                if studio is not None:
                    urls.update(
                        (role, link)
                        for role, link in studio.urls().items()
                        if role != assets.main_role(studio)
                    )
                keys = assets.store_assets(urls, video_id, self.runtime.storage, fetcher)
                params["composition"] = assets.composition_for(remote, keys, studio=studio, cut=cut)
            if remote_chunks:
                prefixes = chunks.fetch_chunks(
                    remote_chunks, video_id, self.runtime.storage, fetcher
                )
                for child in params["children"]:
                    child["result"]["prefix"] = prefixes[int(child["index"])]
        except (JobCancelled, VidfarmError) as error:
            if video_id is not None:
                with self.runtime.sessions() as session:
                    delete_video(session, self.runtime.storage, video_id)
            if isinstance(error, VidfarmError) and not isinstance(error, JobCancelled):
                self._fetch_failed(task_id, error)
            return  # JobCancelled: stopped by the client, or shutting down (fetched again)
        finally:
            target.unlink(missing_ok=True)
            shutil.rmtree(fetcher.folder, ignore_errors=True)
        assert video_id is not None
        job_spec = {**job_spec, "params": params}
        job_id = self._queue_job(task_id, video_id, job_spec, affiliation)
        if job_id is None:
            with self.runtime.sessions() as session:
                delete_video(session, self.runtime.storage, video_id)  # stopped meanwhile
            return
        self.runtime.dispatch([job_id])
        log.info("task %s: source fetched, job %s queued", task_id, job_id)

    def _queue_job(
        self, task_id: str, video_id: str, job_spec: dict[str, Any], affiliation: str
    ) -> str | None:
        """Create the job and attach it to the task in one transaction (None: task ended)."""
        now = tasks.utcnow()
        with self.runtime.sessions() as session, write_transaction(session):
            task = session.get(RunnerTask, task_id, populate_existing=True)
            if task is None or task.status not in tasks.ACTIVE or task.job_id is not None:
                return None
            job = Job(
                id=new_id(),
                type=str(job_spec["type"]),
                video_id=video_id,
                params=dict(job_spec.get("params") or {}),
                status=JobStatus.PENDING.value,
                priority=self.settings.priority_classes.get(affiliation, 0),
                attempts=0,
                max_attempts=self.settings.max_attempts,
                fencing_token=0,
                progress=0.0,
                created_at=now,
                updated_at=now,
            )
            session.add(job)
            task.job_id = job.id
            task.video_id = video_id
            task.updated_at = now
            return job.id

    def _fetch_failed(self, task_id: str, error: VidfarmError) -> None:
        """Permanent: the task fails now. Transient: retried with the job core's backoff."""
        with self.runtime.sessions() as session:
            if not error.permanent:
                with write_transaction(session):
                    task = session.get(RunnerTask, task_id, populate_existing=True)
                    if task is None or task.status not in tasks.ACTIVE:
                        return
                    task.fetch_attempts += 1
                    attempts = task.fetch_attempts
                    if attempts < self.settings.max_attempts:
                        delay = jobs.backoff_delay(
                            attempts,
                            self.settings.retry_base_seconds,
                            self.settings.retry_max_seconds,
                        )
                        task.fetch_next_at = tasks.utcnow() + timedelta(seconds=delay)
                        task.error_message = str(error)
                        log.info("task %s: %s; retry in %.1f s", task_id, error, delay)
                        return
            message = str(error)
            if not error.permanent:
                message += f" (after {self.settings.max_attempts} attempts)"
            log.info("task %s failed: %s", task_id, message)
            if tasks.finish(session, task_id, tasks.FAILED, error_message=message):
                self.notifier.wake()

"""Two `vidfarm serve` replicas on one PostgreSQL and one media folder; one is killed -9.

The jobs it held complete once on the survivor, the survivor's reconciler takes over (it is
the one that reclaims the dead replica's job), and an SSE client connected to the survivor
sees the events of a job submitted through the other replica. A third, API-only replica
(`--no-workers`) serves the API and runs no job; one replica at most leads at any time.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from farm_browser import TINY_PROFILE, Server

from fixtures_db import fresh_postgres_database
from fixtures_media import MakeMedia, video_args
from waiting import wait_until

pytestmark = pytest.mark.postgres


def _replica(data_dir: Path, url: str, *args: str) -> Server:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIDFARM_")}
    env |= {
        "VIDFARM_DATA_DIR": str(data_dir),
        "VIDFARM_DATABASE_URL": url,
        "VIDFARM_POLL_SECONDS": "0.2",
        "VIDFARM_LEASE_SECONDS": "3",
        "VIDFARM_RETRY_BASE_SECONDS": "0.1",  # a reclaimed job runs again at once
        "VIDFARM_RETRY_MAX_SECONDS": "0.5",
        "VIDFARM_WORKER_CONCURRENCY": "1",
    }
    return Server(data_dir=data_dir, env=env, serve_args=list(args))


def _leader(server: Server) -> bool:
    return bool(httpx.get(f"{server.base}/readyz", timeout=10).json()["leader"])


class EventLog:
    """An SSE client on one replica, collecting every `job` event in a thread."""

    def __init__(self, server: Server) -> None:
        self.events: list[dict[str, Any]] = []
        self._server = server
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        assert self._connected.wait(10), "the SSE stream did not open"

    def _read(self) -> None:
        headers = {"Authorization": f"Bearer {self._server.admin}"}
        url = f"{self._server.base}/api/v1/jobs/events"
        try:
            with httpx.stream("GET", url, headers=headers, timeout=None) as response:
                self._connected.set()
                for line in response.iter_lines():
                    if line.startswith("data: ") and line != "data: {}":
                        self.events.append(json.loads(line[6:]))
        except httpx.HTTPError:
            pass  # the server stopped at the end of the test

    def closed(self) -> bool:
        return not self._thread.is_alive()

    def saw(self, job_id: str, status: str) -> bool:
        return any(e["id"] == job_id and e["status"] == status for e in self.events)


@pytest.fixture
def database(postgres_available: None) -> Iterator[str]:
    with fresh_postgres_database("vidfarm_replicas") as url:
        yield url


@pytest.fixture
def clip(make_media: MakeMedia) -> Path:
    """Long enough (5 s) that a job is still running when its replica is killed."""
    return make_media("replicas.mp4", *video_args("320x180", 25, 5.0))


def test_two_replicas_one_killed(tmp_path: Path, database: str, clip: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "default.toml").write_text(TINY_PROFILE)
    first, second = _replica(tmp_path, database), _replica(tmp_path, database)
    api_only = _replica(tmp_path, database, "--no-workers")
    first.start()
    try:
        wait_until(lambda: _leader(first), 15, "the first replica to lead")
        second.start()
        api_only.start()
        assert not _leader(second) and not _leader(api_only)
        events = EventLog(second)
        job_ids = []
        for _ in range(2):  # uploaded through the replica that will die
            with clip.open("rb") as handle:
                answer = first.api("POST", "/videos/upload", files={"file": handle})
            job_ids.append(answer["job_id"])
        assert first.process is not None
        pid = first.process.pid
        with psycopg.connect(database, autocommit=True) as sql:
            held = wait_until(
                lambda: sql.execute(
                    "SELECT id FROM jobs WHERE status = 'running' AND lease_owner LIKE %s",
                    (f"%-{pid}-%",),
                ).fetchone(),
                60,
                "the first replica to run a job",
            )[0]
            first.process.send_signal(signal.SIGKILL)
            first.process.wait()
            survivors = (second, api_only)
            wait_until(
                lambda: any(_leader(s) for s in survivors), 15, "a survivor to take the lead"
            )
            assert sum(_leader(s) for s in survivors) == 1, "two replicas lead at once"
            for job_id in job_ids:
                job = second.wait_job(job_id, {"completed", "failed"}, timeout=120)
                assert job["status"] == "completed", job
            # Reclaimed by the survivor's reconciler, then run again: a second attempt.
            assert second.api("GET", f"/api/v1/jobs/{held}")["attempts"] >= 2
            doubles = sql.execute(
                "SELECT job_id, key, count(*) FROM outputs GROUP BY job_id, key HAVING count(*) > 1"
            ).fetchall()
            assert doubles == [], "a job's outputs were recorded twice"
        workers = api_only.api("GET", "/api/v1/workers")
        assert "embedded pool" not in json.dumps(workers), workers
        assert "embedded pool" in json.dumps(second.api("GET", "/api/v1/workers"))
        wait_until(
            lambda: all(events.saw(job_id, "completed") for job_id in job_ids),
            15,
            "the SSE client on the survivor to see every job complete",
        )
        # A dashboard still follows the jobs on the survivor when it is stopped (a rolling
        # restart): the server ends the stream instead of waiting out its 30 s grace for it.
        assert not events.closed()
        second.stop()
        # 143: uvicorn ends a graceful stop by re-raising the SIGTERM it caught (not a kill).
        assert second.process is not None and second.process.returncode in (0, 143)
        wait_until(events.closed, 10, "the SSE stream to end with the server")
        log = (tmp_path / "serve.log").read_text(errors="replace")
        assert "timeout graceful shutdown exceeded" not in log, log[-2000:]
    finally:
        for server in (first, second, api_only):
            server.stop()

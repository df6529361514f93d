"""The fault drills of issue 18, each with real processes: what an operator does on a bad day.

Every drill submits work, does its harm, lets the farm recover by itself and counts: jobs (or
xAPI statements) submitted, completed, failed, lost (not final when the drill gave up), doubled
(two attempts' outputs kept, or a statement received twice) and the recovery time (from the
moment the farm can work again to the last job's end).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from farm import (
    PROFILE,
    VIDFARM,
    Farm,
    Outcome,
    PrivateRedis,
    StandInLrs,
    free_port,
    make_clip,
    wait,
)

JOBS = 3
TIMEOUT = 240.0


def serve_kill(clips: Path, root: Path, sig: int) -> Outcome:
    """kill -9 (or SIGTERM) of the embedded farm's `serve` mid-encode, then a restart."""
    name = "serve kill -9" if sig == signal.SIGKILL else "serve SIGTERM"
    outcome = Outcome(name)
    farm = Farm(root)
    ids: list[str] = []
    try:
        farm.start()
        ids = [farm.upload(clips / "long.mp4") for _ in range(JOBS)]
        farm.wait_running(ids[0])
        farm.stop(sig)
        orphans = _settle(farm.encoders)
        outcome.notes.append(f"{len(orphans)} encoder(s) left after the stop")
        farm.start()
        outcome.recovery_seconds = farm.wait_final(ids, TIMEOUT)
        farm.count(outcome, ids)
    except TimeoutError as error:
        outcome.notes.append(str(error))
        farm.count(outcome, ids)
    finally:
        farm.close()
    return outcome


def celery_worker_kill(clips: Path, root: Path, sig: int) -> Outcome:
    """kill -9 (only the worker's own pid) or SIGTERM of a Celery worker mid-encode."""
    name = "Celery worker kill -9" if sig == signal.SIGKILL else "Celery worker SIGTERM"
    outcome = Outcome(name)
    redis = PrivateRedis(root / "redis")
    redis.start()
    farm = Farm(root, VIDFARM_BROKER_URL=redis.url)
    ids: list[str] = []
    try:
        farm.start()
        farm.start_worker("first")
        ids = [farm.upload(clips / "long.mp4") for _ in range(JOBS)]
        farm.wait_running(ids[0])
        farm.stop_worker("first", sig)
        orphans = _settle(farm.encoders)
        outcome.notes.append(f"{len(orphans)} encoder(s) left after the stop")
        farm.start_worker("second")
        outcome.recovery_seconds = farm.wait_final(ids, TIMEOUT)
        farm.count(outcome, ids)
    except TimeoutError as error:
        outcome.notes.append(str(error))
        farm.count(outcome, ids)
    finally:
        farm.close()
        redis.stop()
    return outcome


def control_plane_kill(clips: Path, root: Path) -> Outcome:
    """kill -9 of `serve` while a Celery worker encodes; down for two leases; restart."""
    outcome = Outcome("control plane kill -9, down 2 leases")
    redis = PrivateRedis(root / "redis")
    redis.start()
    farm = Farm(root, VIDFARM_BROKER_URL=redis.url)
    ids: list[str] = []
    try:
        farm.start()
        farm.start_worker("patient")
        ids = [farm.upload(clips / "long.mp4") for _ in range(JOBS)]
        farm.wait_running(ids[0])
        farm.stop(signal.SIGKILL)
        time.sleep(2 * float(farm.env["VIDFARM_LEASE_SECONDS"]))  # the outage itself
        farm.start()
        outcome.recovery_seconds = farm.wait_final(ids, TIMEOUT)
        farm.count(outcome, ids)
        attempts = [farm.job(j)["attempts"] for j in ids]
        outcome.notes.append(f"attempts per job {attempts}")
    except TimeoutError as error:
        outcome.notes.append(str(error))
        farm.count(outcome, ids)
    finally:
        farm.close()
        redis.stop()
    return outcome


def runner_manager_kill(clips: Path, root: Path) -> Outcome:
    """kill -9 of the `vidfarm runner` manager jobs are dispatched to, mid-encode; restart."""
    outcome = Outcome("runner manager kill -9")
    token = "drill-runner-token-" + "x" * 16
    runner_dir = root / "runner"
    (runner_dir / "profiles").mkdir(parents=True)
    (runner_dir / "profiles" / "default.toml").write_text(PROFILE)
    runner_port = free_port()
    runner_env = {k: v for k, v in os.environ.items() if not k.startswith("VIDFARM_")} | {
        "VIDFARM_DATA_DIR": str(runner_dir),
        "VIDFARM_PORT": str(runner_port),
        "VIDFARM_RUNNER_TOKENS": token,
        "VIDFARM_RUNNER_CAPACITY": "1",
        "VIDFARM_RUNNER_ALLOW_PRIVATE_URLS": "true",
        "VIDFARM_RUNNER_NOTIFY_BACKOFF": "0.2",
        "VIDFARM_POLL_SECONDS": "0.2",
        "VIDFARM_DISPATCHER": "local",
    }
    runner_url = f"http://127.0.0.1:{runner_port}"

    def start_runner() -> subprocess.Popen[bytes]:
        log = (root / "runner.log").open("ab")
        process = subprocess.Popen(
            [*VIDFARM, "runner"], env=runner_env, stdout=log, stderr=subprocess.STDOUT
        )
        wait(lambda: _answers(f"{runner_url}/api/health"), 60, "vidfarm runner")
        return process

    farm = Farm(
        root / "plane",
        VIDFARM_DISPATCHER="runners",
        VIDFARM_RUNNERS_ALLOW_PRIVATE_URLS="true",
    )
    runner = start_runner()
    ids: list[str] = []
    try:
        farm.start()
        body = {"name": "drill", "url": runner_url, "token": token}
        farm.api("POST", "/api/v1/runners", json=body).raise_for_status()
        ids = [farm.upload(clips / "long.mp4") for _ in range(JOBS)]
        farm.wait_running(ids[0])
        runner.kill()
        runner.wait()
        runner = start_runner()
        outcome.recovery_seconds = farm.wait_final(ids, TIMEOUT)
        farm.count(outcome, ids)
        outcome.notes.append(f"attempts per job {[farm.job(j)['attempts'] for j in ids]}")
    except TimeoutError as error:
        outcome.notes.append(str(error))
        farm.count(outcome, ids)
    finally:
        farm.close()
        runner.kill()
        runner.wait()
    return outcome


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def redis_flush_and_restart(clips: Path, root: Path) -> Outcome:
    """FLUSHALL of the (private) broker with jobs queued, then a kill -9 and restart of it."""
    outcome = Outcome("Redis FLUSHALL + restart")
    redis = PrivateRedis(root / "redis")
    redis.start()
    farm = Farm(root, VIDFARM_BROKER_URL=redis.url)
    ids: list[str] = []
    try:
        farm.start()
        ids = [farm.upload(clips / "short.mp4") for _ in range(JOBS)]
        wait(lambda: all(farm.job(j)["status"] == "queued" for j in ids), 60, "queued jobs")
        redis.cli("FLUSHALL")
        redis.stop(signal.SIGKILL)
        redis.start()  # same port, empty: no persistence
        started = time.monotonic()
        farm.start_worker("after")
        farm.wait_final(ids, TIMEOUT)
        outcome.recovery_seconds = time.monotonic() - started
        farm.count(outcome, ids)
    except TimeoutError as error:
        outcome.notes.append(str(error))
        farm.count(outcome, ids)
    finally:
        farm.close()
        redis.stop()
    return outcome


def lrs_down(clips: Path, root: Path, statements: int = 2000) -> Outcome:
    """The LRS is down while 2000 events arrive; kill -9 of `serve` mid-delivery after it
    returns; every statement must reach the LRS, each once."""
    outcome = Outcome(f"LRS down, {statements} statements, kill -9 mid-delivery", unit="statements")
    lrs = StandInLrs(free_port())
    farm = Farm(
        root,
        VIDFARM_XAPI_ENABLED="true",
        VIDFARM_XAPI_LRS_URL=lrs.url,
        VIDFARM_XAPI_RETRY_BASE_SECONDS="0.5",
        VIDFARM_XAPI_RETRY_MAX_SECONDS="5",
    )
    try:
        farm.start()
        job_id = farm.upload(clips / "short.mp4")
        farm.wait_final([job_id], TIMEOUT)
        video_id = farm.job(job_id)["video_id"]
        ids: list[str] = []
        for start in range(0, statements, 200):
            events = [
                {"video_id": video_id, "verb": "played", "time": float(i)}
                for i in range(start, min(statements, start + 200))
            ]
            response = farm.api("POST", "/xapi/video/", json=events)
            response.raise_for_status()
            ids += response.json()["ids"]
        outcome.submitted = len(ids)
        time.sleep(3)  # down for a while: every statement tried and backing off
        lrs.start()
        wait(lambda: len(lrs.received) > 0, 60, "the first delivery")
        farm.stop(signal.SIGKILL)  # mid-delivery
        outcome.notes.append(f"{len(lrs.received)} delivered at the kill")
        farm.start()
        started = time.monotonic()
        wanted = set(ids)
        wait(lambda: wanted <= set(lrs.received), TIMEOUT, "every statement at the LRS")
        outcome.recovery_seconds = time.monotonic() - started
    except TimeoutError as error:
        outcome.notes.append(str(error))
    finally:
        farm.close()
        lrs.stop()
    wanted = set(ids)
    outcome.completed = len(wanted & set(lrs.received))
    outcome.lost = len(wanted - set(lrs.received))
    outcome.doubled = sum(1 for i in wanted if lrs.received[i] > 1)
    outcome.notes.append(
        "statements, not jobs; a statement sent twice keeps its id (the LRS keeps one)"
    )
    return outcome


def upload_killed_halfway(clips: Path, root: Path) -> Outcome:
    """A client dies mid-upload, then `serve` is killed mid-upload: no job from it, no
    leftover once the farm is back, and the next uploads work."""
    outcome = Outcome("uploads killed halfway")
    farm = Farm(root)
    try:
        farm.start()
        uploads = farm.data_dir / "uploads"
        _half_upload(farm, 50_000_000).close()  # the client goes away
        client = _half_upload(farm, 50_000_000)
        wait(lambda: any(p.stat().st_size for p in uploads.glob("upload-*")), 30, "a half upload")
        left = sum(p.stat().st_size for p in uploads.glob("upload-*"))
        farm.stop(signal.SIGKILL)
        client.close()
        farm.start()
        after = sum(p.stat().st_size for p in uploads.glob("upload-*"))
        outcome.notes.append(f"{left} bytes half-uploaded at the kill, {after} after the restart")
        listed = farm.api("GET", "/api/v1/jobs").json()["items"]
        outcome.notes.append(f"{len(listed)} job(s) from the killed uploads")
        started = time.monotonic()
        ids = [farm.upload(clips / "short.mp4") for _ in range(JOBS)]
        farm.wait_final(ids, TIMEOUT)
        outcome.recovery_seconds = time.monotonic() - started
        farm.count(outcome, ids)
        outcome.lost += after and 1
    finally:
        farm.close()
    return outcome


def disk_full(clips: Path, root: Path, size_mb: int = 60) -> Outcome:
    """The farm's data folder on a 60 MB tmpfs: an upload that does not fit, a disk filled
    under an encode, then space freed; the job resumes by itself."""
    outcome = Outcome(f"{size_mb} MB disk filled")
    if os.geteuid() != 0:
        outcome.skipped = "needs root to mount a tmpfs"
        return outcome
    mount = root / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        outcome.skipped = f"cannot mount a tmpfs: {done.stderr.strip()}"
        return outcome
    farm: Farm | None = None
    try:
        farm = Farm(mount, VIDFARM_MIN_FREE_BYTES=str(8 * 1024 * 1024))
        farm.start()
        big = make_clip(root / "big.mp4", 1)
        with big.open("ab") as handle:  # a file larger than the disk (content does not matter)
            handle.truncate((size_mb + 10) * 1024 * 1024)
        refused = farm.api("POST", "/videos/upload", files={"file": ("big.mp4", big.open("rb"))})
        outcome.notes.append(f"oversized upload: HTTP {refused.status_code}")
        ballast = farm.data_dir / "ballast"
        job_id = farm.upload(clips / "long.mp4")
        subprocess.run(  # fill what is left
            ["dd", "if=/dev/zero", f"of={ballast}", "bs=1M", f"count={size_mb}"],
            capture_output=True,
        )
        ready = farm.api("GET", "/readyz").status_code
        outcome.notes.append(f"/readyz while full: {ready}")
        seen_states: list[str] = []

        def met_the_full_disk() -> bool:
            job = farm.job(job_id)
            if not seen_states or seen_states[-1] != job["status"]:
                seen_states.append(job["status"])
            ended = job["attempts"] >= 1 and job["status"] in ("pending", "failed", "completed")
            return ended or "out of disk space" in farm.log("serve.log")

        try:
            wait(met_the_full_disk, 120, "the encode to meet the full disk")
        finally:
            outcome.notes.append(f"states seen {seen_states}")
        seen = farm.job(job_id)
        outcome.notes.append(f"job while full: {seen['status']}, attempts {seen['attempts']}")
        ballast.unlink()
        outcome.recovery_seconds = farm.wait_final([job_id], TIMEOUT)
        farm.count(outcome, [job_id])
        outcome.notes.append(f"attempts counted {farm.job(job_id)['attempts']}")
    except TimeoutError as error:
        outcome.notes.append(str(error))
    finally:
        if farm is not None:
            farm.close()
            (root / "serve.log").write_text(farm.log("serve.log"))  # kept for a post-mortem
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)
    return outcome


def _half_upload(farm: Farm, size: int) -> socket.socket:
    """Begin a multipart upload of `size` bytes and send only its first megabyte."""
    boundary = "drillboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.mp4"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()
    request = (
        f"POST /videos/upload HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {farm.admin}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(head) + size}\r\n\r\n"
    ).encode()
    client = socket.create_connection(("127.0.0.1", farm.port))
    client.sendall(request + head + b"\0" * 1_000_000)
    return client


def _settle(find: Callable[[], list[int]], seconds: float = 10.0) -> list[int]:
    """What `find` still finds once processes had `seconds` to die."""
    deadline = time.monotonic() + seconds
    found = find()
    while found and time.monotonic() < deadline:
        time.sleep(0.1)
        found = find()
    return found

"""The reconcile loop: return lost jobs to the queue and dispatch jobs that are due.

It only reads and fixes SQL, so running it twice (serve and `vidfarm process-tasks` at once)
is harmless: reclaiming and queueing are conditional updates. Among replicas, the loop ticks
only on the leader (`leader`, see leadership.py), so N replicas do not multiply its SQL load.
It also sweeps the scratch space (attempt folders, half uploads) that dead processes left, at
start and every few minutes.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs, scratch
from vidfarm.config import Settings
from vidfarm.dispatch import Dispatcher
from vidfarm.dispatch.runners.assignments import lease_seconds as runner_lease_seconds

log = logging.getLogger(__name__)

SWEEP_EVERY_SECONDS = 300.0


@dataclass(frozen=True)
class TickResult:
    reclaimed: list[str]  # running jobs whose lease expired, now pending (or failed)
    dispatched: list[str]  # pending jobs handed to the dispatcher


class Scheduler:
    def __init__(
        self,
        session_factory: sessionmaker[Session],
        dispatcher: Dispatcher,
        settings: Settings,
        *,
        rng: random.Random | None = None,
        leader: Callable[[], bool] | None = None,
    ) -> None:
        self._sessions = session_factory
        self._dispatcher = dispatcher
        self._settings = settings
        self._rng = rng
        self._leader = leader
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._short_of_space: tuple[float, str] | None = None  # when last seen, and where

    def tick(self, now: datetime | None = None, *, reclaim: bool = True) -> TickResult:
        """One reconcile pass; `vidfarm process-tasks` runs exactly this once."""
        now = jobs.utcnow() if now is None else jobs.as_utc(now)
        out_of_space = self._recently_short_of_space()
        reclaimed: list[str] = []
        with self._sessions() as session:
            if reclaim:
                reclaimed = jobs.reclaim_expired(
                    session,
                    now,
                    retry_base=self._settings.retry_base_seconds,
                    retry_max=self._settings.retry_max_seconds,
                    rng=self._rng,
                    out_of_space=out_of_space,
                )
            due = jobs.due_pending(session, now)
        if reclaimed:
            log.warning("reclaimed jobs whose worker was lost: %s", reclaimed)
        if due:
            self._dispatcher.dispatch(due)
        self._dispatcher.reconcile(now)
        return TickResult(reclaimed=reclaimed, dispatched=due)

    def _recently_short_of_space(self) -> str | None:
        """Where the disk was full, if it was within the last two leases.

        A lease that runs out then was likely not renewed because of it (SQLite on that disk
        refuses the heartbeat; the reclaim itself can only be written once space is back), so
        the attempt is not counted against the job."""
        settings = self._settings
        short = scratch.short_of_space(settings.data_dir, settings.min_free_bytes)
        if short is not None:
            self._short_of_space = (time.monotonic(), short)
        if self._short_of_space is None:
            return None
        seen, where = self._short_of_space
        if time.monotonic() - seen > 2 * settings.lease_seconds + settings.poll_seconds:
            self._short_of_space = None
            return None
        return where

    def start(self) -> None:
        """Tick every poll_seconds in a background thread until stop()."""
        if self._thread is not None:
            raise RuntimeError("scheduler already started")
        self._stop.clear()
        self.sweep()
        self._thread = threading.Thread(target=self._loop, name="vidfarm-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def sweep(self) -> int:
        """Remove what dead workers and uploads left in the data folder; returns bytes freed."""
        data = self._settings.data_dir
        freed = scratch.sweep(data / "work", scratch.ATTEMPT_FOLDERS).freed_bytes
        freed += scratch.sweep(data / "uploads", "upload-*").freed_bytes
        if freed:
            log.warning("leftovers swept: %d bytes freed", freed)
        return freed

    def _loop(self) -> None:
        swept = time.monotonic()
        grace = OutageGrace(self._settings)
        while not self._stop.is_set():
            try:
                if self._leader is None or self._leader():
                    self.tick(reclaim=grace.may_reclaim())
                    grace.healthy()
                if time.monotonic() - swept >= SWEEP_EVERY_SECONDS:
                    swept = time.monotonic()
                    self.sweep()
            except Exception:
                # SQL or the broker is down: keep looping, the next tick repairs everything.
                grace.outage()
                log.exception("scheduler tick failed")
            self._stop.wait(self._settings.poll_seconds)


class OutageGrace:
    """After a start or an outage of the control plane, wait one lease before reclaiming.

    While the control plane (or its database) is down, remote workers cannot renew their
    leases, so every lease looks expired when it comes back. Reclaiming them at the first tick
    would throw away work that is done or still running; instead the workers get one lease to
    reach the API again (they retry their reports while it is unreachable, remote.py). Only the
    remote transports need it: the embedded pool's workers died with the process. Runner
    managers' leases are their own (three status periods): the reconciler renews them as soon
    as a manager answers, so one of those is the wait.
    """

    def __init__(self, settings: Settings) -> None:
        waits = {"local": 0.0, "runners": runner_lease_seconds(settings)}
        self._wait = waits.get(settings.transport, settings.lease_seconds)
        self._since: float | None = None  # healthy since (monotonic); None: down or starting

    def may_reclaim(self) -> bool:
        if not self._wait:
            return True
        since = self._since
        return since is not None and time.monotonic() - since >= self._wait

    def healthy(self) -> None:
        if self._since is None:
            self._since = time.monotonic()
            if self._wait:
                log.info("leases reclaimed in %.0f s (workers reconnect first)", self._wait)

    def outage(self) -> None:
        self._since = None

"""The in-process Reporter: a worker core's reports go straight to SQL through `vidfarm.jobs`.

Remote workers use an HTTP reporter with the same protocol; both carry the claim's fencing
token so a stale attempt cannot overwrite a newer one.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from vidfarm import jobs
from vidfarm.claims import Claim, OutputRecord
from vidfarm.config import Settings
from vidfarm.errors import JobCancelled, StaleAttempt, VidfarmError

log = logging.getLogger(__name__)


class DirectReporter:
    """Reports one claim's progress and end by calling the job functions on its own sessions.

    `should_stop` lets the embedded pool interrupt the job when it shuts down: progress() then
    answers False, and the interrupted attempt is handed back (`jobs.release`) rather than
    recorded as a failure or a cancellation.
    """

    def __init__(
        self,
        session_factory: sessionmaker[Session],
        claim: Claim,
        settings: Settings,
        *,
        should_stop: Callable[[], bool] | None = None,
    ) -> None:
        self._sessions = session_factory
        self.claim = claim
        self._settings = settings
        self._should_stop = should_stop or (lambda: False)
        self._lock = threading.Lock()
        # Progress is cheap to call often (ffmpeg reports twice a second); SQL sees at most a
        # few writes per lease period, always enough to keep the lease alive.
        self._min_interval = min(1.0, settings.lease_seconds / 4)
        self._last_write = float("-inf")
        self._last_step: str | None = None
        self._last_answer = True
        self.finished = False  # complete/fail/release went through, or the attempt is stale
        self.released = False
        # SQL told this attempt to stop (cancelled, or superseded by a newer attempt): the job's
        # state belongs to whoever did that, the worker core owes no report.
        self.interrupted = False

    @property
    def stopping(self) -> bool:
        return self._should_stop()

    @property
    def timed_out(self) -> bool:
        return False  # the embedded pool relies on the encoder's own time limit

    def progress(self, percent: float, step: str) -> bool:
        """Renew the lease and record progress; False means stop now (cancelled/stale/stop)."""
        if self.stopping or self.finished:
            return False
        with self._lock:
            now = time.monotonic()
            if (
                self._last_answer
                and step == self._last_step
                and now - self._last_write < self._min_interval
            ):
                return True
            try:
                with self._sessions() as session:
                    alive = jobs.heartbeat(
                        session,
                        self.claim.job_id,
                        self.claim.fencing_token,
                        progress=percent,
                        step=step,
                        lease_seconds=self._settings.lease_seconds,
                    )
            except StaleAttempt as error:
                log.info("job %s: %s; stopping this attempt", self.claim.job_id, error)
                alive = False
            self._last_write, self._last_step, self._last_answer = now, step, alive
            self.interrupted = not alive
            return alive

    def complete(self, result: dict[str, Any], outputs: list[OutputRecord]) -> None:
        """Accept the outputs once; raises StaleAttempt if this attempt lost (cancelled/newer)."""
        with self._sessions() as session:
            try:
                jobs.complete(session, self.claim.job_id, self.claim.fencing_token, result, outputs)
            except StaleAttempt:
                self.finished = True
                raise
        self.finished = True

    def fail(self, error: VidfarmError, log_tail: list[str]) -> None:
        """Record the failure; an interruption caused by our own shutdown hands the job back.

        A stale attempt's failure is dropped (logged): a newer attempt or a cancellation
        already decided the job's fate.
        """
        try:
            with self._sessions() as session:
                if self.stopping and (isinstance(error, JobCancelled) or not error.permanent):
                    self.release(session)
                    return
                jobs.fail(
                    session,
                    self.claim.job_id,
                    self.claim.fencing_token,
                    error,
                    log_tail,
                    retry_base=self._settings.retry_base_seconds,
                    retry_max=self._settings.retry_max_seconds,
                )
        except StaleAttempt as stale:
            log.info("job %s: failure report dropped: %s", self.claim.job_id, stale)
        self.finished = True

    def release(self, session: Session | None = None) -> None:
        """Hand the job back to the queue without counting the attempt."""
        if session is None:
            with self._sessions() as own:
                self.release(own)
            return
        try:
            jobs.release(session, self.claim.job_id, self.claim.fencing_token)
            self.released = True
        except StaleAttempt as stale:
            log.info("job %s: release dropped: %s", self.claim.job_id, stale)
        self.finished = True

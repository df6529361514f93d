"""How a transport runs one claimed attempt: the worker core, then whatever report it owes.

The embedded pool and the Celery task both call `run_attempt`; only their reporters differ
(SQL or HTTP). The worker core reports complete/fail itself; this covers for it when it
raises, returns without a report, is told to stop (shutdown: hand the job back), or runs past
its time limit.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Protocol

from vidfarm.claims import Claim, Reporter
from vidfarm.errors import (
    JobTimedOut,
    StaleAttempt,
    TransientError,
    UnexpectedError,
    VidfarmError,
    out_of_space,
)

log = logging.getLogger(__name__)

RunFunction = Callable[[Claim, Reporter], None]
_TRACEBACK_LINES = 40


class AttemptReporter(Reporter, Protocol):
    claim: Claim
    finished: bool  # complete/fail/release went through, or the attempt is stale
    interrupted: bool  # the control plane told this attempt to stop (cancelled or superseded)

    @property
    def stopping(self) -> bool:
        """This worker is shutting down: the attempt is handed back, not failed."""
        ...

    @property
    def timed_out(self) -> bool:
        """The attempt ran past its time limit and was told to stop."""
        ...

    def release(self) -> None:
        """Hand the job back to the queue without counting the attempt."""
        ...


def run_attempt(claim: Claim, reporter: AttemptReporter, run: RunFunction) -> None:
    """Run the worker core on one claim and make sure the attempt ends with one report."""
    if reporter.stopping:
        reporter.release()
        return
    try:
        run(claim, reporter)
    except Exception as error:
        _after_crash(reporter, error)
    else:
        _after_return(reporter)


def _after_crash(reporter: AttemptReporter, error: Exception) -> None:
    job_id = reporter.claim.job_id
    if reporter.finished:
        if isinstance(error, StaleAttempt):
            log.info("job %s: attempt superseded: %s", job_id, error)
        else:
            log.exception("job %s: worker core raised after reporting", job_id)
        return
    if reporter.interrupted and not reporter.stopping:
        log.info("job %s: worker core raised after being stopped: %r", job_id, error)
        return
    full = out_of_space(error)
    if full is not None:  # the OS's or SQLite's line, not a traceback: nothing is broken
        log.warning("job %s: %s", job_id, full)
        reporter.fail(full, full.log_tail)
        return
    log.exception("job %s: worker core raised", job_id)
    wrapped = error if isinstance(error, VidfarmError) else UnexpectedError(error)
    lines = "".join(traceback.format_exception(error)).splitlines()
    reporter.fail(wrapped, lines[-_TRACEBACK_LINES:])


def _after_return(reporter: AttemptReporter) -> None:
    if reporter.finished:
        return
    if reporter.stopping:
        reporter.release()
        return
    if reporter.timed_out:
        reporter.fail(JobTimedOut("the job ran past its time limit and was stopped"), [])
        return
    if reporter.interrupted:
        return
    log.error("job %s: worker core returned without reporting", reporter.claim.job_id)
    reporter.fail(TransientError("the worker core returned without reporting an end"), [])

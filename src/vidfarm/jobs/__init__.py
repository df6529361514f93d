"""The job core: every job's state lives in SQL, and only these functions change it.

`lifecycle` moves a job through its states under a fencing token (create, queue, claim,
heartbeat, complete, fail, release, cancel, restart, reclaim); `queries` reads (one job,
lists, what is due, rank); `clock` keeps every time in UTC. Callers import the package
(`from vidfarm import jobs`) and never a module of it, so the core can be rearranged freely.
"""

from vidfarm.jobs.clock import as_utc, as_utc_or_none, utcnow
from vidfarm.jobs.lifecycle import (
    ERROR_MAX_CHARS,
    LOG_TAIL_MAX_CHARS,
    FollowUp,
    backoff_delay,
    cancel,
    claim_job,
    claim_next,
    complete,
    create_job,
    fail,
    heartbeat,
    mark_queued,
    mark_republished,
    reclaim_expired,
    release,
    restart,
    unqueue,
)
from vidfarm.jobs.queries import CLAIM_ORDER, due_pending, get_job, list_jobs, queued_counts, rank

__all__ = [
    "CLAIM_ORDER",
    "ERROR_MAX_CHARS",
    "LOG_TAIL_MAX_CHARS",
    "FollowUp",
    "as_utc",
    "as_utc_or_none",
    "backoff_delay",
    "cancel",
    "claim_job",
    "claim_next",
    "complete",
    "create_job",
    "due_pending",
    "fail",
    "get_job",
    "heartbeat",
    "list_jobs",
    "mark_queued",
    "mark_republished",
    "queued_counts",
    "rank",
    "reclaim_expired",
    "release",
    "restart",
    "unqueue",
    "utcnow",
]

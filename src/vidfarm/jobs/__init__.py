"""The job core: every job's state lives in SQL, and only these functions change it.

`lifecycle` moves a job through its states (create, queue, complete, release, cancel,
restart), `leases` hands it to one attempt at a time under a fencing token (claim, heartbeat,
reclaim what a lost worker held), `failures` decides between retry and a final state,
`queries` reads (one job, lists, what is due, rank), `rows` holds what they share and
`clock` keeps every time in UTC. Callers import the package
(`from vidfarm import jobs`) and never a module of it, so the core can be rearranged freely.
"""

from vidfarm.jobs.clock import as_utc, as_utc_or_none, utcnow
from vidfarm.jobs.failures import backoff_delay, fail
from vidfarm.jobs.family import (
    Split,
    children_of,
    forget_children,
    summaries,
    summary,
)
from vidfarm.jobs.leases import claim_job, claim_next, heartbeat, reclaim_expired
from vidfarm.jobs.lifecycle import (
    FollowUp,
    cancel,
    clear_waiting,
    complete,
    create_job,
    mark_queued,
    mark_republished,
    note_waiting,
    release,
    restart,
    unqueue,
)
from vidfarm.jobs.queries import (
    CLAIM_ORDER,
    due_pending,
    get_job,
    heartbeat_age,
    list_jobs,
    news,
    queued_counts,
    rank,
    ranks,
)
from vidfarm.jobs.rows import ERROR_MAX_CHARS, LOG_TAIL_MAX_CHARS

__all__ = [
    "CLAIM_ORDER",
    "ERROR_MAX_CHARS",
    "LOG_TAIL_MAX_CHARS",
    "FollowUp",
    "Split",
    "as_utc",
    "as_utc_or_none",
    "backoff_delay",
    "cancel",
    "children_of",
    "claim_job",
    "claim_next",
    "clear_waiting",
    "complete",
    "create_job",
    "due_pending",
    "fail",
    "forget_children",
    "get_job",
    "heartbeat",
    "heartbeat_age",
    "list_jobs",
    "mark_queued",
    "mark_republished",
    "news",
    "note_waiting",
    "queued_counts",
    "rank",
    "ranks",
    "reclaim_expired",
    "release",
    "restart",
    "summaries",
    "summary",
    "unqueue",
    "utcnow",
]

"""SQL tables: videos, the jobs that process them, and the outputs those jobs published.

SQL is the one source of truth for job state (ARCHITECTURE.md, invariant 1).
"""

from __future__ import annotations

import enum
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    type_annotation_map = {datetime: DateTime(timezone=True), dict[str, Any]: JSON}


class JobStatus(enum.StrEnum):
    PENDING = "pending"  # waiting to be handed to a transport (new, or backing off)
    QUEUED = "queued"  # handed to a transport, waiting for a worker
    RUNNING = "running"  # claimed by a worker holding a lease
    COMPLETED = "completed"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES


FINAL_STATUSES = frozenset(
    {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.CANCELLED}
)
WAITING_STATUSES = frozenset({JobStatus.PENDING, JobStatus.QUEUED})


class JobType(enum.StrEnum):
    ENCODE = "encode"
    TRANSCRIPTION = "transcription"
    ENCODE_CHUNK = "encode_chunk"
    STITCH = "stitch"


#: Runner task types that exist only between vidfarm processes are `vidfarm_<job type>`: a
#: `vidfarm runner` announces them in its health answer and the control plane sends them
#: nowhere else (a foreign Esup-Runner knows only Pod's encoding, studio and transcription).
VIDFARM_TASK_PREFIX = "vidfarm_"


def vidfarm_task(job_type: JobType) -> str:
    return VIDFARM_TASK_PREFIX + job_type.value


def vidfarm_only(task_type: str) -> bool:
    return task_type.startswith(VIDFARM_TASK_PREFIX)


class Visibility(enum.StrEnum):
    """Who may play a video: its owner and admins, anyone with its link, or anyone at all."""

    PRIVATE = "private"
    UNLISTED = "unlisted"
    PUBLIC = "public"


class Video(Base):
    __tablename__ = "videos"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    filename: Mapped[str] = mapped_column(String(255))
    # What people call it (defaults to the upload's file name), and what it is about.
    title: Mapped[str | None] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text)
    source_key: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    duration: Mapped[float | None] = mapped_column(Float)
    probe: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    language: Mapped[str | None] = mapped_column(String(16))  # spoken language, e.g. "en"
    # The token (user) that uploaded it; None for videos from the CLI or the runner manager,
    # which only admins see. Tokens are revoked, never deleted, so the id stays meaningful.
    owner_token_id: Mapped[str | None] = mapped_column(String(32), index=True)
    visibility: Mapped[str] = mapped_column(String(16), default="private")  # Visibility
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    jobs: Mapped[list[Job]] = relationship(back_populates="video", passive_deletes=True)
    outputs: Mapped[list[Output]] = relationship(
        back_populates="video", passive_deletes=True, order_by="Output.id"
    )


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index("ix_jobs_waiting", "status", "priority", "created_at"),
        Index("ix_jobs_lease", "status", "lease_expires_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    type: Mapped[str] = mapped_column(String(32), default=JobType.ENCODE.value)
    video_id: Mapped[str | None] = mapped_column(
        ForeignKey("videos.id", ondelete="CASCADE"), index=True
    )
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.PENDING.value)
    priority: Mapped[int] = mapped_column(Integer, default=0)  # higher runs first
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    fencing_token: Mapped[int] = mapped_column(Integer, default=0)
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column()
    not_before: Mapped[datetime | None] = mapped_column()
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    step: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    error_class: Mapped[str | None] = mapped_column(String(64))
    log_tail: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Jobs to create when this one completes: [{"type": ..., "params": {...}}] (see jobs.complete)
    follow_ups: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON)
    owner_token_id: Mapped[str | None] = mapped_column(String(32))  # who submitted it
    # A child (a chunk of an encode, its stitch) names the job it is part of (jobs/family.py).
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    # On a parent: the job type created, once, when all its children completed (the stitch).
    join_type: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column()
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    video: Mapped[Video | None] = relationship(back_populates="jobs")


class Output(Base):
    __tablename__ = "outputs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(1024))  # storage key of the published file
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    bandwidth: Mapped[int | None] = mapped_column(Integer)
    codecs: Mapped[str | None] = mapped_column(String(128))
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(String(64))

    video: Mapped[Video] = relationship(back_populates="outputs")


class Token(Base):
    """An API token: its lookup id and the SHA-256 of its secret, never the secret itself."""

    __tablename__ = "tokens"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # public lookup id
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))  # vidfarm.auth.Role
    secret_sha256: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()


class XapiStatement(Base):
    """One xAPI statement in the outbox: stored here first, then delivered to the LRS.

    ``state`` is pending (waiting, or backing off until ``next_attempt_at``), delivered, or dead
    (the LRS refused it as malformed; ``last_error`` holds its reason).
    """

    __tablename__ = "xapi_statements"
    __table_args__ = (Index("ix_xapi_statements_due", "state", "next_attempt_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the statement's UUID
    statement: Mapped[dict[str, Any]] = mapped_column(JSON)
    video_id: Mapped[str | None] = mapped_column(String(32), index=True)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_status: Mapped[int | None] = mapped_column(Integer)  # HTTP status; 0: no answer
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column()


class RunnerTask(Base):
    """A task a runner-manager client (Esup-Pod) gave `vidfarm runner`: a Video plus a Job.

    ``status`` uses Pod's words (pending, running, completed, failed, timeout, warning); while
    ``job_id`` is empty the source is still being fetched. ``token_sha256`` names which
    configured runner token created the task (the callback is sent with that token, never
    stored here). ``notify_state`` is none (no notify_url), pending, sent, unconfirmed (sent,
    no answer in time) or failed.
    """

    __tablename__ = "runner_tasks"
    __table_args__ = (Index("ix_runner_tasks_notify", "notify_state", "notify_next_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    task_type: Mapped[str] = mapped_column(String(32))
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    source_url: Mapped[str] = mapped_column(Text)
    notify_url: Mapped[str | None] = mapped_column(Text)
    token_sha256: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    job_id: Mapped[str | None] = mapped_column(String(32))
    video_id: Mapped[str | None] = mapped_column(String(32))
    fetch_attempts: Mapped[int] = mapped_column(Integer, default=0)
    fetch_next_at: Mapped[datetime | None] = mapped_column()
    error_message: Mapped[str | None] = mapped_column(Text)
    script_output: Mapped[str | None] = mapped_column(Text)
    notify_state: Mapped[str] = mapped_column(String(16), default="none")
    notify_attempts: Mapped[int] = mapped_column(Integer, default=0)
    notify_next_at: Mapped[datetime | None] = mapped_column()
    notify_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RunnerManager(Base):
    """An HTTP runner manager (Esup-Runner protocol) the control plane hands jobs to.

    Lower ``priority`` is tried first; managers of equal priority take turns (least recently
    used first, ``last_used_at``). ``token_encrypted`` is the manager's shared Bearer secret,
    encrypted at rest (vidfarm.dispatch.runners.registry); it is never returned by the API.
    """

    __tablename__ = "runner_managers"
    __table_args__ = (Index("ux_runner_managers_name", "name", unique=True),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(128))
    priority: Mapped[int] = mapped_column(Integer, default=0)
    url: Mapped[str] = mapped_column(Text)
    token_encrypted: Mapped[str] = mapped_column(Text)
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    #: The task types its health answer announced (None: not known yet, or a foreign
    #: Esup-Runner that announces none); vidfarm-only types (chunks) go only where listed.
    task_types: Mapped[list[str] | None] = mapped_column(JSON)
    task_types_checked_at: Mapped[datetime | None] = mapped_column()


class RunnerAssignment(Base):
    """One attempt of a job handed to a runner manager, and the import of its result.

    ``state``: submitting (being offered to managers) → running (a manager took it as
    ``task_id``; the job runs with ``fencing_token``) → completed | failed | timeout, or
    abandoned when the job moved on without it (cancelled, lease expired, restarted).
    ``next_check_at``: when to ask the manager about a running task next; on an abandoned
    one, when to send the stop again (None once the manager took it or has nothing to stop).
    ``import_state``: none → importing (held by ``import_owner`` until
    ``import_expires_at``: the conditional update that makes the import happen once) →
    imported | failed | skipped. The source URL's secret is stored as its SHA-256 only.
    """

    __tablename__ = "runner_assignments"
    __table_args__ = (
        Index("ix_runner_assignments_task_id", "task_id"),
        Index("ix_runner_assignments_state", "state", "next_check_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    manager_id: Mapped[str] = mapped_column(
        ForeignKey("runner_managers.id", ondelete="CASCADE"), index=True
    )
    task_id: Mapped[str | None] = mapped_column(String(128))
    task_type: Mapped[str] = mapped_column(String(32))
    fencing_token: Mapped[int | None] = mapped_column(Integer)
    source_secret_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="submitting")
    remote_status: Mapped[str | None] = mapped_column(String(16))
    import_state: Mapped[str] = mapped_column(String(16), default="none")
    import_owner: Mapped[str | None] = mapped_column(String(128))
    import_expires_at: Mapped[datetime | None] = mapped_column()
    error: Mapped[str | None] = mapped_column(Text)
    script_output: Mapped[str | None] = mapped_column(Text)
    submitted_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_news_at: Mapped[datetime | None] = mapped_column()
    next_check_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()

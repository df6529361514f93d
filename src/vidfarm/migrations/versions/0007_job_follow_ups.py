"""Jobs carry their follow-ups (jobs to create once they complete) as data.

Before, the job core itself knew that an encode of a video with a language is followed by its
transcription; now whoever submits the encode says so, and the core creates any follow-up
without knowing kinds. Waiting or running encodes of such videos get theirs here.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_UNFINISHED = ("pending", "queued", "running")


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("follow_ups", sa.JSON(), nullable=True))
    jobs = sa.table(
        "jobs",
        sa.column("id", sa.String),
        sa.column("type", sa.String),
        sa.column("status", sa.String),
        sa.column("video_id", sa.String),
        sa.column("follow_ups", sa.JSON),
    )
    videos = sa.table("videos", sa.column("id", sa.String), sa.column("language", sa.String))
    bind = op.get_bind()
    rows = bind.execute(
        sa.select(jobs.c.id, videos.c.language)
        .join(videos, videos.c.id == jobs.c.video_id)
        .where(
            jobs.c.type == "encode",
            jobs.c.status.in_(_UNFINISHED),
            videos.c.language.is_not(None),
        )
    ).all()
    for job_id, language in rows:
        follow = [{"type": "transcription", "params": {"language": language.lower()}}]
        bind.execute(sa.update(jobs).where(jobs.c.id == job_id).values(follow_ups=follow))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("follow_ups")

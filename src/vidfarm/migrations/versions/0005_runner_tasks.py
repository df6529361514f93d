"""Runner tasks: what an Esup-Pod style client asked `vidfarm runner` to do, and its callback.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "runner_tasks",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("task_type", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=False),
        sa.Column("notify_url", sa.Text(), nullable=True),
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("video_id", sa.String(length=32), nullable=True),
        sa.Column("fetch_attempts", sa.Integer(), nullable=False),
        sa.Column("fetch_next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("script_output", sa.Text(), nullable=True),
        sa.Column("notify_state", sa.String(length=16), nullable=False),
        sa.Column("notify_attempts", sa.Integer(), nullable=False),
        sa.Column("notify_next_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("notify_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_runner_tasks_fingerprint", "runner_tasks", ["fingerprint"], unique=False)
    op.create_index("ix_runner_tasks_status", "runner_tasks", ["status"], unique=False)
    op.create_index(
        "ix_runner_tasks_notify", "runner_tasks", ["notify_state", "notify_next_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_runner_tasks_notify", table_name="runner_tasks")
    op.drop_index("ix_runner_tasks_status", table_name="runner_tasks")
    op.drop_index("ix_runner_tasks_fingerprint", table_name="runner_tasks")
    op.drop_table("runner_tasks")

"""Runner managers the control plane dispatches to, and each job attempt handed to one.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "runner_managers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("token_encrypted", sa.Text(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ux_runner_managers_name", "runner_managers", ["name"], unique=True)
    op.create_table(
        "runner_assignments",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("manager_id", sa.String(length=32), nullable=False),
        sa.Column("task_id", sa.String(length=128), nullable=True),
        sa.Column("task_type", sa.String(length=32), nullable=False),
        sa.Column("fencing_token", sa.Integer(), nullable=True),
        sa.Column("source_secret_sha256", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("remote_status", sa.String(length=16), nullable=True),
        sa.Column("import_state", sa.String(length=16), nullable=False),
        sa.Column("import_owner", sa.String(length=128), nullable=True),
        sa.Column("import_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("script_output", sa.Text(), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_news_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["manager_id"], ["runner_managers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_runner_assignments_job_id", "runner_assignments", ["job_id"], unique=False)
    op.create_index(
        "ix_runner_assignments_manager_id", "runner_assignments", ["manager_id"], unique=False
    )
    op.create_index(
        "ix_runner_assignments_task_id", "runner_assignments", ["task_id"], unique=False
    )
    op.create_index(
        "ix_runner_assignments_state",
        "runner_assignments",
        ["state", "next_check_at"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_runner_assignments_state", table_name="runner_assignments")
    op.drop_index("ix_runner_assignments_task_id", table_name="runner_assignments")
    op.drop_index("ix_runner_assignments_manager_id", table_name="runner_assignments")
    op.drop_index("ix_runner_assignments_job_id", table_name="runner_assignments")
    op.drop_table("runner_assignments")
    op.drop_index("ux_runner_managers_name", table_name="runner_managers")
    op.drop_table("runner_managers")

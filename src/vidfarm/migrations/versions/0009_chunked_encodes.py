"""Jobs made of children: a chunked encode's `encode_chunk` jobs and its `stitch`.

`parent_id` ties a child to the job it is part of (cancelling the parent cancels it);
`join_type` is the job type the core creates, once, when every child of a parent completed.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("parent_id", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("join_type", sa.String(length=32), nullable=True))
        batch.create_index("ix_jobs_parent_id", ["parent_id"])
        batch.create_foreign_key(
            "fk_jobs_parent_id", "jobs", ["parent_id"], ["id"], ondelete="CASCADE"
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_constraint("fk_jobs_parent_id", type_="foreignkey")
        batch.drop_index("ix_jobs_parent_id")
        batch.drop_column("join_type")
        batch.drop_column("parent_id")

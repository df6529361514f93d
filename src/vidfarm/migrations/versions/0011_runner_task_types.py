"""Runner managers say which task types they run: a vidfarm manager also takes chunks.

`task_types` is what the manager's health answer announced (None: not asked yet, or it
announced nothing, as a foreign Esup-Runner); `task_types_checked_at` is when it was asked.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("runner_managers") as batch:
        batch.add_column(sa.Column("task_types", sa.JSON(), nullable=True))
        batch.add_column(
            sa.Column("task_types_checked_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("runner_managers") as batch:
        batch.drop_column("task_types_checked_at")
        batch.drop_column("task_types")

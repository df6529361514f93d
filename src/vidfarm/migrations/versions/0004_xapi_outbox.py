"""The xAPI outbox: statements are stored in SQL first, then delivered to the LRS.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "xapi_statements",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("statement", sa.JSON(), nullable=False),
        sa.Column("video_id", sa.String(length=32), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_status", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_xapi_statements_due", "xapi_statements", ["state", "next_attempt_at"], unique=False
    )
    op.create_index("ix_xapi_statements_video_id", "xapi_statements", ["video_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_xapi_statements_video_id", table_name="xapi_statements")
    op.drop_index("ix_xapi_statements_due", table_name="xapi_statements")
    op.drop_table("xapi_statements")

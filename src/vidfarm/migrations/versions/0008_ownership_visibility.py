"""Videos and jobs record the token that created them; videos get a visibility.

Existing rows keep no owner (only admins see them) and stay private.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("owner_token_id", sa.String(32), nullable=True))
        batch.add_column(
            sa.Column("visibility", sa.String(16), nullable=False, server_default="private")
        )
        batch.create_index("ix_videos_owner_token_id", ["owner_token_id"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("owner_token_id", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("owner_token_id")
    with op.batch_alter_table("videos") as batch:
        batch.drop_index("ix_videos_owner_token_id")
        batch.drop_column("visibility")
        batch.drop_column("owner_token_id")

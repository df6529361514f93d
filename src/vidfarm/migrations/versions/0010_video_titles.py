"""Videos get a title and a description: people tell two "speech.mp4" apart by name.

Existing videos take their file name as title (the default of a new upload too).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.add_column(sa.Column("title", sa.String(255), nullable=True))
        batch.add_column(sa.Column("description", sa.Text(), nullable=True))
    op.execute("UPDATE videos SET title = filename WHERE title IS NULL")


def downgrade() -> None:
    with op.batch_alter_table("videos") as batch:
        batch.drop_column("description")
        batch.drop_column("title")

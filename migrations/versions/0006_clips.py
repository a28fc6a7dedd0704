"""Clips (issue 21): a job may paint a moving picture; ``clip`` holds what the worker needs for it
(quality, output format, byte limit, the clip limits), NULL for a photo.

Revision ID: 0006_clips
Revises: 0005_moderation
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0006_clips"
down_revision: str | Sequence[str] | None = "0005_moderation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# JSONB on PostgreSQL, JSON (text) on SQLite, as in the models.
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy): SQLite takes a nullable column, and `--sql` needs no table.
    op.add_column("jobs", sa.Column("clip", JSON, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("clip")

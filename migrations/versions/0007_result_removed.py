"""Jobs remember when their result was deleted (the Delete button, by its owner or the chat's moderators),
so that nothing offers it again.

Revision ID: 0007_result_removed
Revises: 0006_clips
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_result_removed"
down_revision: str | Sequence[str] | None = "0006_clips"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain nullable ADD COLUMN (no batch copy): no existing result was deleted.
    op.add_column("jobs", sa.Column("result_removed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("result_removed_at")

"""Jobs remember when their result was given up: the platform said it can never be delivered (the user
blocked the bot, the chat is gone), so redelivery leaves it alone.

Revision ID: 0004_delivery_given_up
Revises: 0003_platforms
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_delivery_given_up"
down_revision: str | Sequence[str] | None = "0003_platforms"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # Plain nullable ADD COLUMNs (no batch copy): every existing job is simply not given up.
    op.add_column("jobs", sa.Column("delivery_given_up_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("jobs", sa.Column("delivery_given_up_reason", sa.String(255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("delivery_given_up_reason")
        batch.drop_column("delivery_given_up_at")

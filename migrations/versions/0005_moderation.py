"""Moderation: the people the bot's admins blocked, and the groups and servers whose admins switched the
bot off there.

Revision ID: 0005_moderation
Revises: 0004_delivery_given_up
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_moderation"
down_revision: str | Sequence[str] | None = "0004_delivery_given_up"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "blocked_users",
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("user_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("blocked_by", sa.BigInteger(), nullable=True),
        sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("platform", "user_id", name=op.f("pk_blocked_users")),
    )
    op.create_table(
        "disabled_chats",
        sa.Column("platform", sa.String(16), nullable=False),
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("disabled_by", sa.BigInteger(), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("platform", "chat_id", name=op.f("pk_disabled_chats")),
    )


def downgrade() -> None:
    op.drop_table("disabled_chats")
    op.drop_table("blocked_users")

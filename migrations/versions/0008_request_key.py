"""Jobs remember the request that made them (the platform's message or button press), unique per
platform: a request the platform sends again after a crash finds its job instead of making a second one.

Revision ID: 0008_request_key
Revises: 0007_result_removed
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_request_key"
down_revision: str | Sequence[str] | None = "0007_result_removed"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain nullable ADD COLUMN and a unique index (no batch copy): existing jobs have no key, and
    # NULLs never collide in a unique index on either back end.
    op.add_column("jobs", sa.Column("request_key", sa.String(64), nullable=True))
    op.create_index("ix_jobs_platform_request_key", "jobs", ["platform", "request_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_jobs_platform_request_key", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("request_key")

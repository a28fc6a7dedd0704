"""Jobs have a weight: how many ordinary jobs one counts as (a strip of five panels counts more).

Revision ID: 0002_job_weight
Revises: 0001_initial
Create Date: 2025-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_job_weight"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A plain ADD COLUMN (no batch copy): SQLite takes it with a constant default, and `--sql` needs no table.
    op.add_column("jobs", sa.Column("weight", sa.Double(), server_default=sa.text("1.0"), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("weight")

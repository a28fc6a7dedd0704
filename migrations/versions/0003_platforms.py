"""Platforms: users, presets, chat defaults and jobs say which chat platform they belong to; personal
style images get a table of their own.

Revision ID: 0003_platforms
Revises: 0002_job_weight
Create Date: 2026-12-01

Every existing row is Telegram's (the column's server default). A user is now (platform, id): Telegram and
Discord ids are separate spaces. Downgrading keeps only the Telegram rows, since without the platform
column nothing could tell a Discord id from a Telegram one.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op
from sqlalchemy.dialects import postgresql

revision: str = "0003_platforms"
down_revision: str | Sequence[str] | None = "0002_job_weight"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def _old(name: str, *, constraints: bool = True) -> sa.Table:
    """A table as 0001 made it: what SQLite's batch mode copies when there is no database to read it
    from (``alembic upgrade --sql``)."""
    meta = sa.MetaData()
    if name == "users":
        return sa.Table(
            "users",
            meta,
            sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
            sa.Column("username", sa.String(64)),
            sa.Column("first_name", sa.Text()),
            sa.Column("language_code", sa.String(35)),
            sa.Column("settings", JSON, nullable=False),
            sa.Column("created_at", TIMESTAMP, nullable=False),
            sa.Column("last_seen_at", TIMESTAMP, nullable=False),
            sa.PrimaryKeyConstraint("id", name="pk_users"),
        )
    if name == "presets":
        sa.Table("users", meta, sa.Column("id", sa.BigInteger(), primary_key=True))
        extra = (
            [
                sa.ForeignKeyConstraint(
                    ["user_id"], ["users.id"], name="fk_presets_user_id_users", ondelete="CASCADE"
                ),
                sa.UniqueConstraint("user_id", "name_key", name="uq_presets_user_id_name_key"),
            ]
            if constraints
            else []
        )
        return sa.Table(
            "presets",
            meta,
            sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
            sa.Column("user_id", sa.BigInteger(), nullable=False),
            sa.Column("name", sa.String(32), nullable=False),
            sa.Column("name_key", sa.String(128), nullable=False),
            sa.Column("styles", JSON, nullable=False),
            sa.Column("settings", JSON, nullable=False),
            sa.Column("created_at", TIMESTAMP, nullable=False),
            sa.Column("updated_at", TIMESTAMP, nullable=False),
            sa.PrimaryKeyConstraint("id", name="pk_presets"),
            *extra,
        )
    return sa.Table(
        "chat_defaults",
        meta,
        sa.Column("chat_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("styles", JSON),
        sa.Column("settings", JSON, nullable=False),
        sa.Column("updated_by", sa.BigInteger()),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("chat_id", name="pk_chat_defaults"),
    )


def _batch(name: str, **old: bool):
    if context.is_offline_mode():
        return op.batch_alter_table(name, copy_from=_old(name, **old))
    return op.batch_alter_table(name)


def _platform() -> sa.Column:
    return sa.Column("platform", sa.String(16), server_default="telegram", nullable=False)


def upgrade() -> None:
    with _batch("presets") as batch:
        batch.drop_constraint("fk_presets_user_id_users", type_="foreignkey")
        batch.drop_constraint("uq_presets_user_id_name_key", type_="unique")
    with _batch("users") as batch:
        batch.add_column(_platform())
        batch.drop_constraint("pk_users", type_="primary")
        batch.create_primary_key("pk_users", ["platform", "id"])
    with _batch("presets", constraints=False) as batch:
        batch.add_column(_platform())
        batch.create_unique_constraint(
            "uq_presets_platform_user_id_name_key", ["platform", "user_id", "name_key"]
        )
        batch.create_foreign_key(
            "fk_presets_platform_users",
            "users",
            ["platform", "user_id"],
            ["platform", "id"],
            ondelete="CASCADE",
        )
    with _batch("chat_defaults") as batch:
        batch.add_column(_platform())
        batch.drop_constraint("pk_chat_defaults", type_="primary")
        batch.create_primary_key("pk_chat_defaults", ["platform", "chat_id"])
    op.add_column("jobs", _platform())  # plain ADD COLUMN, which SQLite does too
    op.add_column("jobs", sa.Column("guild_id", sa.BigInteger(), nullable=True))
    op.create_table(
        "style_images",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        _platform(),
        sa.Column("user_id", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("file_id", sa.String(255), nullable=True),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["platform", "user_id"],
            ["users.platform", "users.id"],
            name=op.f("fk_style_images_platform_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_style_images")),
    )
    op.create_index(op.f("ix_style_images_platform_user_id"), "style_images", ["platform", "user_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_style_images_platform_user_id"), table_name="style_images")
    op.drop_table("style_images")
    for table in ("jobs", "chat_defaults", "presets", "users"):  # presets before the users they point to
        op.execute(sa.text(f"DELETE FROM {table} WHERE platform <> 'telegram'"))
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("guild_id")
        batch.drop_column("platform")
    with op.batch_alter_table("chat_defaults") as batch:
        batch.drop_constraint("pk_chat_defaults", type_="primary")
        batch.create_primary_key("pk_chat_defaults", ["chat_id"])
        batch.drop_column("platform")
    with op.batch_alter_table("presets") as batch:
        batch.drop_constraint("fk_presets_platform_users", type_="foreignkey")
        batch.drop_constraint("uq_presets_platform_user_id_name_key", type_="unique")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint("pk_users", type_="primary")
        batch.create_primary_key("pk_users", ["id"])
        batch.drop_column("platform")
    with op.batch_alter_table("presets") as batch:
        batch.drop_column("platform")
        batch.create_unique_constraint("uq_presets_user_id_name_key", ["user_id", "name_key"])
        batch.create_foreign_key("fk_presets_user_id_users", "users", ["user_id"], ["id"], ondelete="CASCADE")

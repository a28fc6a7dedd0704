"""SQLAlchemy tables. Only ``bot/db`` imports this module; the rest of the bot sees records.

Changing a model means writing a migration in ``migrations/versions``; ``alembic check`` (run by the
tests) fails while the two disagree.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Dialect,
    Double,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bot.db.records import JobState

PRESET_NAME_MAX = 32
TELEGRAM = "telegram"  # every row from before the platforms (migration 0002) is Telegram's
PLATFORM_LENGTH = 16
GIVE_UP_REASON_MAX = 255
REQUEST_KEY_MAX = 64  # "message:<chat>:<message>" or "callback:<query id>" (bot.telegram) fits with room

# Named constraints: SQLite's batch migrations and every downgrade need to address them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every back end.

    PostgreSQL stores ``timestamptz`` and returns aware values, but SQLite keeps text and gives naive
    ones back. Binding converts to UTC (and refuses naive values, which are always a bug here) so that
    SQLite's text comparisons order correctly; loading attaches UTC where the driver left it off.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: the database keeps aware UTC timestamps")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# JSON on SQLite (text), JSONB on PostgreSQL. none_as_null: a Python None is SQL NULL, not JSON 'null'.
JSONType = JSON(none_as_null=True).with_variant(JSONB(none_as_null=True), "postgresql")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads it as a class attribute
        datetime: UTCDateTime(),
        dict[str, Any]: JSONType,
        list[dict[str, Any]]: JSONType,
        list[str]: JSONType,
    }


def _platform() -> Mapped[str]:
    """Which chat platform an id belongs to: "telegram" or "discord" (ids of the two may coincide)."""
    return mapped_column(String(PLATFORM_LENGTH), default=TELEGRAM, server_default=TELEGRAM)


class User(Base):
    """A person on one platform: a Telegram user (or a chat that sends as itself), or a Discord user
    (a 64-bit snowflake)."""

    __tablename__ = "users"
    __table_args__ = (PrimaryKeyConstraint("platform", "id"),)

    platform: Mapped[str] = _platform()
    id: Mapped[int] = mapped_column(BigInteger, autoincrement=False)
    username: Mapped[str | None] = mapped_column(String(64))
    first_name: Mapped[str | None] = mapped_column(Text)
    language_code: Mapped[str | None] = mapped_column(String(35))  # the longest common BCP 47 tag
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class Preset(Base):
    """A user's saved combination of styles and settings.

    ``name_key`` is the case-folded name, computed in Python: SQLite's ``lower()`` folds ASCII only, so
    a unique index on ``lower(name)`` would let "Мой" and "мой" coexist there but not on PostgreSQL.
    """

    __tablename__ = "presets"
    __table_args__ = (
        UniqueConstraint("platform", "user_id", "name_key"),
        ForeignKeyConstraint(["platform", "user_id"], ["users.platform", "users.id"], ondelete="CASCADE"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    platform: Mapped[str] = _platform()
    user_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(PRESET_NAME_MAX))
    name_key: Mapped[str] = mapped_column(String(4 * PRESET_NAME_MAX))  # casefold() can lengthen
    styles: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ChatDefaults(Base):
    """What a group's admins chose as the default for everyone in the chat: a Telegram group, or a
    Discord guild (``chat_id`` is then the guild's id, so the default holds in all its channels)."""

    __tablename__ = "chat_defaults"
    __table_args__ = (PrimaryKeyConstraint("platform", "chat_id"),)

    platform: Mapped[str] = _platform()
    chat_id: Mapped[int] = mapped_column(BigInteger, autoincrement=False)
    styles: Mapped[list[dict[str, Any]] | None] = mapped_column()
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    updated_by: Mapped[int | None] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


_STATES = ", ".join(f"'{state.value}'" for state in JobState)


class Job(Base):
    """One stylization request, from the user's photo to the sent result."""

    __tablename__ = "jobs"
    __table_args__ = (
        CheckConstraint(f"state IN ({_STATES})", name="state"),
        Index(None, "state", "created_at"),
        Index(None, "user_id", "created_at"),
        Index(None, "platform", "request_key", unique=True),  # NULLs (no key) never collide
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    platform: Mapped[str] = _platform()
    user_id: Mapped[int] = mapped_column(BigInteger)
    chat_id: Mapped[int] = mapped_column(BigInteger)  # a Telegram chat, or a Discord channel (DMs too)
    # What asked for the job on its platform (the message or button press): the same request sent again
    # (an update the bot had not confirmed when it died) finds this job instead of making a second one.
    request_key: Mapped[str | None] = mapped_column(String(REQUEST_KEY_MAX))
    guild_id: Mapped[int | None] = mapped_column(BigInteger)  # Discord: the channel's guild; None in a DM
    chat_type: Mapped[str] = mapped_column(String(16))
    language_code: Mapped[str | None] = mapped_column(String(35))
    source_message_id: Mapped[int] = mapped_column(BigInteger)
    status_message_id: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16), default=JobState.QUEUED.value)
    styles: Mapped[list[dict[str, Any]]] = mapped_column(default=list)
    style_label: Mapped[str] = mapped_column(Text)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    content_path: Mapped[str] = mapped_column(Text)
    style_paths: Mapped[list[str]] = mapped_column(default=list)
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer, default=2, server_default=text("2"))
    weight: Mapped[float] = mapped_column(Double, default=1.0, server_default=text("1.0"))
    clip: Mapped[dict[str, Any] | None] = mapped_column(default=None)  # a clip job's options; None: a photo
    worker: Mapped[str | None] = mapped_column(String(128))
    external_id: Mapped[str | None] = mapped_column(String(255))
    progress: Mapped[float | None] = mapped_column(Double)
    eta_seconds: Mapped[float | None] = mapped_column(Double)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    result_file_id: Mapped[str | None] = mapped_column(String(255))
    # The platform said the result can never reach its owner (blocked, chat gone): not sent again.
    delivery_given_up_at: Mapped[datetime | None] = mapped_column()
    delivery_given_up_reason: Mapped[str | None] = mapped_column(String(GIVE_UP_REASON_MAX))
    # Its owner or the chat's moderators deleted the result (bot.services.moderation): offered nowhere again.
    result_removed_at: Mapped[datetime | None] = mapped_column()
    result_width: Mapped[int | None] = mapped_column(Integer)
    result_height: Mapped[int | None] = mapped_column(Integer)
    engine_seconds: Mapped[float | None] = mapped_column(Double)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()


class StyleImage(Base):
    """A picture a user keeps as a personal style. Telegram keeps its file id (files stay fetchable);
    Discord keeps the image itself, since attachment addresses expire."""

    __tablename__ = "style_images"
    __table_args__ = (
        ForeignKeyConstraint(["platform", "user_id"], ["users.platform", "users.id"], ondelete="CASCADE"),
        Index(None, "platform", "user_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    platform: Mapped[str] = _platform()
    user_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(PRESET_NAME_MAX))
    file_id: Mapped[str | None] = mapped_column(String(255))
    data: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BlockedUser(Base):
    """A person the bot's admins blocked (``bot.services.moderation``): their new jobs are refused. No
    foreign key to ``users``: someone may be blocked by id before the bot ever saw them."""

    __tablename__ = "blocked_users"
    __table_args__ = (PrimaryKeyConstraint("platform", "user_id"),)

    platform: Mapped[str] = mapped_column(String(PLATFORM_LENGTH))
    user_id: Mapped[int] = mapped_column(BigInteger, autoincrement=False)
    blocked_by: Mapped[int | None] = mapped_column(BigInteger)
    blocked_at: Mapped[datetime] = mapped_column(default=utcnow)


class DisabledChat(Base):
    """A group (Telegram) or server (Discord) whose admins switched the bot off there: its members' new
    jobs are refused until they switch it on again."""

    __tablename__ = "disabled_chats"
    __table_args__ = (PrimaryKeyConstraint("platform", "chat_id"),)

    platform: Mapped[str] = mapped_column(String(PLATFORM_LENGTH))
    chat_id: Mapped[int] = mapped_column(BigInteger, autoincrement=False)
    disabled_by: Mapped[int | None] = mapped_column(BigInteger)
    disabled_at: Mapped[datetime] = mapped_column(default=utcnow)

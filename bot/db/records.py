"""Plain, frozen copies of database rows: what the data layer hands to the rest of the bot.

Handlers never see ORM objects or sessions, so nothing outside ``bot/db`` can lazy-load after a session
closed or write to a row by accident. JSON columns come back as ordinary dicts and lists; the records are
frozen, their JSON contents are not deep-frozen, and changing them changes nothing in the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

SKETCH_WORKER = "sketch"  # the ``worker`` of a job the bot's sketch process claimed (``JobQueue.claim``)
INSTANT_QUALITY = "instant"  # the tier whose result is the sketch (``engine.schedule``)
# A job's ``source_message_id`` when no message of its chat stands for it: a job moved to a chat's new
# id (``ChatRepository.move_chat``), whose message ids name nothing there. Never a real message's id.
NO_MESSAGE = 0


class JobState(StrEnum):
    """Where a job is in its life; stored as the lower-case value."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    # A plain class attribute of an Enum would become a member, so ACTIVE is set below the class.
    ACTIVE: ClassVar[tuple[JobState, ...]]


JobState.ACTIVE = (JobState.QUEUED, JobState.RUNNING)


@dataclass(frozen=True)
class UserRecord:
    id: int  # the user's id on its platform
    username: str | None
    first_name: str | None
    language_code: str | None
    settings: dict[str, Any]  # StyleSettings overrides (only_changed) plus result_as / live_preview
    created_at: datetime
    last_seen_at: datetime
    platform: str = "telegram"


@dataclass(frozen=True)
class PresetRecord:
    id: int
    user_id: int
    name: str  # as the user typed it; lookups ignore case
    styles: list[dict[str, Any]]  # [{"preset": ..., "weight": ...}] or [{"file_id": ..., ...}]
    settings: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    platform: str = "telegram"


@dataclass(frozen=True)
class ChatDefaultsRecord:
    chat_id: int
    styles: list[dict[str, Any]] | None
    settings: dict[str, Any]
    updated_by: int | None
    updated_at: datetime
    platform: str = "telegram"


@dataclass(frozen=True)
class JobRecord:
    id: int
    user_id: int
    chat_id: int
    chat_type: str  # Telegram: "private", "group" or "supergroup"; Discord: "private" (a DM) or "guild"
    language_code: str | None
    source_message_id: int  # the user's photo message; the result replies to it
    status_message_id: int | None  # the bot's status message, once sent
    state: JobState
    styles: list[dict[str, Any]]
    style_label: str  # for the caption, e.g. "The Starry Night"
    settings: dict[str, Any]
    content_path: str
    style_paths: list[str]
    attempts: int
    max_attempts: int
    worker: str | None
    external_id: str | None  # e.g. a Celery task id
    progress: float | None  # 0..1
    eta_seconds: float | None
    error_code: str | None
    error_message: str | None
    result_file_id: str | None
    result_width: int | None
    result_height: int | None
    engine_seconds: float | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    weight: float = 1.0  # how many ordinary jobs this one counts as for limits and waiting times
    platform: str = "telegram"  # where the job came from: its events go back there
    guild_id: int | None = None  # Discord: the guild of the channel; None in a DM and on Telegram
    delivery_given_up_at: datetime | None = None  # the platform said the result can never be delivered
    delivery_given_up_reason: str | None = None  # what it said, shortened
    result_removed_at: datetime | None = None  # its owner or a moderator deleted the result
    clip: dict[str, Any] | None = None  # a moving picture's options (bot.services.clips); None: a photo
    request_key: str | None = None  # the platform's request that made it (unique per platform), if known

    @property
    def is_active(self) -> bool:
        return self.state in JobState.ACTIVE

    @property
    def kind(self) -> str:
        """What the job paints: "clip" (a GIF or video, frame by frame) or "photo"."""
        return "photo" if self.clip is None else "clip"


@dataclass(frozen=True)
class ChatMove:
    """What ``move_chat`` moved from a chat's old id to its new one (all zero: moved already)."""

    jobs: tuple[int, ...]  # the ids of the chat's jobs (any state), in order
    defaults: bool  # the chat's default style and settings
    switched_off: bool  # the bot switched off there
    sender: bool  # the chat as a sender (a Telegram group's anonymous admins): settings, presets, images
    active: tuple[int, ...] = ()  # those of ``jobs`` queued or running

    @property
    def anything(self) -> bool:
        return bool(self.jobs) or self.defaults or self.switched_off or self.sender


@dataclass(frozen=True)
class StyleImageRecord:
    id: int
    platform: str
    user_id: int
    name: str
    file_id: str | None  # Telegram
    data: bytes | None  # Discord
    created_at: datetime

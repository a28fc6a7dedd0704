"""Named presets (a style plus settings) per user, and a group's default style (a Telegram group's, a
Discord server's): one set of rules for every platform."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.db import ChatDefaultsRecord, Database, LimitExceededError, PresetRecord
from bot.services import styles
from bot.services.access import Admins
from bot.services.preferences import job_settings
from bot.services.refusals import NotManagerError, Refused
from bot.services.styles import StyleChoice
from bot.services.users import load_preferences
from engine.catalog import Catalog
from engine.protocol import StyleSettings

NAME = re.compile(r"[\w-]{1,32}")


class PresetError(Refused):
    """A preset request the user has to change; ``kind`` picks the message (``preset_<kind>``), which
    may name the preset (``name``)."""

    def __init__(self, kind: str, **details: object) -> None:
        super().__init__(f"preset_{kind}", **details)
        self.kind, self.details = kind, details


@dataclass(frozen=True)
class PresetService:
    db: Database
    catalog: Catalog
    max_presets: int
    admins: Admins = field(default_factory=Admins)

    async def settings_for(
        self,
        user_id: int,
        *,
        platform: str,
        group_id: int | None,
        preset: dict,
        default_quality: str,
    ) -> StyleSettings:
        """A new job's settings, every layer in its place (``preferences.job_settings``): the group's
        defaults (``group_id``: a Telegram group or a Discord server; None in a private chat), the user's
        /settings, then the preset's own."""
        group: dict[str, Any] = {}
        if group_id is not None:
            _, group = await self.chat_default(group_id, "", platform=platform)
        return job_settings(
            default_quality=default_quality,
            chat=group,
            preferences=await load_preferences(self.db, user_id, platform=platform),
            preset=preset,
        )

    def check_name(self, name: str) -> None:
        """Refuse a name before anything else is asked of the user."""
        if not NAME.fullmatch(name):
            raise PresetError("name_invalid", name=name)
        if name in self.catalog:  # a preset named like a painting would hide the painting in captions
            raise PresetError("name_is_painting", name=name)

    async def save_style(
        self, user_id: int, name: str, choice: StyleChoice | None, *, platform: str
    ) -> PresetRecord:
        """``/preset save``: ``choice`` (named, or an image), else the style of the user's latest job,
        with the user's current /settings. The latest job counts only if every style in it can be kept:
        a painting, a stored personal style or a Telegram file id, not a picture sent once with a
        Discord command (PresetError "nothing_to_save")."""
        self.check_name(name)
        if choice is None:
            latest = await self.db.recent_jobs(user_id, 1, platform=platform)
            if not latest or not all(_savable(ref) for ref in latest[0].styles):
                raise PresetError("nothing_to_save", name=name)
            choice = StyleChoice(refs=tuple(latest[0].styles), label=latest[0].style_label)
        prefs = await load_preferences(self.db, user_id, platform=platform)
        return await self.save(user_id, name, choice, prefs.style_settings(), platform=platform)

    def label(self, saved: Sequence[dict[str, Any]], image_label: str) -> str:
        """What a preset (or a group default) paints with, in words (``image_label`` for own images)."""
        return styles.describe(saved, self.catalog, image_label)

    async def save(
        self, user_id: int, name: str, choice: StyleChoice, settings: dict, *, platform: str
    ) -> PresetRecord:
        """Create or overwrite the user's preset ``name``."""
        self.check_name(name)
        styles.check_blend(choice)
        try:
            return await self.db.save_preset(
                user_id,
                name,
                styles.for_saving(choice),
                settings,
                max_presets=self.max_presets,
                platform=platform,
            )
        except LimitExceededError as err:  # checked with the insert, as one step
            raise PresetError("limit", count=err.count, name=name) from None

    async def get(self, user_id: int, name: str, *, platform: str) -> PresetRecord:
        record = await self.db.get_preset(user_id, name, platform=platform)
        if record is None:
            raise PresetError("not_found", name=name)
        return record

    async def list(self, user_id: int, *, platform: str) -> list[PresetRecord]:
        return await self.db.list_presets(user_id, platform=platform)

    async def delete(self, user_id: int, name: str, *, platform: str) -> None:
        if not await self.db.delete_preset(user_id, name, platform=platform):
            raise PresetError("not_found", name=name)

    async def set_group_default(
        self,
        group_id: int,
        name: str,
        user_id: int,
        *,
        platform: str,
        manages: Callable[[], Awaitable[bool]],
    ) -> PresetRecord | None:
        """``/preset chat NAME|off`` (Telegram) and ``/preset guild`` (Discord): the group's default style
        becomes the user's preset ``name``, or none for "off" (returns None). Only the platform's bot
        admins and those who manage the group (``manages``: the platform asks, only when needed) may;
        a personal style image belongs to one person, so it never becomes a group's default."""
        if not self.admins.is_admin(user_id, platform=platform) and not await manages():
            raise NotManagerError()
        if name.lower() == "off":
            await self.clear_chat_default(group_id, platform=platform)
            return None
        record = await self.get(user_id, name, platform=platform)
        if styles.from_preset(record).stored_image_ids:
            raise Refused("discord_guild_no_personal_styles")
        await self.set_chat_default(group_id, record, user_id, platform=platform)
        return record

    async def set_chat_default(
        self, chat_id: int, record: PresetRecord, by: int, *, platform: str
    ) -> ChatDefaultsRecord:
        """A Telegram group's default, or a Discord guild's (``chat_id``: the guild)."""
        return await self.db.set_chat_defaults(
            chat_id, list(record.styles), dict(record.settings), by, platform=platform
        )

    async def clear_chat_default(self, chat_id: int, *, platform: str) -> bool:
        return await self.db.clear_chat_defaults(chat_id, platform=platform)

    async def chat_default(
        self, chat_id: int, image_label: str, *, platform: str
    ) -> tuple[StyleChoice | None, dict]:
        """The group's default style (if any) and its default settings."""
        record = await self.db.get_chat_defaults(chat_id, platform=platform)
        if record is None:
            return None, {}
        choice = None
        if record.styles:
            label = styles.describe(record.styles, self.catalog, image_label)
            choice = styles.from_saved(record.styles, label, record.settings)
        return choice, dict(record.settings)


def _savable(ref: dict[str, Any]) -> bool:
    """Whether a job's style ref can be kept in a preset: a painting, a stored personal style, or an image
    the platform keeps by id (a Telegram file id)."""
    return bool(ref.get("preset") or ref.get("stored") or ref.get("file_id"))

"""Named presets (a style plus settings) per user, and a group's default style."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.db import ChatDefaultsRecord, Database, LimitExceededError, PresetRecord
from bot.services import styles
from bot.services.preferences import Preferences, job_settings
from bot.services.styles import StyleChoice
from engine.catalog import Catalog
from engine.protocol import StyleSettings

NAME = re.compile(r"[\w-]{1,32}")


class PresetError(Exception):
    """A preset request the user has to change; ``kind`` picks the message."""

    def __init__(self, kind: str, **details: object) -> None:
        super().__init__(kind)
        self.kind, self.details = kind, details


@dataclass(frozen=True)
class PresetService:
    db: Database
    catalog: Catalog
    max_presets: int

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
        user = await self.db.get_user(user_id, platform=platform)
        group = {}
        if group_id is not None:
            _, group = await self.chat_default(group_id, "", platform=platform)
        return job_settings(
            default_quality=default_quality,
            chat=group,
            preferences=Preferences.from_dict(user.settings if user else {}),
            preset=preset,
        )

    def check_name(self, name: str) -> None:
        """Refuse a name before anything else is asked of the user."""
        if not NAME.fullmatch(name):
            raise PresetError("name_invalid")
        if name in self.catalog:  # a preset named like a painting would hide the painting in captions
            raise PresetError("name_is_painting")

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
            raise PresetError("limit", count=err.count) from None

    async def get(self, user_id: int, name: str, *, platform: str) -> PresetRecord:
        record = await self.db.get_preset(user_id, name, platform=platform)
        if record is None:
            raise PresetError("not_found")
        return record

    async def list(self, user_id: int, *, platform: str) -> list[PresetRecord]:
        return await self.db.list_presets(user_id, platform=platform)

    async def delete(self, user_id: int, name: str, *, platform: str) -> None:
        if not await self.db.delete_preset(user_id, name, platform=platform):
            raise PresetError("not_found")

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

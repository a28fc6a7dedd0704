"""The people the bot talks to, each ``(platform, user id)``: their names and language, and their /settings.

``preferences`` is the one way anything reads a person's settings (a new job's layers, a preset saved from
them, the sketch toggle, photo or file); ``change`` is the one way a settings button or menu changes them.
"""

from __future__ import annotations

from dataclasses import replace

from bot.db import Database
from bot.services.preferences import COLOR_CHOICES, RESULT_AS, STRENGTHS, Preferences
from bot.services.refusals import Refused
from engine.protocol import QUALITIES

ON_OFF = ("on", "off")
SETTING_KEYS = ("quality", "strength", "preserve_colors", "result_as", "live_preview", "sketch")


async def load_preferences(db: Database, user_id: int, *, platform: str) -> Preferences:
    """A person's /settings (the defaults for someone never seen)."""
    user = await db.get_user(user_id, platform=platform)
    return Preferences.from_dict(user.settings if user else {})


def changed(prefs: Preferences, key: str, value: str) -> Preferences:
    """``prefs`` with one setting changed as a button or menu names it: a quality, a strength's name, a
    colour mode, photo or document, "on"/"off" for the toggles. Refused "button_expired" for anything
    else (an old button, a forged one)."""
    if key == "quality" and value in QUALITIES:
        return replace(prefs, quality=value)
    if key == "strength" and value in STRENGTHS:
        return replace(prefs, strength=STRENGTHS[value])
    if key == "preserve_colors" and value in COLOR_CHOICES:
        return replace(prefs, preserve_colors=value)
    if key == "result_as" and value in RESULT_AS:
        return replace(prefs, result_as=value)
    if key == "live_preview" and value in ON_OFF:
        return replace(prefs, live_preview=value == "on")
    if key == "sketch" and value in ON_OFF:
        return replace(prefs, sketch=value == "on")
    raise Refused("button_expired")


class UserService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def remember(
        self,
        user_id: int,
        *,
        platform: str,
        username: str | None,
        display_name: str | None,
        language: str | None,
    ) -> None:
        """Keep the person's row current (names, language, last seen) on every request."""
        await self.db.upsert_user(user_id, username, display_name, language, platform=platform)

    async def preferences(self, user_id: int, *, platform: str) -> Preferences:
        return await load_preferences(self.db, user_id, platform=platform)

    async def change(self, user_id: int, key: str, value: str, *, platform: str) -> tuple[Preferences, bool]:
        """Change one setting (see ``changed``); the new preferences and whether anything changed (the
        current choice pressed again changes nothing, and some platforms refuse an edit that changes
        nothing)."""
        prefs = await self.preferences(user_id, platform=platform)
        new = changed(prefs, key, value)
        if new == prefs:
            return prefs, False
        await self.db.update_user_settings(user_id, new.to_dict(), platform=platform)
        return new, True

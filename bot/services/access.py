"""Who the bot's admins are: a person is ``(platform, user id)``, and each platform lists its own.

``ADMIN_IDS`` are Telegram user ids, ``DISCORD_ADMIN_IDS`` Discord ones: the same number on two
platforms is two people, so an id is only ever compared with the ids of its own platform.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bot.config import Settings
from bot.frontend import DISCORD, TELEGRAM


@dataclass(frozen=True)
class Admins:
    """Admins are not limited (jobs per hour, active jobs, the queue's length) and may set any group's
    default style."""

    by_platform: Mapping[str, frozenset[int]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Admins:
        return cls({TELEGRAM: settings.admin_ids, DISCORD: settings.discord_admin_ids})

    def is_admin(self, user_id: int, *, platform: str) -> bool:
        return user_id in self.by_platform.get(platform, frozenset())

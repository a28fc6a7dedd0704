"""Who the bot's admins are: a person is ``(platform, user id)``, and each platform lists its own.

``ADMIN_IDS`` names each one with its platform (``telegram:123,discord:456``; a bare number is a Telegram
id): the same number on two platforms is two people, so an id is only ever compared with the ids of its
own platform.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

from bot.config import Settings
from bot.db import JobRecord
from bot.frontend import PLATFORMS


@dataclass(frozen=True)
class Admins:
    """Admins are not limited (jobs per hour, active jobs, the queue's length) and may set any group's
    default style."""

    by_platform: Mapping[str, frozenset[int]] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> Admins:
        by_platform = {
            platform: frozenset(user for where, user in settings.admin_ids if where == platform)
            for platform in PLATFORMS
        }
        return cls(by_platform)

    def is_admin(self, user_id: int, *, platform: str) -> bool:
        return user_id in self.by_platform.get(platform, frozenset())


def ownership(
    job: JobRecord | None, user_id: int, *, platform: str
) -> Literal["owner", "unknown", "not_yours"]:
    """Who may act on a job a button names (job ids are easy to guess): only its owner, a person being
    ``(platform, user id)``. ``unknown``: no such job on this platform. Every button's rule (Cancel, full
    resolution, the buttons under a result, "Keep the sketch") asks this, and says no in its own words."""
    if job is None or job.platform != platform:
        return "unknown"
    return "owner" if job.user_id == user_id else "not_yours"

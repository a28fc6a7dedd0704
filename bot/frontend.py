"""What the core asks of a chat platform: the four things it does with a job, whichever platform it came from.

The notifier holds one ``Frontend`` per platform (``bot.telegram.frontend``, ``bot.discord.frontend``) and
routes each job's events to the one named by ``job.platform``. Texts arrive already rendered in the user's
language (as the HTML subset of ``bot/texts``); how they look on screen is the platform's business.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from bot.db import JobRecord

TELEGRAM = "telegram"
DISCORD = "discord"
PLATFORMS = (TELEGRAM, DISCORD)


class Undeliverable(Exception):
    """The platform says a result can never reach its owner (they blocked the bot, the chat is gone, the
    bot was removed from it): ``deliver`` raises it so that the notifier gives the result up, once, instead
    of trying again every few minutes. A passing failure (429, 5xx, a timeout) is not this: it returns
    None."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Frontend(Protocol):
    platform: str

    async def show_status(
        self,
        job: JobRecord,
        text: str,
        *,
        preview: bytes | None = None,
        final: bool = False,
        now: bool = False,
        keep: bool = False,
    ) -> None:
        """Show ``text`` on the job's status (throttled by the platform); an active job's status carries a
        Cancel button, a ``final`` one none. ``preview``: the live picture (or the sketch), which replaces
        the last one; later texts keep it. ``now``: past the throttle (the sketch, shown once). ``keep``:
        a "Keep the sketch" button beside Cancel (``keep:<job id>``; only the owner may press it)."""

    async def remove_status(self, job: JobRecord) -> None:
        """The result is about to arrive (or the job vanished): the status goes away or says so."""

    async def deliver(self, job: JobRecord, path: Path, notes: tuple[str, ...]) -> str | None:
        """Send the painting to its owner; a reference to what was sent once the platform confirmed it
        (stored as the job's ``result_file_id``), ``None`` when it could not be sent now (tried again
        later); raises ``Undeliverable`` when the platform says it never can be."""

    async def tell(self, job: JobRecord, text: str) -> None:
        """A message for the job's owner where the job came from (no status to show it on)."""

    async def deliver_animation(self, job: JobRecord, path: Path) -> None:
        """A figure's GIF of the painting as it formed, after its result; best effort."""

    async def close(self) -> None:
        """At shutdown: stop pending status updates."""

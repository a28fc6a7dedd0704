"""A chat that changed its id, the same on every platform: everything the bot keeps under the old id
moves to the new one.

Telegram gives a group a new id when it becomes a supergroup (the front end learns it from the service
message, or from the refusal of a send to the old id); waiting jobs, results not yet delivered, the group's
default style and settings, the bot being switched off there, and the group as a sender (its anonymous
admins) all follow in one transaction, so no result goes to a chat that is no more and no switch or
default is lost. Moving twice is harmless: the second finds nothing left.
"""

from __future__ import annotations

import logging

from bot.db import ChatMove, Database

log = logging.getLogger(__name__)


class ChatService:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def moved(self, platform: str, old_chat_id: int, new_chat_id: int) -> ChatMove:
        """``old_chat_id`` is now ``new_chat_id`` on ``platform``: move what is kept under it (see
        ``Database.move_chat``). Idempotent; what was moved comes back (nothing: moved already)."""
        move = await self.db.move_chat(platform, old_chat_id, new_chat_id)
        if move.anything:
            log.info(
                "%s chat %d is now chat %d: moved %d jobs (active: %s)%s%s%s",
                platform,
                old_chat_id,
                new_chat_id,
                len(move.jobs),
                ", ".join(map(str, move.active)) or "none",
                ", its defaults" if move.defaults else "",
                ", its switch (off)" if move.switched_off else "",
                ", the chat as a sender" if move.sender else "",
            )
        return move

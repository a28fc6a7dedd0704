"""A group upgraded to a supergroup: Telegram sends a service message in the old group
(``migrate_to_chat_id``) and one in the new supergroup (``migrate_from_chat_id``). Either moves what the
bot keeps under the old id to the new one (``ChatService.moved``, idempotent, so the second finds
nothing left); a send that meets the old id first does the same (``bot.telegram.moves``)."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import ContextTypes, MessageHandler, filters

from bot.frontend import TELEGRAM
from bot.telegram.context import services

log = logging.getLogger(__name__)


async def on_migration(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    message = update.effective_message
    assert message is not None
    old = message.migrate_from_chat_id or message.chat_id
    new = message.migrate_to_chat_id or message.chat_id
    who = message.from_user.id if message.from_user else None
    log.info("group %d became supergroup %d (upgraded by user %s)", old, new, who)
    await services(context).chats.moved(TELEGRAM, old, new)


def handlers() -> list:
    return [MessageHandler(filters.StatusUpdate.MIGRATE, on_migration)]

"""Telegram handlers, one module per feature. Each module's ``handlers()`` lists what it registers;
the order here is the order PTB tries them."""

from __future__ import annotations

import logging

from telegram import Update
from telegram.ext import Application, ApplicationHandlerStop, ContextTypes, TypeHandler

from bot.telegram.handlers import (
    admin,
    chats,
    clips,
    fallback,
    figures,
    inline,
    paint,
    presets,
    queue,
    settings,
    start,
)
from bot.telegram.handlers.errors import error_handler

log = logging.getLogger(__name__)


def register(application: Application) -> None:
    application.add_handler(TypeHandler(Update, only_new_messages), group=-2)  # before everything else
    # a group's upgrade first; clips before photos (Telegram sends a GIF with a document too); /preset and
    # figure captions (/strip, /surprise...) before photos
    for module in (chats, clips, presets, figures, paint, start, settings, queue, admin, inline, fallback):
        application.add_handlers(module.handlers())
    application.add_error_handler(error_handler)


async def only_new_messages(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Edits and channel posts reach no handler.

    An edited caption or command is the same request again (it would start a second job), and a channel
    is no place for the bot to answer: every reply there would be a public post. One gate here instead of
    a filter on each handler, so a new handler cannot forget it.
    """
    if update.edited_message or update.edited_channel_post or update.channel_post:
        chat_id = update.effective_chat.id if update.effective_chat else None
        log.debug("update %d ignored: an edit or a channel post in chat %s", update.update_id, chat_id)
        raise ApplicationHandlerStop

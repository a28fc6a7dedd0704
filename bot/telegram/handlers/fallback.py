"""What nothing else handled: unknown commands, chatter in private chats, buttons that no longer exist."""

from __future__ import annotations

from telegram import Update
from telegram.ext import CallbackQueryHandler, ContextTypes, MessageHandler, filters

from bot.telegram.handlers.common import answer, escape, is_private, reply, say, split_command


async def unknown_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """In groups, only commands addressed to this bot by name get an answer: a bare /foo may be for
    another bot."""
    message = update.effective_message
    assert message is not None
    name, _ = split_command(message.text, context.bot.username)
    addressed = f"@{context.bot.username}".lower() in (message.text or "").lower()
    if name and (is_private(update) or addressed):
        await reply(update, say(update, "unknown_command", command=escape(name)))


async def private_chatter(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Text, stickers, voice, video... in a private chat: say what the bot is for."""
    await reply(update, say(update, "text_in_private"))


async def expired_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None
    await answer(query, say(update, "button_expired"))


def handlers() -> list:
    return [
        MessageHandler(filters.COMMAND, unknown_command),
        MessageHandler(filters.ChatType.PRIVATE & ~filters.COMMAND, private_chatter),
        CallbackQueryHandler(expired_button),
    ]

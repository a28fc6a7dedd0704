"""``/start``, ``/help`` and ``/styles`` (the paintings as one contact sheet, and as a list)."""

from __future__ import annotations

import asyncio
import html
import io

from telegram import Update
from telegram.ext import CommandHandler, ContextTypes

from bot.context import services
from bot.handlers.common import escape, reply, say

SHEET_FILE_ID = "styles_sheet_file_id"  # bot_data key: the uploaded sheet, reused until the paintings change
SHEET_VERSION = "styles_sheet_version"


async def start_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    user = update.effective_user
    name = escape(user.first_name) if user else ""
    await reply(update, say(update, "start", name=name, bot=context.bot.username))


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await reply(update, say(update, "help"))


async def styles_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    s = services(context)
    on_disk = tuple(p.id for p in s.catalog if s.store.local_path(p.id))
    bot_data = context.application.bot_data
    photo: str | bytes | None = (
        bot_data.get(SHEET_FILE_ID) if bot_data.get(SHEET_VERSION) == on_disk else None
    )
    if photo is None:
        photo = await asyncio.to_thread(_sheet_png, s.store)
    message = update.effective_message
    assert message is not None
    sent = await message.reply_photo(photo, caption=say(update, "styles_caption"))
    bot_data[SHEET_FILE_ID], bot_data[SHEET_VERSION] = sent.photo[-1].file_id, on_disk
    lines = [
        f"<code>{p.id}</code>: {html.escape(p.title)}, {html.escape(p.artist)} ({html.escape(p.year)})"
        for p in s.catalog
    ]
    await message.reply_text(say(update, "styles_list", lines="\n".join(lines)))


def _sheet_png(store) -> bytes:
    buffer = io.BytesIO()
    store.make_sheet().save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def handlers() -> list:
    return [
        CommandHandler("start", start_command),
        CommandHandler("help", help_command),
        CommandHandler("styles", styles_command),
    ]

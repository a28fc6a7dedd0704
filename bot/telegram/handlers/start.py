"""``/start`` (with a link's payload: ``t.me/<bot>?start=<style>`` picks that style for the next photo),
``/help`` and ``/styles`` (the paintings on disk as one contact sheet, and all as a list)."""

from __future__ import annotations

import html
import logging

from telegram import Update
from telegram.ext import CommandHandler, ContextTypes

from bot.frontend import TELEGRAM
from bot.services.sharing import parse_payload
from bot.telegram.context import services
from bot.telegram.handlers.common import escape, is_private, reply, say, sender_id
from bot.telegram.handlers.inline import INLINE_START
from engine.catalog import Preset
from engine.style_store import PaintingState

log = logging.getLogger(__name__)


async def start_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The greeting; in private, a link's payload (``/start starry_night``) chooses that style for the
    next photo instead. A payload that names no painting (an old link, a newer catalog's, a typo) gets a
    friendly line before the greeting; the inline list's "Paint one" button's gets the greeting alone."""
    user = update.effective_user
    name = escape(user.first_name) if user else ""
    greeting = say(update, "start", name=name, bot=context.bot.username)
    payload = context.args[0] if context.args and is_private(update) else None
    if payload is None or payload == INLINE_START:
        await reply(update, greeting)
        return
    s = services(context)
    choice = parse_payload(payload, s.catalog)
    if choice is None:
        log.info("user %d: a link named no painting: %.64r", sender_id(update), payload)
        await reply(update, f"{say(update, 'start_unknown_link')}\n\n{greeting}")
        return
    s.sharing.choose(sender_id(update), choice, platform=TELEGRAM)
    await reply(update, say(update, "start_chosen", style=escape(choice.label)))


async def help_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await reply(update, say(update, "help"))


async def styles_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Every painting on disk as one sheet (uploaded again only when that set changes), then the list."""
    paintings = services(context).paintings
    message = update.effective_message
    assert message is not None
    states = paintings.states()
    coming = sum(state is PaintingState.COMING for state in states.values())
    notes = [say(update, "styles_coming", count=coming)] if coming else []
    sheet = await paintings.overview(platform=TELEGRAM)
    if sheet is None:
        await message.reply_text("\n".join([say(update, "styles_none_yet"), *notes]))
    else:
        caption = "\n\n".join([say(update, "styles_caption"), *notes])
        sent = await message.reply_photo(sheet.picture, caption=caption)
        paintings.uploaded(sheet, sent.photo[-1].file_id, sent.photo[-1].file_unique_id)
    lines = [_line(update, preset, states[preset.id]) for preset in paintings.store.catalog]
    await message.reply_text(say(update, "styles_list", lines="\n".join(lines)))


def _line(update: Update, preset: Preset, state: PaintingState) -> str:
    line = f"<code>{preset.id}</code>: {html.escape(preset.title)}, {html.escape(preset.artist)} "
    line += f"({html.escape(preset.year)})"
    if state is not PaintingState.READY:
        line += f" <i>({say(update, f'styles_state_{state.value}')})</i>"
    return line


def handlers() -> list:
    return [
        CommandHandler("start", start_command),
        CommandHandler("help", help_command),
        CommandHandler("styles", styles_command),
    ]

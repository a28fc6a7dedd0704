"""The paper's figures and "paint it again": ``/strip``, ``/layers``, ``/forming``, ``/surprise``, and the
buttons under a result (Another style, Strength strip, Layer strip, How it formed).

A command works on a photo (as its caption, or in reply to it) or, alone, on the sender's latest painted
photo in this chat, which the bot keeps for RESULT_RETENTION_DAYS. Buttons work on the job they name and
only for its owner. The rules live in ``bot.services.figures``; this module parses and answers.
"""

from __future__ import annotations

import logging

from telegram import Message, Update
from telegram.ext import CallbackQueryHandler, CommandHandler, ContextTypes, MessageHandler, filters

from bot import replies
from bot.db import JobRecord
from bot.frontend import TELEGRAM
from bot.services import styles
from bot.services.figures import RepaintRefusedError, Surprise
from bot.services.jobs import RepeatedRequest
from bot.services.refusals import REFUSALS, Refused
from bot.services.styles import StyleChoice
from bot.telegram.context import services
from bot.telegram.handlers.common import (
    ImageRef,
    answer,
    image_in,
    language,
    refusal,
    reply,
    request_key,
    say,
    sender_id,
    split_command,
)
from bot.telegram.handlers.paint import gallery_keyboard, show_queued, show_repeated, start_job
from bot.texts import text

log = logging.getLogger(__name__)

FIGURE_OF = {"strip": "strength", "layers": "layers", "forming": "forming"}  # command → engine figure
COMMANDS = (*FIGURE_OF, "surprise")
CAPTION = filters.CaptionRegex(rf"^\s*/({'|'.join(COMMANDS)})(@\w+)?(\s|$)")


# -- commands ----------------------------------------------------------------------------------------


async def figure_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """``/strip``, ``/layers``, ``/forming``, ``/surprise`` as a text message, perhaps naming paintings."""
    message = update.effective_message
    assert message is not None
    command, words = split_command(message.text, context.bot.username)
    if not command:
        return
    target = message.reply_to_message
    photo = image_in(target)
    if photo is not None and not (target and target.from_user and target.from_user.id == context.bot.id):
        await _on_photo(update, context, photo, command, words)
    else:  # alone, or in reply to one of the bot's pictures: the sender's latest photo here
        await _on_latest(update, context, command, words)


async def on_captioned_photo(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo captioned with one of the commands."""
    message = update.effective_message
    assert message is not None
    command, words = split_command(message.caption, context.bot.username)
    photo = image_in(message)
    if command and photo is not None:
        await _on_photo(update, context, photo, command, words)


async def _on_photo(
    update: Update, context: ContextTypes.DEFAULT_TYPE, photo: ImageRef, command: str, words: str
) -> None:
    s = services(context)
    if command == "surprise":
        pick = await _surprise(update, context, sender_id(update))
        if pick is not None:
            await start_job(update, context, photo, styles.paintings([pick.painting.id], s.catalog))
        return
    choice = None  # no words: the group's default style (PaintService), else the user hears why
    if words:
        presets = await s.presets.list(sender_id(update), platform=TELEGRAM)
        try:
            choice = styles.parse(words, s.catalog, presets)
        except REFUSALS as err:
            await reply(update, refusal(update, err))
            return
    await start_job(update, context, photo, choice, figure=FIGURE_OF[command])


async def _surprise(update: Update, context: ContextTypes.DEFAULT_TYPE, user_id: int) -> Surprise | None:
    """ "Surprise me": a painting on disk the user has not tried, announced; None after saying why not."""
    try:
        pick = await services(context).figures.surprise(user_id, platform=TELEGRAM)
    except Refused as err:
        await reply(update, refusal(update, err))
        return None
    await reply(update, replies.surprise(language(update), pick))
    return pick


async def _on_latest(update: Update, context: ContextTypes.DEFAULT_TYPE, command: str, words: str) -> None:
    s = services(context)
    chat = update.effective_chat
    assert chat is not None
    source = await s.figures.latest_source(sender_id(update), chat.id, platform=TELEGRAM)
    if source is None:
        await reply(update, say(update, "figure_needs_photo", command=command))
        return
    style: StyleChoice | None = None
    if command == "surprise":
        pick = await _surprise(update, context, sender_id(update))
        if pick is None:
            return
        style = styles.paintings([pick.painting.id], s.catalog)
    elif words:
        try:
            style = styles.parse(words, s.catalog, await s.presets.list(sender_id(update), platform=TELEGRAM))
        except REFUSALS as err:
            await reply(update, refusal(update, err))
            return
        if style.image_file_ids:  # a preset with an own style image: that needs a photo to go with it
            await reply(update, say(update, "figure_own_style", command=command))
            return
    await _repaint(update, context, source, FIGURE_OF.get(command), style, on_error=_Answer(update))


# -- buttons under a result ----------------------------------------------------------------------------


async def on_figure_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """``fig:KIND:JOB``: the job's photo and style as a strip or as it forms."""
    query = update.callback_query
    assert query is not None and query.data is not None
    _, figure, job_id = query.data.split(":")
    source = await _source(update, context, int(job_id))
    if source is not None:
        await answer(query)
        await _repaint(update, context, source, figure, None, on_error=_Answer(update))


async def on_again_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """``again:JOB``: the gallery, whose buttons paint the job's kept photo."""
    query = update.callback_query
    assert query is not None and query.data is not None
    source = await _source(update, context, int(query.data.split(":")[1]))
    if source is None or not isinstance(query.message, Message):
        return
    await answer(query)
    s = services(context)
    lang = language(update)
    keyboard, page, pages = gallery_keyboard(s, lang, 0, source.id)
    sheet = await s.paintings.page(page, platform=TELEGRAM)
    sent = await query.message.reply_photo(
        sheet.picture, caption=text(lang, "again_prompt", page=page + 1, pages=pages), reply_markup=keyboard
    )
    s.paintings.uploaded(sheet, sent.photo[-1].file_id, sent.photo[-1].file_unique_id)


async def on_repaint_pick(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """``re:JOB:STYLE``: a painting chosen in the gallery of "Another style"."""
    query = update.callback_query
    assert query is not None and query.data is not None
    _, job_id, style_id = query.data.split(":")
    s = services(context)
    if style_id not in s.catalog:
        await answer(query, say(update, "button_expired"))
        return
    source = await _source(update, context, int(job_id))
    if source is None:
        return
    await answer(query)
    status = query.message if isinstance(query.message, Message) else None
    choice = styles.paintings([style_id], s.catalog)
    await _repaint(update, context, source, None, choice, status=status, on_error=_Answer(update, status))


async def on_repaint_surprise(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """``rs:JOB``: "Surprise me" in the gallery of "Another style"."""
    query = update.callback_query
    assert query is not None and query.data is not None
    source = await _source(update, context, int(query.data.split(":")[1]))
    if source is None:
        return
    await answer(query)
    s = services(context)
    pick = await _surprise(update, context, source.user_id)
    if pick is None:
        return
    status = query.message if isinstance(query.message, Message) else None
    choice = styles.paintings([pick.painting.id], s.catalog)
    await _repaint(update, context, source, None, choice, status=status, on_error=_Answer(update, status))


async def on_gallery_surprise(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """``surp``: "Surprise me" in a photo's gallery."""
    query = update.callback_query
    assert query is not None
    message = query.message if isinstance(query.message, Message) else None
    photo = image_in(message.reply_to_message) if message is not None else None
    if message is None or photo is None:
        await answer(query, say(update, "error_photo_gone"), show_alert=True)
        return
    if photo.sender_id is not None and photo.sender_id != query.from_user.id:
        await answer(query, say(update, "not_your_photo"))
        return
    await answer(query)
    s = services(context)
    pick = await _surprise(update, context, query.from_user.id)
    if pick is None:
        return
    await start_job(update, context, photo, styles.paintings([pick.painting.id], s.catalog), status=message)


async def _source(update: Update, context: ContextTypes.DEFAULT_TYPE, job_id: int) -> JobRecord | None:
    """The job a button names, if the presser may paint its photo again; else the query is answered."""
    query = update.callback_query
    assert query is not None
    try:
        return await services(context).figures.source(job_id, query.from_user.id, platform=TELEGRAM)
    except RepaintRefusedError as err:
        await answer(query, refusal(update, err), show_alert=err.kind == "expired")
        return None


# -- queueing --------------------------------------------------------------------------------------


class _Answer:
    """Where a refusal goes: instead of the gallery it came from, else as a reply."""

    def __init__(self, update: Update, status: Message | None = None) -> None:
        self.update, self.status = update, status

    async def __call__(self, words: str) -> None:
        if self.status is not None and self.status.photo:
            await self.status.edit_caption(words, reply_markup=None)
        else:
            await reply(self.update, words)


async def _repaint(
    update: Update,
    context: ContextTypes.DEFAULT_TYPE,
    source: JobRecord,
    figure: str | None,
    style: StyleChoice | None,
    *,
    on_error: _Answer,
    status: Message | None = None,
) -> None:
    try:
        job, placement = await services(context).figures.repaint(
            source, figure=figure, style=style, request_key=request_key(update)
        )
    except RepeatedRequest as err:  # Telegram sent the press or command again after a crash
        await show_repeated(context, language(update), err.job, status)
        return
    except REFUSALS as err:
        await on_error(refusal(update, err))
        return
    await show_queued(context, language(update), job, placement, status)


def handlers() -> list:
    return [
        CommandHandler(list(COMMANDS), figure_command),
        MessageHandler((filters.PHOTO | filters.Document.IMAGE) & CAPTION, on_captioned_photo),
        CallbackQueryHandler(on_figure_button, pattern=r"^fig:(strength|layers|forming):\d+$"),
        CallbackQueryHandler(on_again_button, pattern=r"^again:\d+$"),
        CallbackQueryHandler(on_repaint_pick, pattern=r"^re:\d+:[a-z0-9_]+$"),
        CallbackQueryHandler(on_repaint_surprise, pattern=r"^rs:\d+$"),
        CallbackQueryHandler(on_gallery_surprise, pattern=r"^surp$"),
    ]

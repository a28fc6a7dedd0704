"""Inline mode: typing ``@<bot> words`` in any chat lists the person's recent paintings whose style matches
the words (all of them for no words), to send there by the file id Telegram gave each result.

The list is the core's (``SharingService.recent``: confirmed, still kept, newest first, in pages). Each
result carries its style's label, and "Share this style" when the style is catalog paintings only. Someone
with nothing to list gets a "Paint one" button that opens the private chat (``/start inline``). Inline mode
must be switched on for the bot with @BotFather's /setinline (README, "Sharing").
"""

from __future__ import annotations

import base64
import binascii
import logging

from telegram import (
    InlineKeyboardMarkup,
    InlineQueryResultCachedDocument,
    InlineQueryResultCachedMpeg4Gif,
    InlineQueryResultCachedPhoto,
    InlineQueryResultsButton,
    Update,
)
from telegram.constants import ParseMode
from telegram.error import BadRequest, TelegramError
from telegram.ext import ContextTypes, InlineQueryHandler

from bot.db import JobRecord
from bot.frontend import TELEGRAM
from bot.telegram import buttons
from bot.telegram.context import services
from bot.telegram.failures import is_passing
from bot.telegram.handlers.common import escape, language
from bot.texts import text

log = logging.getLogger(__name__)

INLINE_START = "inline"  # the start parameter of "Paint one": no catalog id, so /start greets
CACHE_SECONDS = 10  # Telegram keeps an answer this long: a painting just made shows up soon
FILE_KINDS = {2: "photo", 5: "document", 10: "animation"}  # the first byte of a Bot API file id

Result = InlineQueryResultCachedPhoto | InlineQueryResultCachedDocument | InlineQueryResultCachedMpeg4Gif


def file_kind(file_id: str) -> str | None:
    """ "photo", "document", "animation" (a clip) or None: what a file id was sent as.

    A photo's id cannot be sent as a document nor the other way round (Telegram: "type of file
    mismatch"), and a result may have gone any of these ways (the person's setting, a file when Telegram
    refused the photo, a clip), so the kind is read where Telegram keeps it: the first byte of the id
    (``AgAC...`` a photo, ``BQAC...`` a document, ``CgAC...`` an animation). An id of another shape is
    left out of the list rather than risk Telegram refusing the whole answer."""
    try:
        first = base64.urlsafe_b64decode(file_id[:4])[0]
    except (binascii.Error, ValueError, IndexError):
        return None
    return FILE_KINDS.get(first)


def result(lang: str, job: JobRecord, bot_username: str) -> Result | None:
    """One painting as an inline result, or None when its file id's kind cannot be told."""
    file_id = job.result_file_id or ""
    caption = text(lang, "inline_caption", style=escape(job.style_label), bot=bot_username)
    link = buttons.share(lang, job, bot_username)
    markup = InlineKeyboardMarkup([[link]]) if link is not None else None
    match file_kind(file_id):
        case "photo":
            return InlineQueryResultCachedPhoto(
                id=str(job.id),
                photo_file_id=file_id,
                title=job.style_label,
                caption=caption,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
            )
        case "document":
            return InlineQueryResultCachedDocument(
                id=str(job.id),
                title=job.style_label,
                document_file_id=file_id,
                caption=caption,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
            )
        case "animation":  # a clip sent with sendAnimation (Telegram keeps GIFs as MP4 animations)
            return InlineQueryResultCachedMpeg4Gif(
                id=str(job.id),
                mpeg4_file_id=file_id,
                title=job.style_label,
                caption=caption,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
            )
    log.warning("job %d: its result's file id is of no kind inline mode can send; left out", job.id)
    return None


async def on_inline_query(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A page of the person's paintings matching what they typed, for them alone (``is_personal``).

    Not answered in time or refused, the query is simply gone (one line in the log): the person's next
    keystroke asks again, and an old query cannot be answered late."""
    query = update.inline_query
    assert query is not None
    lang = language(update)
    page = await services(context).sharing.recent(
        query.from_user.id, query.query, query.offset, platform=TELEGRAM
    )
    username = context.bot.username
    results = [found for job in page.jobs if (found := result(lang, job, username)) is not None]
    button = None
    if not results and not query.offset:
        button = InlineQueryResultsButton(text(lang, "inline_paint_one"), start_parameter=INLINE_START)
    try:
        await query.answer(
            results,
            cache_time=CACHE_SECONDS,
            is_personal=True,
            next_offset=page.next_offset or None,  # the last page; PTB with Defaults sends "" as "[]"
            button=button,
        )
    except TelegramError as err:
        level = logging.INFO if isinstance(err, BadRequest) and "too old" in str(err) else logging.WARNING
        kind = "passing" if is_passing(err) else "refused"
        log.log(level, "user %d: inline answer not given (%s): %s", query.from_user.id, kind, err)


def handlers() -> list:
    return [InlineQueryHandler(on_inline_query)]

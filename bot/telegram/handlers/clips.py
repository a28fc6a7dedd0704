"""GIFs, videos and round video messages in, a painted animation out (issue 21).

Telegram sends a GIF as an MP4 "animation" (with a document beside it); a video, a video note, or a GIF,
MP4 or WebM sent as a file come in too. The caption names the painting as a photo's does (``udnie``,
``/style udnie``), the word ``painted`` asks for the slower painted quality (instant otherwise) and
``gif`` for a GIF back (an MP4 otherwise). With
no painting named: in private the style a link picked, else a word on how to name one; in a group, a clip
without a caption is left alone (the group's GIFs are not all for the bot), and ``/style`` alone takes the
group's default. Everything else is the core's (``ClipService.start``): the header read, the limits, the
job. A video note has no caption: ``/style udnie`` in reply to it (or to any clip) names its painting.
The result comes back through the front end's ``deliver`` as an animation.
"""

from __future__ import annotations

import functools
import logging
import operator

from telegram import Message, Update
from telegram.constants import ChatType
from telegram.ext import CommandHandler, ContextTypes, MessageHandler, filters

from bot.frontend import TELEGRAM
from bot.services import styles
from bot.services.clips import CLIP_MIME_TYPES, MP4, ClipFormat, clip_words
from bot.services.jobs import RepeatedRequest
from bot.services.paint import PaintRequest
from bot.services.refusals import REFUSALS
from bot.services.styles import StyleChoice
from bot.telegram.context import services
from bot.telegram.handlers.common import (
    ImageRef,
    download,
    is_private,
    language,
    refusal,
    reply,
    request_key,
    say,
    sender_id,
    split_command,
)
from bot.telegram.handlers.paint import show_queued, show_repeated, unnamed_style

log = logging.getLogger(__name__)

TELEGRAM_UPLOAD = 50 * 2**20  # what sendAnimation takes from a bot
CLIPS = functools.reduce(
    operator.or_,
    [filters.Document.MimeType(mime) for mime in CLIP_MIME_TYPES],
    filters.ANIMATION | filters.VIDEO | filters.VIDEO_NOTE,
)


def clip_in(message: Message) -> ImageRef | None:
    """The message's clip: an animation, a video, a video note, or a GIF/MP4/WebM file."""
    sender = message.from_user.id if message.from_user else None
    document = message.document
    if document is not None and document.mime_type not in CLIP_MIME_TYPES:
        document = None
    media = message.animation or message.video or message.video_note or document
    if media is None:
        return None
    return ImageRef(media.file_id, media.file_size, message.message_id, sender)


class _RepliesToClip(filters.MessageFilter):
    """A message answering a clip (``/style udnie`` under a video note, which has no caption)."""

    def filter(self, message: Message) -> bool:
        return message.reply_to_message is not None and clip_in(message.reply_to_message) is not None


async def on_clip(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A clip arrived: its painting named in the caption (or not), then the core decides."""
    message = update.effective_message
    assert message is not None
    ref = clip_in(message)
    if ref is None:
        return
    command, args = split_command(message.caption, context.bot.username)
    if command == "":
        return  # a command for another bot
    if command not in (None, "style") or (command is None and not args and not is_private(update)):
        if is_private(update):
            await reply(update, say(update, "clip_needs_style"))
        return  # in a group: a clip without a word for the bot
    await _start(update, context, ref, args, plain=command is None)


async def on_style_reply(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """``/style udnie [painted]`` in reply to a clip: that clip, in that style."""
    message = update.effective_message
    assert message is not None and message.reply_to_message is not None
    ref = clip_in(message.reply_to_message)
    assert ref is not None  # the handler's filter
    await _start(update, context, ref, " ".join(context.args or []), plain=False)


async def _start(
    update: Update, context: ContextTypes.DEFAULT_TYPE, ref: ImageRef, args: str, *, plain: bool
) -> None:
    """The painting named (or not), then ``ClipService.start``. ``plain``: a caption without a command,
    which in a group may not be meant for the bot (an unknown name is ignored there)."""
    message, chat, user = update.effective_message, update.effective_chat, update.effective_user
    assert message is not None and chat is not None and user is not None
    private = is_private(update)
    quality, fmt, words = clip_words(args)
    s = services(context)
    choice: StyleChoice | None = None  # in a group: its default style (``PaintService`` decides)
    if words:
        try:
            presets = await s.presets.list(sender_id(update), platform=TELEGRAM)
            choice = styles.parse(words, s.catalog, presets)
        except REFUSALS as err:
            if not plain or private:
                await reply(update, refusal(update, err))
            return
    else:  # a link's style in private, the group's default (with none: the core's refusal)
        choice = await unnamed_style(update, context)
        if choice is None and private:
            await reply(update, say(update, "clip_needs_style"))
            return
    group = None if chat.type == ChatType.PRIVATE else chat.id
    try:
        # A repeat and moderation before the download: a clip Telegram sent again after a crash, a blocked
        # person's clip (a switched-off group's) cost nothing.
        await s.jobs.check_new(TELEGRAM, request_key(update))
        await s.jobs.check_admitted(TELEGRAM, sender_id(update), group=group)
        data = await download(message, ref)
        job, placement = await s.clips.start(
            PaintRequest(
                platform=TELEGRAM,
                user_id=sender_id(update),
                chat_id=chat.id,
                chat_type=chat.type,
                group_id=group,
                language=user.language_code,
                source_message_id=ref.message_id,
                content=data,
                style=choice,
                fetch_file=lambda file_id: download(message, ImageRef(file_id, None, ref.message_id, None)),
                request_key=request_key(update),
            ),
            ClipFormat(fmt or MP4, TELEGRAM_UPLOAD),  # an MP4 unless the caption said "gif"
            quality,
        )
    except RepeatedRequest as err:  # Telegram sent the request again after a crash: its job exists
        await show_repeated(context, language(update), err.job)
        return
    except REFUSALS as err:
        log.info("user %d: clip refused: %s", sender_id(update), err)
        await reply(update, refusal(update, err))
        return
    await show_queued(context, language(update), job, placement)


def handlers() -> list:
    return [
        MessageHandler(CLIPS, on_clip),
        CommandHandler("style", on_style_reply, filters=_RepliesToClip()),  # before the photos' /style
    ]

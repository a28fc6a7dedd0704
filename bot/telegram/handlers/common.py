"""Small pieces every handler uses: the user's language, images in messages, downloads, replies."""

from __future__ import annotations

import html
import logging
import re
from dataclasses import dataclass

from telegram import CallbackQuery, InlineKeyboardMarkup, Message, ReplyParameters, Update
from telegram.constants import ChatType
from telegram.error import BadRequest, NetworkError

from bot import replies
from bot.retrying import retried
from bot.services.refusals import Refused
from bot.services.uploads import DOWNLOAD_FAILED, check_size, looks_like_image
from bot.telegram.failures import is_expired_query
from bot.texts import language_for, text
from engine.errors import StylebotError

log = logging.getLogger(__name__)

DOWNLOAD_PAUSES = (0.5, 1.0)  # seconds before a download's second and third try (bot.retrying)
_COMMAND = re.compile(
    r"^/(?P<name>[A-Za-z0-9_]+)(?:@(?P<bot>[A-Za-z0-9_]+))?(?:\s+(?P<args>.*))?$", re.DOTALL
)


@dataclass(frozen=True)
class ImageRef:
    """An image someone sent: a photo (Telegram's compressed copy) or an image file (full resolution)."""

    file_id: str
    size: int | None
    message_id: int
    sender_id: int | None


def sender_id(update: Update) -> int:
    """Whose request a message is: jobs, presets, limits and settings belong to this id.

    Usually the user. A message sent on behalf of a chat (an anonymous group admin, who writes as
    Telegram's one shared GroupAnonymousBot account, or someone posting as a channel) belongs to that
    chat: its id stands for every admin of that group (or the channel), and never reaches into another
    group. Button presses always come from a real user.
    """
    message = update.effective_message
    if update.callback_query is None and message is not None and message.sender_chat is not None:
        return message.sender_chat.id
    user = update.effective_user
    assert user is not None
    return user.id


def request_key(update: Update) -> str:
    """What identifies the request an update makes (``NewJob.request_key``), the same however often
    Telegram sends the update: the button press (its query id), or the message (its chat and id). Not the
    update id, which Telegram may hand out again after a quiet week."""
    if update.callback_query is not None:
        return f"callback:{update.callback_query.id}"
    message = update.effective_message
    assert message is not None
    return f"message:{message.chat_id}:{message.message_id}"


def sender_is_the_group(update: Update) -> bool:
    """An anonymous admin of this very group: only admins can write as the group."""
    message, chat = update.effective_message, update.effective_chat
    return bool(message and chat and message.sender_chat and message.sender_chat.id == chat.id)


def language(update: Update) -> str:
    user = update.effective_user
    return language_for(user.language_code if user else None)


def is_private(update: Update) -> bool:
    return update.effective_chat is not None and update.effective_chat.type == ChatType.PRIVATE


def image_in(message: Message | None) -> ImageRef | None:
    """The message's image, if it has one (the largest photo size, or an image document)."""
    if message is None:
        return None
    sender = message.from_user.id if message.from_user else None
    if message.photo:
        largest = message.photo[-1]
        return ImageRef(largest.file_id, largest.file_size, message.message_id, sender)
    document = message.document
    if document is not None and is_image_document(message):
        return ImageRef(document.file_id, document.file_size, message.message_id, sender)
    return None


def is_image_document(message: Message) -> bool:
    document = message.document
    if document is None:
        return False
    return looks_like_image(document.mime_type, document.file_name)


async def download(message: Message, ref: ImageRef) -> bytes:
    """The image's bytes; refused (``bot.services.uploads``) past what the bot downloads.

    A transient failure (a timeout, a dropped connection, a 5xx) is tried again twice, then refused as
    a failed download; a refusal (BadRequest: an unknown or too big file) is not retried.
    """
    check_size(ref.size)

    async def fetch() -> bytes:
        file = await message.get_bot().get_file(ref.file_id)
        return bytes(await file.download_as_bytearray())

    try:
        return await retried(
            fetch, passing=_download_passing, what=f"download of {ref.file_id}", pauses=DOWNLOAD_PAUSES
        )
    except BadRequest:
        raise
    except NetworkError as err:  # TimedOut included
        log.warning("download of %s failed after %d tries: %s", ref.file_id, len(DOWNLOAD_PAUSES) + 1, err)
        raise Refused(DOWNLOAD_FAILED) from err


def _download_passing(err: BaseException) -> bool:
    """A network error (a timeout, a dropped connection, a 5xx) but not Telegram's refusal (BadRequest)."""
    return isinstance(err, NetworkError) and not isinstance(err, BadRequest)


def split_command(caption: str | None, bot_username: str) -> tuple[str | None, str]:
    """``/style@bot starry_night`` → ("style", "starry_night"); plain text → (None, text).

    A command addressed to another bot comes back as ("", ...) so callers ignore it.
    """
    caption = (caption or "").strip()
    match = _COMMAND.match(caption)
    if not match:
        return None, caption
    if match["bot"] and match["bot"].lower() != bot_username.lower():
        return "", ""
    return match["name"].lower(), (match["args"] or "").strip()


async def reply(
    update: Update, message: str, *, reply_markup: InlineKeyboardMarkup | None = None
) -> Message | None:
    """Answer the update's message, quoting it in groups so the reply is clearly for that person."""
    target = update.effective_message
    if target is None:
        return None
    return await target.reply_text(
        message,
        reply_parameters=ReplyParameters(target.message_id, allow_sending_without_reply=True),
        reply_markup=reply_markup,
    )


async def answer(query: CallbackQuery, message: str | None = None, *, show_alert: bool = False) -> None:
    """Answer a button press (the notice on the presser's screen). A press that waited too long (the bot
    was down, restarting or held up by flood control) can no longer be answered: Telegram says "query is
    too old". That is said at INFO and the handler goes on, so the press still does what it asks."""
    try:
        await query.answer(message, show_alert=show_alert)
    except BadRequest as err:
        if not is_expired_query(err):
            raise
        log.info(
            "button press by user %d answered too late (%s); acting on it all the same",
            query.from_user.id,
            err,
        )


def say(update: Update, key: str, **values: object) -> str:
    return text(language(update), key, **values)


def refusal(update: Update, err: Refused | StylebotError) -> str:
    """What the core refused (``bot.services.refusals.REFUSALS``), in the user's language."""
    return replies.refusal(language(update), err)


def escape(value: str) -> str:
    return html.escape(value, quote=False)

"""Photos in, jobs out: every way a user can ask for a painting.

- a photo (or image file) with a caption: ``/style starry_night``, ``starry_night`` (``/preset use NAME``
  captions go to ``handlers.presets``);
- a reply to a photo: ``/style starry_night``, or another picture captioned ``/style`` (its style);
- two photos as one album: the first in the style of the second;
- a photo without a caption in a private chat: the gallery (a page of paintings as one picture with numbered
  tiles, and a button per tile), which can also ask for an own style image.
"""

from __future__ import annotations

import logging
import warnings

from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaPhoto,
    Message,
    ReplyParameters,
    Update,
)
from telegram.constants import ChatType
from telegram.ext import (
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    ConversationHandler,
    MessageHandler,
    filters,
)
from telegram.warnings import PTBUserWarning

from bot import replies
from bot.context import Services
from bot.db import JobRecord
from bot.frontend import TELEGRAM
from bot.services import styles
from bot.services.jobs import Placement, RepeatedRequest
from bot.services.paint import PaintRequest
from bot.services.refusals import REFUSALS
from bot.services.styles import StyleChoice
from bot.telegram import buttons
from bot.telegram.context import albums, frontend, services
from bot.telegram.handlers.common import (
    ImageRef,
    answer,
    download,
    escape,
    image_in,
    is_image_document,
    is_private,
    language,
    refusal,
    reply,
    request_key,
    say,
    sender_id,
    split_command,
)
from bot.texts import text

log = logging.getLogger(__name__)

GALLERY_COLUMNS = 2  # buttons per row; the tiles per page are services.paintings.PAGE_SIZE
WAITING_FOR_STYLE = 1
OWN_STYLE_TIMEOUT = 600  # seconds the bot waits for the style image after "My own style image"


# -- starting a job -------------------------------------------------------------------------------


async def start_job(
    update: Update,
    context: ContextTypes.DEFAULT_TYPE,
    content: ImageRef,
    choice: StyleChoice | None,
    *,
    status: Message | None = None,
    figure: str | None = None,
) -> None:
    """Download, then ``PaintService.start`` (every rule); then show the job's status (reusing ``status``
    if given). ``choice`` None: the group's default style. ``figure``: one of ``engine.figures``' figures
    instead of one painting.

    Every refusal becomes a friendly reply; nothing here raises to the user.
    """
    s = services(context)
    message, chat, user = update.effective_message, update.effective_chat, update.effective_user
    assert message is not None and chat is not None and user is not None
    try:
        content_bytes = await download(message, content)

        async def fetch_file(file_id: str) -> bytes:
            return await _download_file(message, file_id)

        job, placement = await s.paint.start(
            PaintRequest(
                platform=TELEGRAM,
                user_id=sender_id(update),
                chat_id=chat.id,
                chat_type=chat.type,
                group_id=None if chat.type == ChatType.PRIVATE else chat.id,
                language=user.language_code,
                source_message_id=content.message_id,
                content=content_bytes,
                style=choice,
                figure=figure,
                fetch_file=fetch_file,
                request_key=request_key(update),
            )
        )
    except RepeatedRequest as err:  # Telegram sent the request again after a crash: its job exists
        await show_repeated(context, language(update), err.job, status)
        return
    except REFUSALS as err:
        log.info("user %d: refused: %s", sender_id(update), err)
        await _refuse(update, status, refusal(update, err))
        return
    await show_queued(context, language(update), job, placement, status)


async def show_queued(
    context: ContextTypes.DEFAULT_TYPE,
    lang: str,
    job: JobRecord,
    placement: Placement | None,
    status: Message | None = None,
) -> None:
    """A new job's status with its Cancel button (in ``status`` if given)."""
    board = frontend(context).board
    await board.open(job, replies.queued(lang, placement), buttons.cancel(lang, job.id), reuse=status)
    current = await services(context).jobs.job(job.id)
    if current is not None and not current.is_active:
        await board.ended_early(current)


async def show_repeated(
    context: ContextTypes.DEFAULT_TYPE, lang: str, job: JobRecord, status: Message | None = None
) -> None:
    """A request Telegram sent again (the bot died before confirming it) made ``job`` the first time. If
    that handling died before the job's status was up, it is put up now (in ``status`` if given), so the
    user sees the job once; otherwise nothing new is said."""
    log.info("job %d (user %d): its request came again; no second job", job.id, job.user_id)
    if job.is_active and job.status_message_id is None:
        placement = (await services(context).jobs.placements()).get(job.id)
        await show_queued(context, lang, job, placement, status)


async def _download_file(message: Message, file_id: str) -> bytes:
    return await download(message, ImageRef(file_id, None, message.message_id, None))


async def _refuse(update: Update, status: Message | None, message: str) -> None:
    if status is not None:
        await _say_instead(status, message)
    else:
        await reply(update, message)


def _reply_to(message_id: int) -> ReplyParameters:
    return ReplyParameters(message_id, allow_sending_without_reply=True)


# -- photos and captions -------------------------------------------------------------------------


async def on_image(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo or a file arrived, with or without a caption."""
    message = update.effective_message
    assert message is not None
    if message.media_group_id:
        # held until the album's job exists, so Telegram is not told the photo arrived before that
        await albums(context).add((message.chat_id, message.media_group_id), (update, context))
        return
    command, args = split_command(message.caption, context.bot.username)
    if command == "":
        return  # a command for another bot
    image = image_in(message)
    if image is None:
        if (
            message.document is not None
            and not is_image_document(message)
            and (is_private(update) or command)
        ):
            await reply(update, say(update, "error_not_an_image_file"))
        return
    if command == "style" and not args:
        target = image_in(message.reply_to_message)
        if target is not None:  # a picture captioned /style in reply to a photo: its style, that content
            await start_job(
                update, context, target, styles.own_image(image.file_id, say(update, "preset_own_image"))
            )
        else:
            await _no_style_named(update, context, image)
    elif command == "style" or (command is None and args):
        await _paint_with_text(update, context, image, args, quiet=command is None and not is_private(update))
    elif command is None:
        await _no_style_named(update, context, image)
    elif is_private(update):
        await reply(update, say(update, "unknown_command", command=escape(command)))


async def style_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """``/style ID`` as a text message: it must reply to a photo."""
    message = update.effective_message
    assert message is not None
    target = image_in(message.reply_to_message)
    if target is None:
        await reply(update, say(update, "style_needs_photo"))
        return
    args = " ".join(context.args or [])
    if args:
        await _paint_with_text(update, context, target, args)
    else:
        await _no_style_named(update, context, target, reply_to=message.reply_to_message)


async def _paint_with_text(
    update: Update, context: ContextTypes.DEFAULT_TYPE, image: ImageRef, words: str, *, quiet: bool = False
) -> None:
    """``words`` name paintings or one of the user's presets. ``quiet``: a group caption that may not be
    meant for the bot at all, so an unknown name is ignored rather than answered."""
    s = services(context)
    try:
        choice = styles.parse(words, s.catalog, await s.presets.list(sender_id(update), platform=TELEGRAM))
    except REFUSALS as err:
        if not quiet:
            await reply(update, refusal(update, err))
        return
    await start_job(update, context, image, choice)


async def _no_style_named(
    update: Update, context: ContextTypes.DEFAULT_TYPE, image: ImageRef, reply_to: Message | None = None
) -> None:
    """No painting named: the style ``unnamed_style`` gives; else the gallery."""
    choice = await unnamed_style(update, context)
    if choice is not None:
        await start_job(update, context, image, choice)
        return
    await send_gallery(update, context, image.message_id)


async def unnamed_style(update: Update, context: ContextTypes.DEFAULT_TYPE) -> StyleChoice | None:
    """The style of a photo or clip whose message names none: in private one a link picked
    (``/start <style>``), taken by this message; in a group its default style; None when neither."""
    s = services(context)
    chat = update.effective_chat
    assert chat is not None
    if chat.type == ChatType.PRIVATE:
        return s.sharing.take_chosen(sender_id(update), platform=TELEGRAM)
    choice, _ = await s.presets.chat_default(chat.id, say(update, "preset_own_image"), platform=TELEGRAM)
    return choice


# -- albums --------------------------------------------------------------------------------------


AlbumItem = tuple[Update, ContextTypes.DEFAULT_TYPE]


async def on_album(items: list[AlbumItem]) -> None:
    """Two pictures in one album: the first is painted in the style of the second."""
    items = sorted(items, key=lambda item: item[0].effective_message.message_id)  # type: ignore[union-attr]
    update, context = items[0]
    images = [image_in(u.effective_message) for u, _ in items]
    if len(items) != 2 or None in images:
        await reply(update, say(update, "album_needs_two"))
        return
    content, style = images
    assert content is not None and style is not None
    await start_job(
        update, context, content, styles.own_image(style.file_id, say(update, "preset_own_image"))
    )


# -- the gallery ---------------------------------------------------------------------------------


def gallery_keyboard(
    s: Services, lang: str, page: int, job_id: int | None = None
) -> tuple[InlineKeyboardMarkup, int, int]:
    """One button per numbered tile of the page's sheet, navigation, "Surprise me" and the own-image
    choice. With ``job_id``, the gallery of "Another style": its buttons paint that job's kept photo.

    Returns the keyboard, the page (taken modulo the page count) and the page count.
    """
    pick, turn = ("pick:", "gal:") if job_id is None else (f"re:{job_id}:", f"rg:{job_id}:")
    pages = s.paintings.pages
    page %= pages
    shown = [s.catalog.get(i) for i in s.paintings.page_ids(page)]
    buttons = [
        InlineKeyboardButton(f"{number}. {_short(p.title)}", callback_data=f"{pick}{p.id}")
        for number, p in enumerate(shown, start=1)
    ]
    rows = [buttons[i : i + GALLERY_COLUMNS] for i in range(0, len(buttons), GALLERY_COLUMNS)]
    rows.append(
        [
            InlineKeyboardButton(text(lang, "gallery_previous"), callback_data=f"{turn}{(page - 1) % pages}"),
            InlineKeyboardButton(f"{page + 1}/{pages}", callback_data=f"{turn}{page}"),
            InlineKeyboardButton(text(lang, "gallery_next"), callback_data=f"{turn}{(page + 1) % pages}"),
        ]
    )
    surprise = "surp" if job_id is None else f"rs:{job_id}"
    last = [InlineKeyboardButton(text(lang, "gallery_surprise"), callback_data=surprise)]
    if job_id is None:
        last.append(InlineKeyboardButton(text(lang, "gallery_own"), callback_data="own"))
    rows.append(last)
    return InlineKeyboardMarkup(rows), page, pages


def _short(title: str, limit: int = 20) -> str:
    return title if len(title) <= limit else title[: limit - 1].rstrip() + "…"


async def send_gallery(update: Update, context: ContextTypes.DEFAULT_TYPE, photo_message_id: int) -> None:
    """The paintings of page 1 as a picture with numbered tiles, the matching buttons below it."""
    lang = language(update)
    chat = update.effective_chat
    assert chat is not None
    s = services(context)
    keyboard, page, pages = gallery_keyboard(s, lang, 0)
    sheet = await s.paintings.page(page, platform=TELEGRAM)
    sent = await context.bot.send_photo(
        chat.id,
        sheet.picture,
        caption=text(lang, "gallery_prompt", page=page + 1, pages=pages),
        reply_markup=keyboard,
        reply_parameters=_reply_to(photo_message_id),
    )
    s.paintings.uploaded(sheet, sent.photo[-1].file_id, sent.photo[-1].file_unique_id)


async def _gallery_photo(update: Update) -> ImageRef | None:
    """The photo a gallery message belongs to (it replies to it); answers the query if it is not usable."""
    query = update.callback_query
    assert query is not None
    photo = image_in(query.message.reply_to_message) if isinstance(query.message, Message) else None
    if photo is None:
        await answer(query, say(update, "error_photo_gone"), show_alert=True)
        return None
    if photo.sender_id is not None and photo.sender_id != query.from_user.id:
        await answer(query, say(update, "not_your_photo"))
        return None
    return photo


async def on_gallery_page(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Another page: the picture and the buttons change together (the picture also when a painting of
    this page arrived since it was drawn). ``gal:PAGE`` for a photo's gallery, ``rg:JOB:PAGE`` for the
    gallery of "Another style"."""
    query = update.callback_query
    assert query is not None and query.data is not None
    s = services(context)
    lang = language(update)
    parts = query.data.split(":")
    job_id = int(parts[1]) if parts[0] == "rg" else None
    keyboard, page, pages = gallery_keyboard(s, lang, int(parts[-1]), job_id)
    await answer(query)
    prompt = "gallery_prompt" if job_id is None else "again_prompt"
    caption = text(lang, prompt, page=page + 1, pages=pages)
    message = query.message
    if not isinstance(message, Message):
        return
    if not message.photo:  # a text gallery sent before the gallery had pictures
        if message.text != caption or message.reply_markup != keyboard:
            await query.edit_message_text(caption, reply_markup=keyboard)
        return
    sheet = await s.paintings.page(page, platform=TELEGRAM)
    shown = message.photo[-1].file_unique_id
    if message.caption == caption and message.reply_markup == keyboard and s.paintings.is_shown(sheet, shown):
        return  # Telegram refuses an edit that changes nothing
    media = InputMediaPhoto(sheet.picture, caption=caption)
    edited = await query.edit_message_media(media, reply_markup=keyboard)
    if isinstance(edited, Message) and edited.photo:
        s.paintings.uploaded(sheet, edited.photo[-1].file_id, edited.photo[-1].file_unique_id)


async def _say_instead(message: Message, words: str) -> None:
    """Replace what a gallery message says, and its buttons: its caption if it is a picture."""
    if message.photo:
        await message.edit_caption(words, reply_markup=None)
    else:
        await message.edit_text(words)


async def on_gallery_pick(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    photo = await _gallery_photo(update)
    if photo is None:
        return
    s = services(context)
    style_id = query.data.split(":", 1)[1]
    if style_id not in s.catalog:
        await answer(query, say(update, "button_expired"))
        return
    await answer(query)
    status = query.message if isinstance(query.message, Message) else None
    await start_job(update, context, photo, styles.paintings([style_id], s.catalog), status=status)


# -- the own-style conversation ------------------------------------------------------------------


async def own_style_start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    """ "My own style image" in the gallery: remember the photo and wait for the style picture."""
    query = update.callback_query
    assert query is not None
    photo = await _gallery_photo(update)
    if photo is None:
        return ConversationHandler.END
    await answer(query)
    _waiting(update, context)[_chat_id(update)] = photo
    assert isinstance(query.message, Message)  # _gallery_photo found the photo it replies to
    await _say_instead(query.message, say(update, "own_style_prompt"))
    return WAITING_FOR_STYLE


def _waiting(update: Update, context: ContextTypes.DEFAULT_TYPE) -> dict[int, ImageRef]:
    """The user's photos waiting for a style picture, one per chat: the conversation is per chat and user,
    so a photo waiting in one chat is never painted (or posted) in another."""
    assert context.user_data is not None
    return context.user_data.setdefault("own_style_for", {})


def _chat_id(update: Update) -> int:
    assert update.effective_chat is not None
    return update.effective_chat.id


async def own_style_received(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    assert update.effective_message is not None
    photo = _waiting(update, context).pop(_chat_id(update), None)
    style = image_in(update.effective_message)
    if photo is None or style is None:
        if photo is not None:
            _waiting(update, context)[_chat_id(update)] = photo  # still waiting for a picture
        await reply(update, say(update, "own_style_needs_image"))
        return WAITING_FOR_STYLE if style is None and photo is not None else ConversationHandler.END
    await start_job(update, context, photo, styles.own_image(style.file_id, say(update, "preset_own_image")))
    return ConversationHandler.END


async def own_style_wrong(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    await reply(update, say(update, "own_style_needs_image"))
    return WAITING_FOR_STYLE


async def own_style_cancel(update: Update, context: ContextTypes.DEFAULT_TYPE) -> int:
    _waiting(update, context).pop(_chat_id(update), None)
    await reply(update, say(update, "own_style_cancelled"))
    return ConversationHandler.END


def own_style_conversation() -> ConversationHandler:
    """Per user and chat, not per message: the style picture arrives as a new message, not a button.
    PTB warns that the entry button is then not tracked per message, which is what we want."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="If 'per_message=False'", category=PTBUserWarning)
        return ConversationHandler(
            entry_points=[CallbackQueryHandler(own_style_start, pattern=r"^own$")],
            states={
                WAITING_FOR_STYLE: [
                    MessageHandler(filters.PHOTO | filters.Document.ALL, own_style_received),
                    MessageHandler(~filters.COMMAND, own_style_wrong),
                ]
            },
            fallbacks=[CommandHandler("cancel", own_style_cancel)],
            conversation_timeout=OWN_STYLE_TIMEOUT,
            name="own_style",
            per_message=False,
        )


def handlers() -> list:
    return [
        own_style_conversation(),
        CommandHandler("style", style_command),
        MessageHandler(filters.PHOTO | filters.Document.ALL, on_image),
        CallbackQueryHandler(on_gallery_page, pattern=r"^(gal|rg:\d+):\d+$"),
        CallbackQueryHandler(on_gallery_pick, pattern=r"^pick:[a-z0-9_]+$"),
    ]

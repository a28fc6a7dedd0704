"""How the core's job events look on Telegram: the status message (``StatusBoard``), the result sent as a
reply to the user's photo, and plain replies. The core (``bot.notifier``) decides what to say and when.

When Telegram fails (``bot.telegram.failures``): flood control is waited out (PTB's ``AIORateLimiter``
first, then here), passing failures are tried again a few times with growing pauses (``bot.retrying``'s
one rule), and a chat that blocked the bot, is gone or where the bot may not post ends it at once: the
result raises ``Undeliverable`` and the job's animation and replies are not sent. A result Telegram
refuses in every form is ``Undeliverable`` too: sending it again later would meet the same refusal.
A result's send waits up to ``RESULT_READ_TIMEOUT`` for Telegram's answer, so a slow answer is never
raced by a second send; a send is tried again only after a failure, so a result comes twice only where
Telegram carried a send out and its answer was lost on the way (a dropped connection). A group that
became a supergroup (``ChatMigrated``) is moved (``bot.telegram.moves``) and the send made once more to its
new id, so its results and replies reach it.
"""

from __future__ import annotations

import asyncio
import functools
import html
import logging
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from telegram import Bot, ReplyParameters
from telegram.error import BadRequest, ChatMigrated, TelegramError

from bot import replies, retrying
from bot.db import JobRecord
from bot.frontend import TELEGRAM, Undeliverable
from bot.notifier import Notifier
from bot.services.users import UserService
from bot.telegram import buttons, failures
from bot.telegram.failures import is_dead_token, is_unreachable
from bot.telegram.moves import ChatMoves, quote
from bot.telegram.status import StatusBoard
from bot.texts import language_for

log = logging.getLogger(__name__)

PHOTO_MAX_BYTES = 10 * 1024 * 1024  # Telegram's limits for sendPhoto; larger results go as a file
PHOTO_MAX_DIMENSIONS = 10_000
CAPTION_LIMIT = 1024  # Telegram's limit on a caption's visible text, in UTF-16 code units
RESULT_READ_TIMEOUT = 60.0  # seconds a result's upload waits for its answer (PTB's default: 5)

T = TypeVar("T")


class TelegramFrontend:
    """The ``bot.frontend.Frontend`` of Telegram."""

    platform = TELEGRAM

    def __init__(
        self,
        bot: Bot,
        users: UserService,
        notifier: Notifier,
        board: StatusBoard,
        moves: ChatMoves | None = None,
    ) -> None:
        self.bot = bot
        self.users = users
        self.notifier = notifier
        self.board = board
        self.moves = moves  # None: a ChatMigrated is a failure like another (tests of the front end alone)

    async def show_status(
        self,
        job: JobRecord,
        text: str,
        *,
        preview: bytes | None = None,
        final: bool = False,
        now: bool = False,
        keep: bool = False,
    ) -> None:
        markup = None if final else buttons.cancel(language_for(job.language_code), job.id, keep=keep)
        await self.board.show(job, text, markup, preview=preview, final=final, now=now)

    async def remove_status(self, job: JobRecord) -> None:
        await self.board.remove(job)

    async def tell(self, job: JobRecord, text: str) -> None:
        if job.id in self.board.unreachable:
            return
        try:
            await self._to_chat(
                job,
                "a reply",
                lambda job: self.bot.send_message(job.chat_id, text, reply_parameters=quote(job)),
            )
        except TelegramError as err:
            self._unsent(job, "a reply", err)

    async def close(self) -> None:
        await self.board.close()

    async def deliver(self, job: JobRecord, path: Path, notes: tuple[str, ...]) -> str | None:
        """Send the painting as a reply to the user's photo: a photo with a full-resolution button, or a
        file when the user prefers files or the picture is beyond what Telegram takes as a photo.

        A passing failure is tried again with growing pauses; a refusal (``BadRequest``: a caption or photo
        Telegram will not take) falls back to the next form: without the caption, then as a file. The file
        id of a confirmed send comes back; ``None`` when it could not be sent now (the notifier tries again
        later); ``Undeliverable`` when the chat cannot be written to (blocked, kicked, gone, no right to
        post) or Telegram refused every form.
        """
        language = language_for(job.language_code)
        caption = fit_caption(language, job.style_label, job.engine_seconds, notes)
        if job.kind == "clip":  # a GIF or video painted (issue 21): an animation, with or without caption
            forms = [(False, caption), (False, None)]
        else:
            prefs = await self.users.preferences(job.user_id, platform=TELEGRAM)
            as_photo = prefs.result_as == "photo" and _fits_photo(job, path)
            forms = [(as_photo, caption), (as_photo, None)] + ([(False, None)] if as_photo else [])
        data = await asyncio.to_thread(path.read_bytes)
        refusal: TelegramError | None = None
        for photo, form_caption in forms:
            try:
                return await self._to_chat(
                    job,
                    "the result",
                    functools.partial(
                        self._send_result, path=path, data=data, photo=photo, caption=form_caption
                    ),
                )
            except TelegramError as err:
                if is_unreachable(err):
                    self.board.unreachable.add(job.id)
                    log.warning("job %d: user %d cannot be reached: %s", job.id, job.user_id, err)
                    raise Undeliverable(str(err)) from err
                if not isinstance(err, BadRequest):
                    self._unsent(job, "the result", err, path)
                    return None
                refusal = err
                log.warning(
                    "job %d: Telegram refused the result as a %s%s: %s",
                    job.id,
                    "photo" if photo else "file",
                    " with a caption" if form_caption else "",
                    err,
                )
        raise Undeliverable(f"Telegram refused the result in every form ({refusal})")

    async def _send_result(
        self, job: JobRecord, path: Path, data: bytes, *, photo: bool, caption: str | None
    ) -> str:
        """One send of one form of the result; the file id Telegram gave it."""
        language = language_for(job.language_code)
        reply = quote(job)
        if job.kind == "clip":  # MP4 (H.264) or GIF: Telegram plays both as an animation
            sent = await self.bot.send_animation(
                job.chat_id,
                data,
                filename=_file_name(job, path),
                caption=caption,
                reply_parameters=reply,
                reply_markup=buttons.result(
                    language, job, full_resolution=False, bot_username=self.bot.username
                ),
                read_timeout=RESULT_READ_TIMEOUT,
            )
            media = sent.animation or sent.document
            return media.file_id if media else ""
        if photo:
            message = await self.bot.send_photo(
                job.chat_id,
                data,
                caption=caption,
                reply_parameters=reply,
                reply_markup=buttons.result(
                    language, job, full_resolution=True, bot_username=self.bot.username
                ),
                read_timeout=RESULT_READ_TIMEOUT,
            )
            return message.photo[-1].file_id
        message = await self.bot.send_document(
            job.chat_id,
            data,
            filename=_file_name(job, path),
            caption=caption,
            reply_parameters=reply,
            reply_markup=buttons.result(language, job, full_resolution=False, bot_username=self.bot.username),
            read_timeout=RESULT_READ_TIMEOUT,
        )
        return message.document.file_id if message.document else ""

    async def deliver_animation(self, job: JobRecord, path: Path) -> None:
        """The painting as it formed, after its triptych; tried through passing failures, then let go (the
        triptych has gone already), and never to a chat that cannot be written to."""
        if job.id in self.board.unreachable:
            return
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as err:
            log.warning("job %d: the animation could not be read: %s", job.id, err)
            return
        try:
            await self._to_chat(
                job,
                "the animation",
                lambda job: self.bot.send_animation(
                    job.chat_id,
                    data,
                    filename=f"stylebot_{job.id}.gif",
                    reply_parameters=quote(job),
                    read_timeout=RESULT_READ_TIMEOUT,
                ),
            )
        except TelegramError as err:
            self._unsent(job, "the animation", err)

    async def _to_chat(self, job: JobRecord, what: str, send: Callable[[JobRecord], Awaitable[T]]) -> T:
        """``send(job)`` through passing failures (``_patiently``); a job whose group became a supergroup
        is moved (``ChatMoves``) and sent once more, as it is now, to the new chat."""
        try:
            return await self._patiently(job, what, lambda: send(job))
        except ChatMigrated as err:
            if self.moves is None:
                raise
            moved = await self.moves.job_moved(job, err)
            return await self._patiently(moved, what, lambda: send(moved))

    async def _patiently(self, job: JobRecord, what: str, send: Callable[[], Awaitable[T]]) -> T:
        """``send``, tried again through passing failures (``bot.retrying``: a few tries with growing
        pauses, or the pause flood control asks); any other failure, or the last one, is raised."""
        return await retrying.retried(
            send,
            passing=failures.passing,
            asked=failures.asked,
            what=f"job {job.id} (user {job.user_id}): sending {what}",
        )

    def _unsent(self, job: JobRecord, what: str, err: TelegramError, path: Path | None = None) -> None:
        """One line for something that was not sent, at the level its cause deserves."""
        if is_unreachable(err):
            self.board.unreachable.add(job.id)
            log.info("job %d: %s not sent, user %d cannot be reached: %s", job.id, what, job.user_id, err)
        elif is_dead_token(err):
            log.error("job %d: %s not sent: Telegram no longer accepts the bot's token", job.id, what)
        else:
            kept = f"; it stays in {path} and is tried again later" if path is not None else ""
            log.warning("job %d: %s not sent: %s%s", job.id, what, err, kept)

    async def send_full_resolution(self, job: JobRecord, reply_to: int, *, in_chat: int) -> bool:
        """The lossless file behind a result photo, a reply to message ``reply_to`` of chat ``in_chat`` (the
        pressed result) while the job is still in that chat: a message id names a message of one chat only,
        and a job moved to a supergroup since would quote an unrelated message there. False once the
        retention sweep removed the file."""
        path = self.notifier.result_path(job)
        if path is None:
            return False
        data = await asyncio.to_thread(path.read_bytes)
        reply = (
            ReplyParameters(reply_to, allow_sending_without_reply=True) if in_chat == job.chat_id else None
        )
        try:
            await self.bot.send_document(
                job.chat_id, data, filename=_file_name(job, path), reply_parameters=reply
            )
        except ChatMigrated as err:  # pressed under a result left in a group that became a supergroup
            if self.moves is None:
                raise
            job = await self.moves.job_moved(job, err)
            await self.bot.send_document(job.chat_id, data, filename=_file_name(job, path))
        return True


def fit_caption(language: str, style: str, seconds: float | None, notes: tuple[str, ...] = ()) -> str:
    """The result's caption, its style label (and then its notes) cut to fit ``CAPTION_LIMIT``."""
    caption = replies.result_caption(language, style, seconds, notes)
    keep = len(style)
    while (excess := _visible_length(caption) - CAPTION_LIMIT) > 0 and keep > 0:
        keep = max(0, keep - excess - 1)
        caption = replies.result_caption(language, style[:keep].rstrip() + "…", seconds, notes)
    if _visible_length(caption) > CAPTION_LIMIT:
        caption = replies.result_caption(language, "…", seconds)
    return caption


def _visible_length(caption: str) -> int:
    """What Telegram counts of an HTML caption: the text without tags, in UTF-16 code units."""
    visible = html.unescape(re.sub(r"<[^>]*>", "", caption))
    return len(visible.encode("utf-16-le")) // 2


def _fits_photo(job: JobRecord, path: Path) -> bool:
    width, height = job.result_width or 0, job.result_height or 0
    return path.stat().st_size <= PHOTO_MAX_BYTES and width + height <= PHOTO_MAX_DIMENSIONS


def _file_name(job: JobRecord, path: Path) -> str:
    return f"stylebot_{job.id}{path.suffix}"

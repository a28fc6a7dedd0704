"""The status message of each job, edited in place without flooding the chat.

Rules: at most one edit per interval (3 s in private chats, 10 s in groups by default), the latest state
winning (``bot.services.throttle``, as on Discord), and never an edit that changes nothing (Telegram refuses
those). When a live preview arrives, the text message is
replaced once by a photo message whose picture and caption are then edited; later texts edit the caption
and keep the picture. A picture shown ``now`` (the job's sketch) skips the interval, and one that comes
before the status message is up is shown as soon as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass

from telegram import Bot, InlineKeyboardMarkup, InputMediaPhoto, Message, ReplyParameters
from telegram.error import BadRequest, Forbidden, TelegramError

from bot.db import JobRecord
from bot.services.jobs import JobService
from bot.services.throttle import Slot, StatusThrottle

log = logging.getLogger(__name__)

_GONE = ("message to edit not found", "message can't be edited", "message to delete not found")


@dataclass
class _View:
    text: str
    buttons: InlineKeyboardMarkup | None
    preview: bytes | None = None

    def key(self) -> tuple[str, str, str]:
        markup = repr(self.buttons.to_dict()) if self.buttons else ""
        picture = hashlib.sha1(self.preview).hexdigest() if self.preview else ""
        return self.text, markup, picture


@dataclass(kw_only=True)
class _Entry(Slot[_View]):
    job: JobRecord
    message_id: int
    is_photo: bool = False
    shown: tuple[str, str, str] | None = None
    final: bool = False


class StatusBoard:
    def __init__(self, bot: Bot, jobs: JobService, *, interval_private: float, interval_group: float) -> None:
        self.bot = bot
        self.jobs = jobs
        self.throttle = StatusThrottle({"private": interval_private}, default=interval_group)
        self._entries: dict[int, _Entry] = {}
        self._early: dict[int, _View] = {}  # a picture for a job whose status message is not up yet

    async def open(
        self,
        job: JobRecord,
        text: str,
        buttons: InlineKeyboardMarkup | None,
        *,
        reuse: Message | None = None,
    ) -> None:
        """Post the job's status message (or turn ``reuse``, e.g. the gallery, into it) and track it.

        The board then knows what is on screen, so it never sends Telegram an edit that changes nothing.
        A picture (the gallery's sheet) keeps its picture: the status is its caption, until a preview
        replaces the picture.
        """
        is_photo = bool(reuse is not None and reuse.photo)
        if reuse is not None:
            if is_photo:
                await reuse.edit_caption(text, reply_markup=buttons)
            else:
                await reuse.edit_text(text, reply_markup=buttons)
            message_id = reuse.message_id
        else:
            reply = ReplyParameters(job.source_message_id, allow_sending_without_reply=True)
            message = await self.bot.send_message(
                job.chat_id, text, reply_markup=buttons, reply_parameters=reply
            )
            message_id = message.message_id
        entry = self._entries[job.id] = self._new_entry(job, message_id, is_photo=is_photo)
        entry.shown = _View(text, buttons).key()
        self.throttle.shown(entry)
        await self.jobs.record_status(job.id, message_id)
        if (early := self._early.pop(job.id, None)) is not None:  # the sketch was quicker than the message
            await self.show(job, early.text, early.buttons, preview=early.preview, now=True)

    async def show(
        self,
        job: JobRecord,
        text: str,
        buttons: InlineKeyboardMarkup | None = None,
        *,
        preview: bytes | None = None,
        final: bool = False,
        now: bool = False,
    ) -> None:
        """Show ``text`` (and ``preview``) on the job's status message, now or when the interval allows.

        ``final`` shows the last state of the job; the board forgets the job once it is on screen. ``now``
        shows it at once, whatever the interval (the sketch: once per job, and the point of it is speed).
        """
        entry = self._entry(job)
        if entry is None:
            if preview and not final:
                self._early[job.id] = _View(text, buttons, preview)
            return
        entry.final = entry.final or final
        await self.throttle.offer(
            entry,
            _View(text, buttons, preview),
            now=now,
            flush=lambda: self._flush(entry),
            name=f"status-{job.id}",
        )

    async def remove(self, job: JobRecord) -> None:
        """Delete the status message (the result is there, or the job vanished) and forget the job."""
        entry = self._entries.pop(job.id, None)
        self._early.pop(job.id, None)
        message_id = job.status_message_id
        if entry is not None:
            self.throttle.stop(entry)
            async with entry.lock:  # after an update under way: a photo status it sends is the one to go
                entry.pending = None  # and a flush waiting behind us shows nothing
                message_id = entry.message_id
        if message_id is not None:
            with contextlib.suppress(BadRequest, Forbidden):
                await self.bot.delete_message(job.chat_id, message_id)

    async def ended_early(self, job: JobRecord) -> None:
        """The job ended while its status was being put up. Its last state, offered meanwhile, is shown
        now (not after the interval, which ``remove`` would cut short); if it came before the status
        existed, its owner heard in a message of its own, and the status goes."""
        entry = self._entries.get(job.id)
        if entry is None:
            return  # its last state is on screen already (the board forgets a job once it is)
        if entry.final:
            self.throttle.stop(entry)
            await self._flush(entry)
            return
        await self.remove(job)

    async def close(self) -> None:
        """Stop pending flushes (at shutdown)."""
        await self.throttle.close(self._entries.values())
        self._entries.clear()
        self._early.clear()

    def _entry(self, job: JobRecord) -> _Entry | None:
        """The job's tracked message; a job from before a restart is picked up from its row."""
        entry = self._entries.get(job.id)
        if entry is None and job.status_message_id is not None:
            entry = self._entries[job.id] = self._new_entry(job, job.status_message_id)
        return entry

    def _new_entry(self, job: JobRecord, message_id: int, *, is_photo: bool = False) -> _Entry:
        interval = self.throttle.interval(job.chat_type)
        return _Entry(job=job, message_id=message_id, interval=interval, is_photo=is_photo)

    async def _flush(self, entry: _Entry) -> None:
        async with entry.lock:
            view = self.throttle.take(entry)
            if view is None:
                return
            if view.key() != entry.shown:
                try:
                    await self._render(entry, view)
                except BadRequest as err:
                    if any(reason in str(err).lower() for reason in _GONE):
                        log.info("job %d: status message is gone (%s); no more updates", entry.job.id, err)
                        self._entries.pop(entry.job.id, None)
                        return
                    if "not modified" not in str(err).lower():
                        log.error("job %d: Telegram refused a status update: %s", entry.job.id, err)
                        return
                except Forbidden:
                    self._entries.pop(entry.job.id, None)
                    return
                except TelegramError as err:  # network trouble: keep the view for the next update
                    log.warning("job %d: status update failed: %s", entry.job.id, err)
                    entry.pending = entry.pending or view
                    return
                entry.shown = view.key()
                self.throttle.shown(entry)
            if entry.final:
                self._entries.pop(entry.job.id, None)

    async def _render(self, entry: _Entry, view: _View) -> None:
        job = entry.job
        if view.preview and not entry.is_photo:
            await self._switch_to_photo(entry, view)
        elif view.preview:
            media = InputMediaPhoto(view.preview, caption=view.text)
            await self.bot.edit_message_media(media, job.chat_id, entry.message_id, reply_markup=view.buttons)
        elif entry.is_photo:
            await self.bot.edit_message_caption(
                job.chat_id, entry.message_id, caption=view.text, reply_markup=view.buttons
            )
        else:
            try:
                await self.bot.edit_message_text(
                    view.text, job.chat_id, entry.message_id, reply_markup=view.buttons
                )
            except BadRequest as err:
                if "no text in the message" not in str(err).lower():
                    raise
                entry.is_photo = True  # a picture (the gallery's) whose status survived a restart of the bot
                await self._render(entry, view)

    async def _switch_to_photo(self, entry: _Entry, view: _View) -> None:
        """A text message cannot become a photo: send the photo status, then delete the text one."""
        job = entry.job
        assert view.preview is not None  # ``_render`` switches only to show a picture
        message = await self.bot.send_photo(
            job.chat_id,
            view.preview,
            caption=view.text,
            reply_markup=view.buttons,
            reply_parameters=ReplyParameters(job.source_message_id, allow_sending_without_reply=True),
        )
        with contextlib.suppress(BadRequest, Forbidden):
            await self.bot.delete_message(job.chat_id, entry.message_id)
        entry.message_id, entry.is_photo = message.message_id, True
        await self.jobs.record_status(job.id, message.message_id)

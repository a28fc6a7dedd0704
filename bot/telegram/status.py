"""The status message of each job, edited in place without flooding the chat.

Rules: at most one edit per interval (3 s in private chats, 10 s in groups by default), the latest state
winning (``bot.services.throttle``, as on Discord), and never an edit that changes nothing (Telegram refuses
those). When a live preview arrives, the text message is
replaced once by a photo message whose picture and caption are then edited; later texts edit the caption
and keep the picture. A picture shown ``now`` (the job's sketch) skips the interval, and one that comes
before the status message is up is shown as soon as it is.

When Telegram fails (``bot.telegram.failures``, pauses from ``bot.retrying``): a passing failure keeps the
update for a later try with growing pauses: a progress view a few times (``retrying.PAUSES``; then the next
one supersedes it), the job's last view until it is shown, refused for good or gone (``retrying.patient``:
a user must learn how the job ended, and the Cancel button must go); a status a user or moderator deleted
is forgotten (no more edits, the painting still comes); a chat that blocked the bot, or is gone, hears
nothing more about the job (``unreachable``: the front end skips its animation and replies too), so a
blocked user's waiting job costs one refused call, not one per update. A group that became a supergroup
(``ChatMigrated``, ``bot.telegram.moves``) is moved, and the status, which cannot be edited in the old
group, is put up afresh in the new one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import logging
from dataclasses import dataclass

from telegram import Bot, InlineKeyboardMarkup, InputMediaPhoto, Message
from telegram.error import BadRequest, ChatMigrated, TelegramError

from bot import retrying
from bot.db import JobRecord
from bot.services.jobs import JobService
from bot.services.throttle import Slot, StatusThrottle
from bot.telegram import failures
from bot.telegram.failures import is_dead_token, is_gone, is_passing, is_unreachable
from bot.telegram.moves import ChatMoves, quote

log = logging.getLogger(__name__)


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
    failures: int = 0  # passing failures of the update waiting to be shown


class StatusBoard:
    def __init__(
        self,
        bot: Bot,
        jobs: JobService,
        *,
        interval_private: float,
        interval_group: float,
        moves: ChatMoves | None = None,
    ) -> None:
        self.bot = bot
        self.jobs = jobs
        self.moves = moves  # None: a ChatMigrated is a refusal like another (tests of the board alone)
        self.throttle = StatusThrottle({"private": interval_private}, default=interval_group)
        self._entries: dict[int, _Entry] = {}
        self._early: dict[int, _View] = {}  # a picture for a job whose status message is not up yet
        self._forgotten: set[int] = set()  # jobs whose status is gone (deleted, or its chat unreachable)
        self.unreachable: set[int] = set()  # jobs whose chat cannot be written to (blocked, gone)

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
        try:
            try:
                message_id = await self._put_up_patiently(job, text, buttons, reuse)
            except ChatMigrated as err:  # the group became a supergroup meanwhile: a new status there
                if self.moves is None:
                    raise
                job = await self.moves.job_moved(job, err)
                is_photo = False
                message_id = await self._put_up_patiently(job, text, buttons, None)
        except TelegramError as err:
            if is_unreachable(err):
                self._forget(job, f"its chat cannot be written to ({err})", unreachable=True)
            else:
                self._forget(job, f"its status could not be put up ({err}); the job goes on without one")
            return
        entry = self._entries[job.id] = self._new_entry(job, message_id, is_photo=is_photo)
        entry.shown = _View(text, buttons).key()
        self.throttle.shown(entry)
        await self.jobs.record_status(job.id, message_id, chat_id=job.chat_id)
        if (early := self._early.pop(job.id, None)) is not None:  # the sketch was quicker than the message
            await self.show(job, early.text, early.buttons, preview=early.preview, now=True)

    async def _put_up_patiently(
        self, job: JobRecord, text: str, buttons: InlineKeyboardMarkup | None, reuse: Message | None
    ) -> int:
        return await retrying.retried(
            lambda: self._put_up(job, text, buttons, reuse),
            passing=failures.passing,
            asked=failures.asked,
            what=f"job {job.id} (user {job.user_id}): putting its status up",
        )

    async def _put_up(
        self, job: JobRecord, text: str, buttons: InlineKeyboardMarkup | None, reuse: Message | None
    ) -> int:
        if reuse is None:
            message = await self.bot.send_message(
                job.chat_id, text, reply_markup=buttons, reply_parameters=quote(job)
            )
            return message.message_id
        try:
            if reuse.photo:
                await reuse.edit_caption(text, reply_markup=buttons)
            else:
                await reuse.edit_text(text, reply_markup=buttons)
        except BadRequest as err:
            if "not modified" not in str(err).lower():  # a try whose answer was lost: it is up
                raise
        return reuse.message_id

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
        if job.id in self._forgotten:
            return
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
            if entry.job.chat_id != job.chat_id:  # left in a group that became a supergroup: no id there
                log.info("job %d: its status stays in chat %d, which moved", job.id, entry.job.chat_id)
                message_id = None
        if message_id is not None and job.id not in self._forgotten:
            await self._delete(job, message_id)

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

    def _forget(self, job: JobRecord, why: str, *, unreachable: bool = False) -> None:
        """No more updates of this job's status, said once in the log."""
        log.info("job %d: %s; no more status updates", job.id, why)
        self._forgotten.add(job.id)
        if unreachable:
            self.unreachable.add(job.id)
        self._early.pop(job.id, None)
        entry = self._entries.pop(job.id, None)
        if entry is not None:
            self.throttle.stop(entry)
            entry.pending = None

    async def _delete(self, job: JobRecord, message_id: int) -> None:
        """Delete a status message: tried again through passing failures; gone already is fine."""
        try:
            await retrying.retried(
                lambda: self.bot.delete_message(job.chat_id, message_id),
                passing=failures.passing,
                asked=failures.asked,
                what=f"job {job.id} (user {job.user_id}): deleting its status",
            )
        except TelegramError as err:
            log.info("job %d: status message %d not deleted: %s", job.id, message_id, err)

    def _entry(self, job: JobRecord) -> _Entry | None:
        """The job's tracked message; a job from before a restart is picked up from its row."""
        if job.id in self._forgotten:
            return None
        entry = self._entries.get(job.id)
        if entry is None and job.status_message_id is not None:
            entry = self._entries[job.id] = self._new_entry(job, job.status_message_id)
        return entry

    def _new_entry(self, job: JobRecord, message_id: int, *, is_photo: bool = False) -> _Entry:
        interval = self.throttle.interval(job.chat_type)
        return _Entry(job=job, message_id=message_id, interval=interval, is_photo=is_photo)

    async def _flush(self, entry: _Entry) -> None:
        async with entry.lock:
            if entry.job.id in self._forgotten:
                return
            view = self.throttle.take(entry)
            if view is None:
                return
            key = view.key()
            if view.preview is None and entry.shown is not None:
                key = (*key[:2], entry.shown[2])  # a text alone keeps the picture on screen
            if key != entry.shown:
                try:
                    await self._render(entry, view)
                except TelegramError as err:
                    if not self._failed(entry, view, err):
                        return
                entry.failures = 0
                entry.shown = key
                self.throttle.shown(entry)
            if entry.final:
                self._entries.pop(entry.job.id, None)

    def _failed(self, entry: _Entry, view: _View, err: TelegramError) -> bool:
        """What a failed update means; True when the view is on screen all the same (a repeat of an update
        whose answer was lost finds it "not modified")."""
        job = entry.job
        if isinstance(err, BadRequest) and "not modified" in str(err).lower():
            return True
        if is_unreachable(err):
            self._forget(job, f"its chat cannot be written to ({err})", unreachable=True)
        elif is_gone(err):
            self._forget(job, f"its status message is gone ({err})")
        elif is_dead_token(err):
            self._forget(job, "Telegram no longer accepts the bot's token")
        elif is_passing(err) and (delay := _pause(entry, err)) is not None:
            entry.failures += 1
            log.warning(
                "job %d (user %d): status update failed (%s, try %d); trying again in %.1f s",
                job.id,
                job.user_id,
                err,
                entry.failures,
                delay,
            )
            pending = entry.pending
            if pending is None:
                entry.pending = view
            elif view.preview and not pending.preview:  # a newer text must not drop a picture not shown
                entry.pending = dataclasses.replace(pending, preview=view.preview)
            if entry.timer is None:
                entry.timer = asyncio.create_task(self._flush_later(entry, delay), name=f"status-{job.id}")
        elif is_passing(err):  # a progress view: the next one supersedes it
            log.warning("job %d: status update not shown (%s); the next one takes its place", job.id, err)
            entry.failures = 0
        else:
            log.error("job %d: Telegram refused a status update: %s", job.id, err)
            entry.failures = 0
            if entry.final:  # refused for good: nothing more will be shown
                self._entries.pop(job.id, None)
        return False

    async def _flush_later(self, entry: _Entry, delay: float) -> None:
        await asyncio.sleep(delay)
        entry.timer = None
        await self._flush(entry)

    async def _render(self, entry: _Entry, view: _View) -> None:
        try:
            await self._render_here(entry, view)
        except ChatMigrated as err:  # the old group's message can no longer be edited: a new one
            if self.moves is None:
                raise
            entry.job = await self.moves.job_moved(entry.job, err)
            await self._put_up_afresh(entry, view)

    async def _put_up_afresh(self, entry: _Entry, view: _View) -> None:
        """The status as a new message in the job's (new) chat, remembered as the job's status."""
        job = entry.job
        if view.preview:
            await self._send_photo(entry, view)
            return
        message = await self.bot.send_message(
            job.chat_id, view.text, reply_markup=view.buttons, reply_parameters=quote(job)
        )
        entry.message_id, entry.is_photo = message.message_id, False
        await self.jobs.record_status(job.id, message.message_id, chat_id=job.chat_id)

    async def _send_photo(self, entry: _Entry, view: _View) -> None:
        """The status as a new photo message in the job's chat, remembered as the job's status."""
        job = entry.job
        assert view.preview is not None
        message = await self.bot.send_photo(
            job.chat_id,
            view.preview,
            caption=view.text,
            reply_markup=view.buttons,
            reply_parameters=quote(job),
        )
        entry.message_id, entry.is_photo = message.message_id, True
        await self.jobs.record_status(job.id, message.message_id, chat_id=job.chat_id)

    async def _render_here(self, entry: _Entry, view: _View) -> None:
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
                await self._render_here(entry, view)

    async def _switch_to_photo(self, entry: _Entry, view: _View) -> None:
        """A text message cannot become a photo: send the photo status, then delete the text one."""
        assert view.preview is not None  # ``_render`` switches only to show a picture
        old_id = entry.message_id
        await self._send_photo(entry, view)
        await self._delete(entry.job, old_id)


def _pause(entry: _Entry, err: TelegramError) -> float | None:
    """Seconds before the next try of a view that met a passing failure, or None to let it go: the job's
    last view is tried until it is shown (``retrying.patient``), a progress view ``retrying.PAUSES``."""
    if entry.final:
        pause = next(itertools.islice(retrying.patient(), entry.failures, None))
    elif entry.failures < len(retrying.PAUSES):
        pause = retrying.PAUSES[entry.failures]
    else:
        return None
    asked = failures.asked(err)
    return pause if asked is None else asked

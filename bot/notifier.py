"""Tells users what happens to their jobs: the queue's events turned into Telegram messages.

The queue calls these methods in order per job and off its own critical path (``bot.queue.events``), so
they may take the time Telegram takes.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import logging
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from telegram import Bot, Message, ReplyParameters
from telegram.error import BadRequest, Forbidden, TelegramError

from bot import replies
from bot.db import Database, JobRecord, JobState
from bot.health import Metrics
from bot.queue.base import JobResult
from bot.services.jobs import JobService
from bot.services.preferences import Preferences
from bot.status import StatusBoard
from bot.texts import language_for, text
from engine.protocol import Progress

log = logging.getLogger(__name__)

PHOTO_MAX_BYTES = 10 * 1024 * 1024  # Telegram's limits for sendPhoto; larger results go as a file
PHOTO_MAX_DIMENSIONS = 10_000
CAPTION_LIMIT = 1024  # Telegram's limit on a caption's visible text, in UTF-16 code units
DELIVERY_ATTEMPTS = 4  # sends of one form that fail for a passing reason (a timeout, a network error)
DELIVERY_BACKOFF = 2.0  # seconds before the second attempt; doubles for each one after
REDELIVERY_WINDOW = timedelta(days=1)
REDELIVERY_INTERVAL = 300.0  # seconds between looks for results that could not be sent yet


class Notifier:
    """The bot's ``JobEvents``."""

    def __init__(
        self,
        bot: Bot,
        db: Database,
        jobs: JobService,
        board: StatusBoard,
        metrics: Metrics,
        *,
        results_dir: Path,
    ) -> None:
        self.bot = bot
        self.db = db
        self.jobs = jobs
        self.board = board
        self.metrics = metrics
        self.results_dir = results_dir
        self.counts = (0, 0)  # (queued, running), for /healthz and /metrics
        self._notes: dict[int, str] = {}  # a retry notice, kept on the job's status until the job ends
        self._delivering: set[int] = set()  # job ids being sent now: never twice at once
        self._closing = asyncio.Event()  # set at shutdown: no new redelivery starts

    # -- JobEvents ------------------------------------------------------------------------------

    async def job_started(self, job_id: int) -> None:
        job = await self.db.get_job(job_id)
        if job is not None and job.state == JobState.RUNNING:
            await self._show(job, replies.queued(language_for(job.language_code), None))

    async def job_progress(self, job_id: int, progress: Progress) -> None:
        job = await self.db.get_job(job_id)
        if job is None or job.state != JobState.RUNNING:
            return
        text = replies.running(language_for(job.language_code), job.style_label, progress)
        await self._show(job, text, preview=progress.preview)

    async def job_finished(self, job_id: int, result: JobResult) -> None:
        """The painting is already safe in ``result.path`` (the queue kept it before marking the job
        done); until Telegram confirms a send, the job counts as undelivered and is sent again later."""
        job = await self.db.get_job(job_id)
        if job is None or job.state != JobState.DONE:
            return
        self._notes.pop(job.id, None)
        await self.board.remove(job)
        await self.deliver(job, result.path, notes=result.notes)
        if result.animation is not None:
            await self.deliver_animation(job, result.animation)
        self.metrics.ended("done", job.engine_seconds)
        await self.jobs.discard_inputs(job)
        log.info("job %d done for user %d in %.1f s", job.id, job.user_id, result.seconds)

    async def job_failed(self, job_id: int, code: str, message: str) -> None:
        job = await self.db.get_job(job_id)
        if job is None:
            return
        self._notes.pop(job.id, None)
        log.warning("job %d for user %d failed: %s (%s)", job.id, job.user_id, code, message)
        text = replies.error(language_for(job.language_code), code)
        if job.status_message_id is not None:
            await self.board.show(job, text, final=True)
        else:
            await self._reply(job, text)
        self.metrics.ended("failed")
        await self.jobs.discard_inputs(job)

    async def job_retrying(self, job_id: int, reason: str) -> None:
        job = await self.db.get_job(job_id)
        if job is None:
            return
        log.warning("job %d for user %d is retried: %s", job.id, job.user_id, reason)
        language = language_for(job.language_code)
        self._notes[job.id] = replies.retrying(language, reason)
        await self._show(job, replies.queued(language, (await self.jobs.placements()).get(job.id)))

    async def queue_changed(self) -> None:
        """Queued jobs move up when others start or end: show each its new place."""
        active = await self.db.queued_and_running()
        self.counts = (
            sum(j.state == JobState.QUEUED for j in active),
            sum(j.state == JobState.RUNNING for j in active),
        )
        placements = await self.jobs.placements()
        for job in active:
            if job.id in placements:
                await self._show(job, replies.queued(language_for(job.language_code), placements[job.id]))

    async def cancelled(self, job: JobRecord) -> None:
        """The user cancelled: the status message says so (and loses its button)."""
        self._notes.pop(job.id, None)
        language = language_for(job.language_code)
        await self.board.show(job, text(language, "cancelled"), final=True)
        self.metrics.ended("cancelled")
        await self.queue_changed()

    async def _show(self, job: JobRecord, message: str, *, preview: bytes | None = None) -> None:
        """An active job's status: under any retry notice, with the Cancel button."""
        if note := self._notes.get(job.id):
            message = f"{note}\n{message}"
        buttons = replies.cancel_button(language_for(job.language_code), job.id)
        await self.board.show(job, message, buttons, preview=preview)

    # -- delivery -------------------------------------------------------------------------------

    async def deliver(self, job: JobRecord, path: Path, notes: tuple[str, ...] = ()) -> Message | None:
        """Send the painting as a reply to the user's photo: a photo with a full-resolution button, or a
        file when the user prefers files or the picture is beyond what Telegram takes as a photo.

        A passing failure (a timeout, a network error) is tried again with growing pauses; a refusal
        (``BadRequest``: a caption or photo Telegram will not take) falls back to the next form: without
        the caption, then as a file. Only a confirmed send marks the job delivered (``result_file_id``);
        anything else leaves it for ``redeliver``.
        """
        if job.id in self._delivering:
            return None
        self._delivering.add(job.id)
        try:
            return await self._deliver(job, path, notes)
        finally:
            self._delivering.discard(job.id)

    async def _deliver(self, job: JobRecord, path: Path, notes: tuple[str, ...]) -> Message | None:
        language = language_for(job.language_code)
        caption = fit_caption(language, job.style_label, job.engine_seconds, notes)
        user = await self.db.get_user(job.user_id)
        as_photo = Preferences.from_dict(user.settings if user else {}).result_as == "photo" and _fits_photo(
            job, path
        )
        forms = [(as_photo, caption), (as_photo, None)] + ([(False, None)] if as_photo else [])
        data = await asyncio.to_thread(path.read_bytes)
        for photo, form_caption in forms:
            try:
                message, file_id = await self._send_result(job, path, data, photo=photo, caption=form_caption)
            except Forbidden as err:
                log.warning("job %d: user %d cannot be reached: %s", job.id, job.user_id, err)
                return None
            except BadRequest as err:
                log.warning(
                    "job %d: Telegram refused the result as a %s%s: %s",
                    job.id,
                    "photo" if photo else "file",
                    " with a caption" if form_caption else "",
                    err,
                )
                continue
            except TelegramError as err:
                log.error("job %d: the result could not be sent (%s); it stays in %s", job.id, err, path)
                return None
            await self.db.record_result_file(job.id, file_id)
            return message
        log.error("job %d: Telegram refused the result in every form; it stays in %s", job.id, path)
        return None

    async def _send_result(
        self, job: JobRecord, path: Path, data: bytes, *, photo: bool, caption: str | None
    ) -> tuple[Message, str]:
        """One form of the result, tried ``DELIVERY_ATTEMPTS`` times while the failures are passing ones."""
        language = language_for(job.language_code)
        reply = ReplyParameters(job.source_message_id, allow_sending_without_reply=True)
        for attempt in range(1, DELIVERY_ATTEMPTS + 1):
            try:
                if photo:
                    message = await self.bot.send_photo(
                        job.chat_id,
                        data,
                        caption=caption,
                        reply_parameters=reply,
                        reply_markup=replies.result_buttons(language, job, full_resolution=True),
                    )
                    return message, message.photo[-1].file_id
                message = await self.bot.send_document(
                    job.chat_id,
                    data,
                    filename=_file_name(job, path),
                    caption=caption,
                    reply_parameters=reply,
                    reply_markup=replies.result_buttons(language, job, full_resolution=False),
                )
                return message, message.document.file_id if message.document else ""
            except (BadRequest, Forbidden):
                raise
            except TelegramError as err:
                if attempt == DELIVERY_ATTEMPTS:
                    raise
                log.warning("job %d: delivery attempt %d failed: %s", job.id, attempt, err)
                await asyncio.sleep(DELIVERY_BACKOFF * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def deliver_animation(self, job: JobRecord, path: Path) -> None:
        """The painting as it formed, after its triptych; best effort (the triptych has gone already)."""
        try:
            await self.bot.send_animation(
                job.chat_id,
                await asyncio.to_thread(path.read_bytes),
                filename=f"stylebot_{job.id}.gif",
                reply_parameters=ReplyParameters(job.source_message_id, allow_sending_without_reply=True),
            )
        except (TelegramError, OSError) as err:
            log.warning("job %d: the animation could not be sent: %s", job.id, err)

    async def send_full_resolution(self, job: JobRecord, reply_to: int) -> bool:
        """The lossless file behind a result photo; False once the retention sweep removed it."""
        path = self.result_path(job)
        if path is None:
            return False
        await self.bot.send_document(
            job.chat_id,
            await asyncio.to_thread(path.read_bytes),
            filename=_file_name(job, path),
            reply_parameters=ReplyParameters(reply_to, allow_sending_without_reply=True),
        )
        return True

    def result_path(self, job: JobRecord) -> Path | None:
        for suffix in ("png", "jpg"):
            path = self.results_dir / f"{job.id}.{suffix}"
            if path.is_file():
                return path
        return None

    async def redeliver(self, *, settled: timedelta = timedelta(0)) -> None:
        """Results that were painted but not confirmed sent (the bot stopped while sending, Telegram was
        unreachable) go out now; ``settled``: only those finished at least that long ago (a result that
        just finished is still on its way through ``job_finished``)."""
        now = datetime.now(UTC)
        for job in await self.db.undelivered_jobs(now - REDELIVERY_WINDOW):
            if self._closing.is_set():
                return
            if job.finished_at is not None and job.finished_at > now - settled:
                continue
            path = self.result_path(job)
            if path is not None and job.id not in self._delivering:
                log.info("job %d: delivering a result that was not sent yet", job.id)
                await self.board.remove(job)
                await self.deliver(job, path)

    async def redeliver_forever(self, interval: float = REDELIVERY_INTERVAL) -> None:
        """``redeliver`` everything now (at start-up), then every ``interval`` seconds what has waited at
        least that long, until cancelled."""
        settled = timedelta(0)
        while not self._closing.is_set():
            try:
                await self.redeliver(settled=settled)
            except Exception:
                log.exception("redelivery failed; trying again in %.0f s", interval)
            settled = timedelta(seconds=interval)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), interval)

    def stop_redelivering(self) -> None:
        """At shutdown: a send under way is finished (and recorded); no other starts."""
        self._closing.set()

    async def _reply(self, job: JobRecord, text: str) -> None:
        with contextlib.suppress(BadRequest, Forbidden):
            await self.bot.send_message(
                job.chat_id,
                text,
                reply_parameters=ReplyParameters(job.source_message_id, allow_sending_without_reply=True),
            )


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

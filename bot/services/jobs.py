"""Jobs from the bot's side: the rules before one is queued, and where it stands afterwards.

``submit`` checks the limits, validates the images (so a user hears about a broken file at once, not after
waiting in the queue), keeps the inputs on disk (so a restart loses nothing), stores the row and hands it to
the queue. Validation reads headers only (``engine.images.probe_image``): the bot never decodes a whole
picture, so a decompression bomb costs it nothing; the worker decodes and reports what the probe missed.
Positions and waiting times come from the same fair order the queue dispatches in.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.db import Database, JobLimits, JobRecord, JobState, LimitExceededError, RequestMadeError
from bot.queue.base import JobQueue
from bot.queue.scheduling import estimate_wait, fair_order
from bot.services.access import Admins, ownership
from bot.services.refusals import BlockedError, ChatOffError, Refused
from bot.services.sketches import SketchService, is_instant
from bot.services.styles import StyleChoice, check_blend
from bot.services.uploads import validate_images
from engine.protocol import StyleSettings, settings_to_dict

log = logging.getLogger(__name__)

# until the database has real timings
DEFAULT_JOB_SECONDS = {"instant": 2.0, "draft": 15.0, "normal": 60.0, "high": 240.0}
HOUR = timedelta(hours=1)


@dataclass(frozen=True)
class Limits:
    max_active: int
    max_per_hour: int
    max_queue: int


class LimitReachedError(Refused):
    """The user (or everyone) has to wait; ``kind`` is "active", "hourly" or "queue_full"."""

    def __init__(self, kind: str, *, count: int = 0, retry_after: float = 0.0) -> None:
        super().__init__(f"limit_{kind}", count=count)
        self.kind, self.count, self.retry_after = kind, count, retry_after


class RepeatedRequest(Exception):
    """The request (a platform's message or button press, ``NewJob.request_key``) made its job already:
    the platform sent it again (an update the bot had not confirmed when it died). Not a refusal: the
    user has the job; the front end shows it if it was never shown, and says nothing new."""

    def __init__(self, job: JobRecord) -> None:
        super().__init__(f"job {job.id} exists for this request")
        self.job = job


@dataclass(frozen=True)
class NewJob:
    user_id: int
    chat_id: int
    chat_type: str
    language: str | None
    source_message_id: int
    content: bytes
    style: StyleChoice
    style_images: tuple[bytes, ...]  # the user's own style images, in the order of ``style.image_file_ids``
    settings: StyleSettings
    weight: float = 1.0  # how many ordinary jobs it counts as (engine.figures.weight)
    platform: str = field(kw_only=True)  # no default: a job never lands on a platform by omission
    guild_id: int | None = None  # Discord: the guild of the channel
    clip: dict[str, Any] | None = None  # a clip's order (bot.services.clips): ``content`` is a GIF or video
    # What asked for it on its platform, unique there (Telegram: the message or the button press): a job
    # made for it already means the platform repeated the request, and ``submit`` raises RepeatedRequest.
    request_key: str | None = None


@dataclass(frozen=True)
class Placement:
    """Where a queued job stands: its 1-based place in line and the seconds until it starts."""

    position: int
    eta_seconds: float | None


@dataclass(frozen=True)
class QueueOverview:
    """What ``/queue`` shows on any platform: the whole queue's counts and the asking user's jobs."""

    waiting: int
    running: int
    mine: tuple[tuple[JobRecord, Placement | None], ...]  # the user's active jobs; a placement if queued


class JobService:
    def __init__(
        self,
        db: Database,
        queue: JobQueue,
        *,
        jobs_dir: Path,
        limits: Limits,
        max_image_pixels: int,
        admins: Admins | None = None,
    ) -> None:
        self.db = db
        self.queue = queue
        self.jobs_dir = jobs_dir
        self.limits = limits
        self.admins = admins or Admins()
        self.max_image_pixels = max_image_pixels
        self.sketches: SketchService | None = None  # set by the runtime; tests may run without sketches
        # How a cancelled job's owner hears of it (the notifier, set by the runtime; it needs this service).
        self.announce_cancelled: Callable[[JobRecord], Awaitable[None]] | None = None
        self._announcing: set[asyncio.Task[None]] = set()

    async def submit(self, new: NewJob) -> tuple[JobRecord, Placement | None]:
        """Queue a job. Raises LimitReachedError, TooManyStylesError, or an ``engine.errors.ImageError``
        for a bad image. The limits are checked by the database in the step that adds the row, so
        photos sent at once cannot all slip under them; the platform's admins (``Admins``) have none,
        decided here so that no front end can forget it. Its sketch starts here too; an ``instant`` job is
        not queued, since its sketch is its result (``bot.services.sketches``), and has no placement.
        A ``request_key`` that made a job already raises ``RepeatedRequest`` (checked first, and again
        by the database as the row is added, so two handlings of one request at once make one job)."""
        await self.check_new(new.platform, new.request_key)
        await self.check_admitted(new.platform, new.user_id, group=group_of(new))
        check_blend(new.style)  # here, so no way of choosing a style (caption, preset, group) skips it
        await asyncio.to_thread(self._validate, new)
        folder = self.jobs_dir / uuid.uuid4().hex
        content_path, style_paths = await asyncio.to_thread(_store_inputs, folder, new)
        limits = self.limits
        exempt = self.admins.is_admin(new.user_id, platform=new.platform)
        try:
            job = await self.db.create_job(
                platform=new.platform,
                guild_id=new.guild_id,
                user_id=new.user_id,
                chat_id=new.chat_id,
                chat_type=new.chat_type,
                language_code=new.language,
                source_message_id=new.source_message_id,
                styles=list(new.style.refs),
                style_label=new.style.label,
                settings=settings_to_dict(new.settings),
                content_path=str(content_path),
                style_paths=[str(p) for p in style_paths],
                limits=None
                if exempt
                else JobLimits(limits.max_active, limits.max_per_hour, limits.max_queue),
                weight=new.weight,
                clip=new.clip,
                request_key=new.request_key,
            )
        except BaseException as err:
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(err, LimitExceededError):
                raise _refusal(err) from None
            if isinstance(err, RequestMadeError):
                raise RepeatedRequest(err.job) from None
            raise
        log.info(
            "job %d queued for user %d in chat %d: %s", job.id, job.user_id, job.chat_id, job.style_label
        )
        settled_by_sketch = is_instant(job) and job.clip is None  # a clip is painted by a worker
        if self.sketches is not None and job.clip is None:
            self.sketches.request(job)  # the preview, or for the instant tier the result itself
        if self.sketches is None or not settled_by_sketch:
            await self.queue.submit(job.id)
        return job, None if settled_by_sketch else (await self.placements()).get(job.id)

    async def check_new(self, platform: str, request_key: str | None) -> None:
        """``RepeatedRequest`` if the request made a job already (nothing to check without a key). Public
        so that a request costing work before its job exists (downloads) asks first."""
        if request_key is None:
            return
        made = await self.db.job_for_request(platform, request_key)
        if made is not None:
            raise RepeatedRequest(made)

    async def check_admitted(self, platform: str, user_id: int, *, group: int | None) -> None:
        """Moderation (``bot.services.moderation``), checked by ``submit`` where every job comes in: a
        person the bot's admins blocked is refused (``BlockedError``), and so is everyone in a group or
        server its admins switched off (``ChatOffError``; ``group`` as ``group_of`` gives it). Public so
        that a request costing work before its job exists (a clip's download and header) asks first."""
        if await self.db.is_blocked(platform, user_id):
            log.info("%s user %d is blocked: job refused", platform, user_id)
            raise BlockedError()
        if group is not None and not await self.db.is_chat_enabled(platform, group):
            raise ChatOffError()

    def _validate(self, new: NewJob) -> None:
        """The images' headers; a clip's own header was read by ``ClipService`` already."""
        images = new.style_images if new.clip is not None else (new.content, *new.style_images)
        validate_images(images, max_pixels=self.max_image_pixels)

    async def overview(self, user_id: int, *, platform: str) -> QueueOverview:
        """The queue as ``/queue`` shows it to one user (a user is ``(platform, user_id)``)."""
        active = await self.db.queued_and_running()
        placements = await self.placements() if active else {}
        waiting = sum(j.state == JobState.QUEUED for j in active)
        mine = tuple(
            (job, placements.get(job.id))
            for job in active
            if job.platform == platform and job.user_id == user_id
        )
        return QueueOverview(waiting, len(active) - waiting, mine)

    async def placements(self) -> dict[int, Placement]:
        """Every queued job's place in line and waiting time, in the order the queue will run them."""
        active = await self.db.queued_and_running()
        queued = [j for j in active if j.state == JobState.QUEUED]
        running = [j for j in active if j.state == JobState.RUNNING]
        typical = await self.db.typical_job_seconds()
        status = self.queue.status()
        workers = max(1, status.workers)
        remaining = [
            j.eta_seconds if j.eta_seconds is not None else (typical or 0.0) * j.weight for j in running
        ]
        order = fair_order(queued, running)
        durations = [
            (typical or DEFAULT_JOB_SECONDS.get(job.settings.get("quality", "normal"), 60.0)) * job.weight
            for job in order
        ]
        placements = {}
        for position, job in enumerate(order, start=1):
            # A worker painting batches of N is N places that free up together: the engine seconds of a
            # batched job (``typical``) are its batch's, so each place takes that long.
            eta = estimate_wait(
                position,
                workers=workers * status.batch_size(job.settings.get("quality", "normal")),
                typical_seconds=durations[position - 1],
                running_remaining=remaining,
                ahead=durations[: position - 1],
            )
            placements[job.id] = Placement(position, eta)
        return placements

    async def job(self, job_id: int) -> JobRecord | None:
        return await self.db.get_job(job_id)

    async def owned(self, job_id: int, user_id: int, *, platform: str) -> JobRecord:
        """The job a button names, if ``(platform, user_id)`` owns it (job ids are easy to guess, and the
        same number on two platforms is two people). Refused "button_expired" for no such job on this
        platform, "not_your_job" for someone else's."""
        job = await self.db.get_job(job_id)
        match ownership(job, user_id, platform=platform):
            case "unknown":
                raise Refused("button_expired")
            case "not_yours":
                raise Refused("not_your_job")
        assert job is not None
        return job

    async def cancel_owned(self, job_id: int, user_id: int, *, platform: str) -> JobRecord:
        """The Cancel button: only the job's owner; Refused "already_finished" when it had ended."""
        job = await self.owned(job_id, user_id, platform=platform)
        cancelled = await self.cancel(job.id)
        if cancelled is None:
            raise Refused("already_finished")
        return cancelled

    async def withdraw(self, job_id: int, user_id: int, *, platform: str) -> JobRecord:
        """The Cancel button, whole: ``cancel_owned``, then the job's status says it was cancelled.

        The announcement goes on in the background: it edits this status and every queued job's place,
        which may take longer than a button press may wait for its answer (Discord's 3 seconds)."""
        cancelled = await self.cancel_owned(job_id, user_id, platform=platform)
        task = asyncio.create_task(self._announce(cancelled), name=f"announce-cancel-{job_id}")
        self._announcing.add(task)
        task.add_done_callback(self._announced)
        return cancelled

    def _announced(self, task: asyncio.Task[None]) -> None:
        self._announcing.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("announcing a cancel failed (%s)", task.get_name(), exc_info=task.exception())

    async def close(self) -> None:
        """At shutdown: cancel announcements still under way (the front ends are closing)."""
        tasks = list(self._announcing)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def withdraw_latest(self, user_id: int, *, platform: str, everything: bool = False) -> int:
        """``/cancel`` (``/cancel all``), whole: ``cancel_latest``, each status saying so; how many."""
        cancelled = await self.cancel_latest(user_id, platform=platform, everything=everything)
        for job in cancelled:
            await self._announce(job)
        return len(cancelled)

    async def _announce(self, job: JobRecord) -> None:
        if self.announce_cancelled is not None:
            await self.announce_cancelled(job)

    async def record_status(
        self, job_id: int, message_id: int, *, chat_id: int | None = None
    ) -> JobRecord | None:
        """The job's status is (now) this message: remember it (progress edits it, a restart finds it) and
        return the job as it is now, which may have ended meanwhile. ``chat_id``: the chat the message
        is in, where message ids are per chat (Telegram): not remembered for a job moved from it since."""
        await self.db.set_status_message(job_id, message_id, chat_id=chat_id)
        return await self.db.get_job(job_id)

    async def cancel(self, job_id: int) -> JobRecord | None:
        """Cancel one job; None if it had already ended."""
        job = await self.queue.cancel(job_id)
        if job is not None:
            await self.discard_inputs(job)
        return job

    async def cancel_latest(
        self, user_id: int, *, platform: str, everything: bool = False
    ) -> list[JobRecord]:
        """Cancel the user's newest active job (or all of them)."""
        active = await self.db.active_jobs(user_id, platform=platform)
        targets = active if everything else active[-1:]
        cancelled = [job for job in [await self.cancel(j.id) for j in targets] if job is not None]
        return cancelled

    async def kept_inputs(self, job: JobRecord) -> tuple[bytes, tuple[bytes, ...]] | None:
        """A finished job's photo and own style images, while they are kept; None once they are gone."""
        try:
            return await asyncio.to_thread(_read_inputs, job)
        except OSError:
            return None

    async def discard_inputs(self, job: JobRecord) -> None:
        """A job that failed or was cancelled needs its stored photo no more. A finished one keeps it for
        RESULT_RETENTION_DAYS, so its owner can have it painted again (another style, a strip) without
        sending it again; the retention sweep removes it then."""
        if job.state == JobState.DONE:
            return
        folder = Path(job.content_path).parent
        if folder.parent == self.jobs_dir:
            await asyncio.to_thread(shutil.rmtree, folder, True)


def group_of(new: NewJob) -> int | None:
    """The group whose admins may switch the bot off for a job: a Telegram group's chat, a Discord
    server (a channel's guild); None in a private chat or a DM."""
    if new.guild_id is not None:
        return new.guild_id
    return None if new.chat_type == "private" else new.chat_id


def _refusal(err: LimitExceededError) -> LimitReachedError:
    if err.kind == "hourly" and err.oldest is not None:
        retry = (err.oldest + HOUR - datetime.now(UTC)).total_seconds()
        return LimitReachedError("hourly", count=err.count, retry_after=max(retry, 60.0))
    return LimitReachedError(err.kind, count=err.count)


def _read_inputs(job: JobRecord) -> tuple[bytes, tuple[bytes, ...]]:
    return Path(job.content_path).read_bytes(), tuple(Path(p).read_bytes() for p in job.style_paths)


def _store_inputs(folder: Path, new: NewJob) -> tuple[Path, list[Path]]:
    folder.mkdir(parents=True, exist_ok=True)
    content = folder / "content"
    content.write_bytes(new.content)
    styles = []
    for index, data in enumerate(new.style_images):
        path = folder / f"style_{index}"
        path.write_bytes(data)
        styles.append(path)
    return content, styles

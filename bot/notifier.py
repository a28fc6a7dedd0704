"""Tells users what happens to their jobs: the queue's events routed to the platform each job came from.

The queue calls these methods in order per job and off its own critical path (``bot.queue.events``), so
they may take the time a platform takes. The rules live here (what a state says, retry notices, when a
result counts as delivered, sending again what was not, giving up what never can be); how each platform
shows a status or sends a picture lives in its ``Frontend`` (``bot.frontend``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path

from bot import replies
from bot.db import SKETCH_WORKER, Database, JobRecord, JobState
from bot.frontend import Frontend, Undeliverable
from bot.health import Metrics
from bot.queue.base import JobResult
from bot.queue.ledger import who
from bot.services.jobs import JobService, Placement
from bot.services.results import result_path
from bot.texts import language_for, text
from engine.protocol import Progress

log = logging.getLogger(__name__)

REDELIVERY_WINDOW = timedelta(days=1)
REDELIVERY_INTERVAL = 300.0  # seconds between looks for results that could not be sent yet


class Delivery(StrEnum):
    """What became of one try at sending a result."""

    SENT = "sent"  # the platform confirmed it: the job is delivered
    LATER = "later"  # not now (the platform failed for a while, or a send is already under way)
    GIVEN_UP = "given_up"  # never: the platform said the owner cannot be reached
    SETTLED = "settled"  # nothing to do: another send delivered it, or gave it up, since the caller looked


class Notifier:
    """The bot's ``JobEvents``, for every platform."""

    def __init__(
        self,
        db: Database,
        jobs: JobService,
        metrics: Metrics,
        *,
        results_dir: Path,
        sketch_offer_seconds: float | None = None,
    ) -> None:
        self.db = db
        self.jobs = jobs
        self.frontends: dict[str, Frontend] = {}  # by platform; each front end adds itself at start-up
        self.metrics = metrics
        self.results_dir = results_dir
        self.counts = (0, 0)  # (queued, running), for /healthz and /metrics
        self.sketch_offer_seconds = sketch_offer_seconds  # "Keep the sketch" from this wait on; None: never
        self._notes: dict[int, str] = {}  # a retry notice, kept on the job's status until the job ends
        self._shown: dict[int, str] = {}  # the latest text of each active job's status
        self._sketched: set[int] = set()  # active jobs whose status shows their sketch
        self._offered: set[int] = set()  # queued jobs whose status offers to keep the sketch
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
        language = language_for(job.language_code)
        text = replies.running(language, job.style_label, progress, frames=job.kind == "clip")
        await self._show(job, text, preview=progress.preview)

    async def job_finished(self, job_id: int, result: JobResult) -> None:
        """The painting is already safe in ``result.path`` (the queue kept it before marking the job
        done); until the platform confirms a send, the job counts as undelivered and is sent again later."""
        job = await self.db.get_job(job_id)
        if job is None or job.state != JobState.DONE:
            return
        self._forget(job.id)
        delivery = await self._send_result(job, result.path, result.notes)
        if result.animation is not None and delivery != Delivery.GIVEN_UP:  # the painting as it formed
            await self._frontend(job).deliver_animation(job, result.animation)
        # A job settled with its sketch counts as done, but its half second is no painting's engine time.
        self.metrics.ended("done", None if job.worker == SKETCH_WORKER else job.engine_seconds)
        await self.jobs.discard_inputs(job)
        log.info("job %d done for user %d in %.1f s", job.id, job.user_id, result.seconds)

    async def job_failed(self, job_id: int, code: str, message: str) -> None:
        job = await self.db.get_job(job_id)
        if job is None:
            return
        self._forget(job.id)
        log.warning("job %d for user %d failed: %s (%s)", job.id, job.user_id, code, message)
        text = replies.error(language_for(job.language_code), code)
        if job.status_message_id is not None:
            await self._frontend(job).show_status(job, text, final=True)
        else:
            await self._frontend(job).tell(job, text)
        self.metrics.ended("failed")
        await self.jobs.discard_inputs(job)

    async def job_retrying(self, job_id: int, reason: str) -> None:
        job = await self.db.get_job(job_id)
        if job is None:
            return
        log.warning("job %d for user %d is retried: %s", job.id, job.user_id, reason)
        language = language_for(job.language_code)
        self._notes[job.id] = replies.retrying(language, reason)
        placement = (await self.jobs.placements()).get(job.id)
        await self._show(job, replies.queued(language, placement), placement=placement)

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
                placement = placements[job.id]
                await self._show(
                    job, replies.queued(language_for(job.language_code), placement), placement=placement
                )

    async def cancelled(self, job: JobRecord) -> None:
        """The user cancelled: the status message says so (and loses its button)."""
        self._forget(job.id)
        language = language_for(job.language_code)
        await self._frontend(job).show_status(job, text(language, "cancelled"), final=True)
        self.metrics.ended("cancelled")
        await self.queue_changed()

    async def sketch_ready(self, job_id: int, sketch: bytes) -> None:
        """The job's sketch (``bot.services.sketches``): on its status at once, under what the status says
        now, with "Keep the sketch" while the job waits long enough. Later texts keep the picture."""
        job = await self.db.get_job(job_id)
        if job is None or not job.is_active:
            return
        placements = await self.jobs.placements() if job.state == JobState.QUEUED else {}
        # Outside the job's own line of events: a cancel or its end may have landed during the awaits, and a
        # stale status must not come back over theirs. Nothing awaits between this look and the show.
        job = await self.db.get_job(job_id)
        if job is None or not job.is_active:
            return
        self._sketched.add(job.id)
        language = language_for(job.language_code)
        if job.state == JobState.QUEUED:
            placement = placements.get(job.id)
            await self._show(job, replies.queued(language, placement), placement=placement, sketch=sketch)
        else:
            message = self._shown.get(job.id) or replies.queued(language, None)
            await self._show(job, message, sketch=sketch)

    def _offers_keep(self, job: JobRecord, placement: Placement | None) -> bool:
        """A queued job with a sketch offers to keep it once its wait is long; once offered, while queued."""
        if job.id not in self._sketched or placement is None or self.sketch_offer_seconds is None:
            return False
        eta = placement.eta_seconds
        if job.id in self._offered or (eta is not None and eta >= self.sketch_offer_seconds):
            self._offered.add(job.id)
            return True
        return False

    async def _show(
        self,
        job: JobRecord,
        message: str,
        *,
        preview: bytes | None = None,
        placement: Placement | None = None,
        sketch: bytes | None = None,
    ) -> None:
        """An active job's status: under any retry notice, with the Cancel button (and "Keep the sketch"
        while queued with an offer). A ``sketch`` is shown at once, past the platform's throttle."""
        self._shown[job.id] = message
        if placement is None:
            self._offered.discard(job.id)  # running: nothing to keep any more
        keep = self._offers_keep(job, placement)
        if note := self._notes.get(job.id):
            message = f"{note}\n{message}"
        await self._frontend(job).show_status(
            job, message, preview=preview or sketch, now=sketch is not None, keep=keep
        )

    def _forget(self, job_id: int) -> None:
        for memo in (self._notes, self._shown):
            memo.pop(job_id, None)
        self._sketched.discard(job_id)
        self._offered.discard(job_id)

    def _frontend(self, job: JobRecord) -> Frontend:
        """The job's platform; one not running in this process (its token removed) hears nothing, and its
        results wait for the next run that has it."""
        return self.frontends.get(job.platform) or _Absent(job.platform)

    # -- delivery -------------------------------------------------------------------------------

    async def deliver(self, job: JobRecord, path: Path, notes: tuple[str, ...] = ()) -> Delivery:
        """Send the painting through the job's platform, never twice at once. Only a confirmed send marks
        the job delivered (``result_file_id``); a platform that says it never can be gives the result up
        (``_give_up``); anything else leaves it for ``redeliver``."""
        if job.id in self._delivering:
            return Delivery.LATER
        self._delivering.add(job.id)
        try:
            # The caller's record may be stale (redelivery works through a list it read minutes ago, while
            # the job's own send was still retrying): only the database says whether it is still to send.
            current = await self.db.get_job(job.id)
            if (
                current is None
                or current.result_file_id is not None
                or current.delivery_given_up_at is not None
            ):
                return Delivery.SETTLED
            try:
                sent = await self._frontend(job).deliver(job, path, notes)
            except Undeliverable as error:
                await self._give_up(job, error.reason)
                return Delivery.GIVEN_UP
            if sent is None:
                return Delivery.LATER
            await self.db.record_result_file(job.id, sent)
            return Delivery.SENT
        finally:
            self._delivering.discard(job.id)

    async def _give_up(self, job: JobRecord, reason: str) -> None:
        """Marked in the database so that no later run sends it again; counted and logged the first time
        only. The painting stays in the results folder until the retention sweep takes it."""
        if await self.db.give_up_delivery(job.id, reason):
            self.metrics.given_up(job.platform)
            log.warning("%s: result given up: %s", who(job), reason)

    async def _send_result(self, job: JobRecord, path: Path, notes: tuple[str, ...] = ()) -> Delivery:
        """The painting, then its status goes (Telegram) or says done (Discord): only once the platform
        confirmed the send. Until then the status says the painting waits to be sent, without a button.
        A result given up leaves the status as it is: the platform just said nobody can see it."""
        delivery = await self.deliver(job, path, notes)
        if delivery == Delivery.SENT:
            await self._frontend(job).remove_status(job)
        elif delivery == Delivery.LATER and job.status_message_id is not None:
            pending = text(language_for(job.language_code), "result_pending")
            await self._frontend(job).show_status(job, pending, final=True)
        return delivery

    def result_path(self, job: JobRecord) -> Path | None:
        """The job's kept result (``bot.services.results``), for the front ends sending it again."""
        return result_path(self.results_dir, job)

    async def redeliver(self, *, settled: timedelta = timedelta(0)) -> None:
        """Results that were painted but not confirmed sent (the bot stopped while sending, the platform
        was unreachable) go out now; ``settled``: only those finished at least that long ago (a result that
        just finished is still on its way through ``job_finished``)."""
        now = datetime.now(UTC)
        for job in await self.db.undelivered_jobs(now - REDELIVERY_WINDOW):
            if self._closing.is_set():
                return
            if job.finished_at is not None and job.finished_at > now - settled:
                continue
            path = result_path(self.results_dir, job)
            if path is not None and job.id not in self._delivering:
                log.info("%s: delivering a result that was not sent yet", who(job))
                await self._send_result(job, path)

    async def redeliver_forever(self, interval: float | None = None) -> None:
        """``redeliver`` everything now (at start-up), then every ``interval`` seconds (default
        ``REDELIVERY_INTERVAL``, read at the call: a benchmark shortens it) what has waited at least that
        long, until cancelled."""
        interval = REDELIVERY_INTERVAL if interval is None else interval
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


class _Absent:
    """The front end of a platform this process does not run."""

    def __init__(self, platform: str) -> None:
        self.platform = platform

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
        log.debug("job %d: no %s front end runs here; status not shown", job.id, self.platform)

    async def remove_status(self, job: JobRecord) -> None:
        return None

    async def deliver(self, job: JobRecord, path: Path, notes: tuple[str, ...]) -> str | None:
        log.warning("job %d: no %s front end runs here; the result waits in %s", job.id, self.platform, path)
        return None

    async def tell(self, job: JobRecord, text: str) -> None:
        return None

    async def deliver_animation(self, job: JobRecord, path: Path) -> None:
        return None

    async def close(self) -> None:
        return None

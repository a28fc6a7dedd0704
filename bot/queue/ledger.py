"""Every state change of a job, and the event that tells the bot: one place, for both queue back ends.

A job's row moves only through here::

    queued ──start──▶ running ──finish──▶ done      (only once its painting is safe on disk)
      ▲ ▲                │ ─────fail───▶ failed
      │ └────lose────────┤               (its worker died or hung: an attempt used; after the last one,
      │                  │                failed with ``worker_lost``)
      └─────release──────┘               (the bot or the worker was stopped: the attempt is given back)
    queued or running ──cancel──▶ cancelled
    at start-up (``recover``): rows a crashed bot left ``running`` are lost, as above

Each method makes one guarded transition in ``bot.db`` (a row that meanwhile moved on is left as it is,
and the method says so by its return value), then sends the matching ``JobEvents`` call through
``EventLines``. The back ends decide only *when*: which worker runs what, when a worker counts as lost, how
tickets and reports travel. Both claim a job at the same moment: when its worker reports ``started``.
The bot's own sketch process can claim a queued job too (instant, "Keep the sketch": ``JobQueue.claim``,
worker ``"sketch"``); its claims count as held when a back end reconciles, and ``give_back`` and its
``finish`` act only while the row still names it.

What comes back is the ledger's too. ``finish`` checks the worker's report (``wire.ResultReport``), keeps
the painting as ``<results>/<job id>.<suffix of a known format>``, whatever the report says, written and
fsync'd, or moved from the file the bot itself told the worker to write, and only then marks the job
``done``. A painting that cannot be kept (a full disk) fails the job with ``result_unsaved``; one that is
not what its report claims, with ``bad_result``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import errno
import functools
import logging
import os
import time
import uuid
from collections.abc import Callable, Collection, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.db import SKETCH_WORKER, Database, JobRecord, JobState
from bot.queue.base import RESTART_REASON, JobEvents, JobResult
from bot.queue.events import EventLines
from engine.protocol import Progress
from engine.workers.wire import (
    BadReportError,
    ImageInput,
    InputLostError,
    ResultReport,
    Style,
    Ticket,
    check_animation,
    check_image,
    staged_animation,
    sync_folder,
    write_durably,
)

log = logging.getLogger(__name__)

WORKER_LOST = "worker_lost"  # the failure code of a job that lost its worker on every attempt
BAD_RESULT = "bad_result"  # a worker's result that is not what it claims to be
RESULT_UNSAVED = "result_unsaved"  # the painting could not be written to the results folder
ORPHANED = "no worker holds the job any more"  # the ``lose`` reason of ``reconcile``
RECONCILE_GRACE = 30.0  # seconds a running job may go unheld before ``reconcile`` counts it lost


def ticket_for(job: JobRecord, *, by_reference: bool) -> Ticket:
    """The job's ticket for a worker. By reference (a worker on this machine): the paths of its stored
    inputs, and a file beside them for the painting. By value: the images read in (``InputLostError``)."""
    try:
        styles = tuple(_style(ref, job.style_paths) for ref in job.styles)
    except (IndexError, KeyError, TypeError, ValueError) as err:
        raise InputLostError(f"job {job.id}: its style images are missing ({err!r})") from err
    ticket = Ticket(
        job_id=job.id,
        content=ImageInput(path=job.content_path),
        styles=styles,
        settings=dict(job.settings),
        result_path=str(Path(job.content_path).parent / f".result-{job.id}-{uuid.uuid4().hex[:8]}"),
        alone=job.attempts > 0,
        clip=None if job.clip is None else dict(job.clip),
    )
    return ticket if by_reference else dataclasses.replace(ticket.by_value(), result_path=None)


def who(record: JobRecord) -> str:
    """How logs name a job: with its user, never a token or a chat's content."""
    return f"job {record.id} ({record.platform} user {record.user_id})"


def attempt(record: JobRecord) -> str:
    return f"attempt {record.attempts} of {record.max_attempts}"


def _style(ref: dict, paths: list[str]) -> Style:
    weight = float(ref.get("weight", 1.0))
    if ref.get("preset"):
        return Style(weight, preset=str(ref["preset"]))
    return Style(weight, image=ImageInput(path=paths[int(ref["image"])]))


class Ledger:
    """The only writer of job states once a job is queued; see the module docstring."""

    def __init__(
        self, db: Database, events: JobEvents, *, results_dir: Path, progress_write_interval: float = 1.0
    ) -> None:
        self._db = db
        self._lines = EventLines(events)
        self.results_dir = results_dir
        self.progress_write_interval = progress_write_interval
        self._written: dict[int, float] = {}  # job id → when its progress was last stored
        self._ending: collections.Counter[int] = collections.Counter()  # jobs a transition is ending now

    async def close(self, grace: float) -> None:
        """Deliver the events still pending (for at most ``grace`` seconds)."""
        await self._lines.close(grace)

    def queue_changed(self) -> None:
        """Queued jobs may have moved (a submit, a worker freed): the bot shows their new places."""
        self._lines.send(None, "queue_changed")

    @contextlib.contextmanager
    def _ends(self, job_id: int) -> Iterator[None]:
        """While a transition ends a job, ``reconcile`` leaves its row alone (the back end no longer holds
        the job, and the row is not written yet)."""
        self._ending[job_id] += 1
        try:
            yield
        finally:
            self._ending[job_id] -= 1
            if not self._ending[job_id]:
                del self._ending[job_id]

    async def reconcile(self, held: Collection[int], *, grace: float | None = None) -> list[int]:
        """Rows ``running`` that no worker holds (``held``: every job the back end has handed out) and no
        transition is ending are lost, as if their worker had died: a report whose transition failed (a
        database error while finishing) must not leave a job running for ever. Only rows started at
        least ``grace`` seconds ago, so a job being handed out is never mistaken. Returns the ids lost."""
        cutoff = datetime.now(UTC) - timedelta(seconds=RECONCILE_GRACE if grace is None else grace)
        orphans = [
            job.id
            for job in await self._db.queued_and_running()
            if job.state is JobState.RUNNING
            and job.id not in held
            and job.id not in self._ending
            and job.started_at is not None
            and job.started_at < cutoff
        ]
        for job_id in orphans:
            await self.lose(job_id, ORPHANED)
        return orphans

    # ----- transitions -----

    async def recover(self) -> list[JobRecord]:
        """At start-up: jobs a crashed bot left ``running`` are queued again, an attempt used (the job may
        be what crashed it), or failed after their last attempt. Returns them as they were.

        Jobs the last run released when it stopped are queued already; their owners hear now that the
        bot restarted (at the stop itself, Telegram may no longer have been reachable)."""
        left = await self._db.jobs_to_recover()
        for record in await self._db.queued_and_running():
            if record.state is JobState.QUEUED and record.error_message == RESTART_REASON:
                self._lines.send(record.id, "job_retrying", record.id, RESTART_REASON)
        for record in left:
            log.warning(
                "%s was running on %s when the bot died (%s)", who(record), record.worker, attempt(record)
            )
            await self._retry_or_fail(record, RESTART_REASON)
        return left

    async def start(self, job_id: int, worker: str) -> JobRecord | None:
        """Its worker began the job: queued → running, counting an attempt. ``None``: the job is no longer
        queued (cancelled meanwhile), and its work is for nobody."""
        record = await self._db.claim_job(job_id, worker)
        if record is None:
            log.info("job %d: not started on %s: it changed meanwhile", job_id, worker)
            return None
        log.info("%s on %s: started (%s)", who(record), worker, attempt(record))
        self._lines.send(job_id, "job_started", job_id)
        self.queue_changed()
        return record

    async def progress(self, job_id: int, progress: Progress) -> bool:
        """Store the progress (at most every ``progress_write_interval``) and show it. ``False``: the job
        is no longer running (cancelled behind the queue's back), and its work should stop."""
        now = time.monotonic()
        if now - self._written.get(job_id, float("-inf")) >= self.progress_write_interval:
            self._written[job_id] = now
            if not await self._db.record_progress(job_id, progress.fraction, progress.eta):
                log.warning("job %d: no longer running; its work should stop", job_id)
                return False
        self._lines.send(job_id, "job_progress", job_id, progress)
        return True

    async def finish(
        self, job_id: int, report: ResultReport, *, staged: Path | None = None, worker: str | None = None
    ) -> bool:
        """The worker finished: keep the painting (``report.image``, or the file ``staged`` that the bot
        told the worker to write), then running → done. ``False`` when the job did not end ``done``.
        ``worker``: only while the row still names it (the sketch process's result, never over a job a
        worker took meanwhile)."""
        with self._ends(job_id):
            self._written.pop(job_id, None)
            record = await self._db.get_job(job_id)
            state = f"{record.state.value} on {record.worker}" if record else "gone"
            if record is None or record.state is not JobState.RUNNING or worker not in (None, record.worker):
                log.info("job %d: result of %s dropped, the job is %s", job_id, worker, state)
                discard(staged)
                return False
            try:
                path = await asyncio.to_thread(self._keep, job_id, report, staged)
            except BadReportError as err:
                discard(staged)
                await self.fail(job_id, BAD_RESULT, f"the worker's result was refused: {err}")
                return False
            except OSError as err:
                discard(staged)
                log.error("job %d: the painting could not be saved in %s: %s", job_id, self.results_dir, err)
                await self.fail(job_id, RESULT_UNSAVED, f"the painting could not be saved: {err}")
                return False
            done = await self._db.finish_job(
                job_id, width=report.width, height=report.height, engine_seconds=report.seconds, worker=worker
            )
            if done is None:  # cancelled (or taken by another worker) while the file was written
                log.info("job %d: result dropped, the job is no longer running", job_id)
                discard(path)
                return False
            log.info("%s: done in %.1f s, kept as %s", who(done), report.seconds, path)
            result = JobResult(
                path,
                report.format,
                report.width,
                report.height,
                report.seconds,
                report.notes,
                animation=path.with_suffix(".gif") if report.animated else None,
            )
            self._lines.send(job_id, "job_finished", job_id, result)
            self.queue_changed()
            return True

    async def fail(self, job_id: int, code: str, message: str) -> bool:
        """queued or running → failed, for a reason the job itself gave (a bad photo, a lost input)."""
        with self._ends(job_id):
            self._written.pop(job_id, None)
            record = await self._db.fail_job(job_id, code, message)
            if record is None:
                log.info("job %d: failure (%s) dropped, the job is no longer active", job_id, code)
                return False
            log.warning("%s: failed: %s (%s)", who(record), code, message)
            self._lines.send(job_id, "job_failed", job_id, code, message)
            self.queue_changed()
            return True

    async def lose(self, job_id: int, reason: str) -> bool:
        """Its worker died, hung or broke its device: queue the job again while it has attempts left,
        else fail it (``worker_lost``). ``True`` when it is queued again."""
        with self._ends(job_id):
            self._written.pop(job_id, None)
            record = await self._db.get_job(job_id)
            if record is None or record.state is not JobState.RUNNING:
                log.info("job %d: not retried, it is %s", job_id, record.state.value if record else "gone")
                return False
            return await self._retry_or_fail(record, reason)

    async def release(self, job_id: int, reason: str) -> bool:
        """The bot or the job's worker is stopping: running → queued with the attempt given back, since
        nothing went wrong with the job. ``True`` when it is queued again."""
        with self._ends(job_id):
            self._written.pop(job_id, None)
            record = await self._db.requeue_job(job_id, reason, give_back_attempt=True)
            if record is None:
                return False
            log.info("%s: back in the queue: %s", who(record), reason)
            self._lines.send(job_id, "job_retrying", job_id, reason)
            self.queue_changed()
            return True

    async def give_back(self, job_id: int, reason: str) -> bool:
        """running → queued with the attempt given back, quietly: the bot's own sketch process claimed the
        job and could not make it (``JobQueue.unclaim``), so nothing the user should hear about. Only while
        the sketch process still holds it (a job a worker took meanwhile is the worker's)."""
        with self._ends(job_id):
            record = await self._db.requeue_job(job_id, reason, give_back_attempt=True, worker=SKETCH_WORKER)
            if record is None:
                return False
            log.info("%s: back in the queue for a worker: %s", who(record), reason)
            self.queue_changed()
            return True

    async def cancel(self, job_id: int) -> JobRecord | None:
        """queued or running → cancelled; ``None`` when the job had already ended."""
        self._written.pop(job_id, None)
        record = await self._db.cancel_job(job_id)
        if record is not None:
            log.info("%s: cancelled", who(record))
            self.queue_changed()
        return record

    async def _retry_or_fail(self, record: JobRecord, reason: str) -> bool:
        where = f"{who(record)} on {record.worker}"
        if record.attempts < record.max_attempts:
            if await self._db.requeue_job(record.id, reason) is None:
                return False
            log.warning("%s: queued again after attempt %d: %s", where, record.attempts, reason)
            self._lines.send(record.id, "job_retrying", record.id, reason)
            self.queue_changed()
            return True
        log.error("%s: giving up after %d attempts: %s", where, record.attempts, reason)
        await self.fail(record.id, WORKER_LOST, reason)
        return False

    # ----- the painting -----

    def _keep(self, job_id: int, report: ResultReport, staged: Path | None) -> Path:
        """Put the painting where the bot keeps results, durably; the name comes from the job id and the
        (checked) format only. An animation goes first, beside it as ``<job id>.gif``."""
        if report.animated:
            animation = None if staged is None else staged_animation(staged)
            gif = self.results_dir / f"{job_id}.gif"
            keep_file(gif, report.animation, animation, check_animation, "an animation")
        final = self.results_dir / f"{job_id}.{report.suffix}"
        keep_file(final, report.image, staged, functools.partial(check_image, report.format), "a painting")
        return final


def keep_file(
    final: Path, data: bytes | None, source: Path | None, check: Callable[[bytes, int], None], what: str
) -> None:
    """``data`` (a result by value) written, or the file ``source`` moved, to ``final``; either is checked
    first by its head and size (``BadReportError``)."""
    if data is not None:
        check(data[:16], len(data))
        write_durably(final, data)
        return
    try:
        if source is None:
            raise FileNotFoundError
        with source.open("rb") as file:
            check(file.read(16), os.fstat(file.fileno()).st_size)
    except FileNotFoundError:
        raise BadReportError(f"the worker reported {what} it did not write") from None
    move_durably(source, final)


def move_durably(source: Path, target: Path) -> None:
    """Rename ``source`` to ``target`` and make it last (across file systems: copy, then remove)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(source, target)
    except OSError as err:
        if err.errno != errno.EXDEV:
            raise
        write_durably(target, source.read_bytes())
        source.unlink()
    sync_folder(target.parent)


def discard(path: Path | None) -> None:
    """Remove a file that is no longer wanted (a painting nobody will get), if it is there."""
    if path is not None:
        with contextlib.suppress(OSError):
            path.unlink()

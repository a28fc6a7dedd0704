"""The bookkeeping of jobs in flight, written once for both transports, and the one loop that runs it.

A transport subclasses ``Dispatcher`` and declares only what truly differs: who cuts batches (the bot for
its local processes, the Celery worker for itself), tickets by reference or by value, liveness by process
exit or by heartbeat, and its link to the workers (``embedded``: pipes to processes on this machine;
``celery_queue``: a broker). The rules (reports → ledger, the stall clock, reconcile, release at stop) are
here, so the two cannot disagree.

Everything that changes the queue's state (the workers' messages, the end of a pipe, a broker connection
going and coming back, a cancel, the clocks) goes through one inbox handled by one task, in order: a late
result, a death and a new assignment are never handled out of order or half-way through one another.
Threads (a pipe's reader, the broker's listener) only post to the inbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from abc import abstractmethod
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.db import Database, JobRecord, JobState
from bot.queue.base import RESTART_REASON, JobEvents, JobQueue
from bot.queue.ledger import BAD_RESULT, Ledger, discard, ticket_for, who
from engine.errors import Cancelled
from engine.workers.wire import (
    DEVICE_ERROR,
    BadReportError,
    Done,
    Failed,
    InputLostError,
    JobReport,
    Progressed,
    ResultReport,
    Started,
    Ticket,
)

log = logging.getLogger(__name__)

STOP_TIMEOUT = 10.0  # for stop(): the loop to end, an idle worker to exit, pending events to be delivered
TICK_SECONDS = 0.5  # how often the clocks (hellos, stalls, heartbeats, back-off) are looked at
BACKLOG_LIMIT = 5.0  # the clocks wait for the inbox to be handled, but never longer than this
DISPATCH_TICK = 5.0  # the queue is looked at at least this often, woken or not


@dataclass(frozen=True)
class _Cancel:
    job_id: int


class _Signal(enum.Enum):
    WAKE = "wake"
    STOP = "stop"


@dataclass
class Held:
    """A job handed to a worker (or on its way to one): the queue's record of a job in flight."""

    record: JobRecord  # the row as it was dispatched (as it was claimed, once started)
    ticket: Ticket | None = None
    task_id: str = ""  # the broker's task id (Celery); "" on the pipe
    sent_at: float = 0.0  # monotonic time it was handed over
    worker: str | None = None  # set once the worker reported ``started`` and the ledger claimed the row
    last_heard: float = 0.0  # the stall clock: its worker's last sign of life about it
    cancel_at: float | None = None  # when its worker was asked to stop it

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def started(self) -> bool:
        return self.worker is not None

    @property
    def staged(self) -> Path | None:
        """The file its worker paints into (tickets by reference), else ``None``."""
        if self.ticket is None or self.ticket.result_path is None:
            return None
        return Path(self.ticket.result_path)

    def __str__(self) -> str:
        return who(self.record)


class Dispatcher(JobQueue):
    """What both transports share; see the module docstring. Subclasses implement the hooks below."""

    backend = "?"  # QueueStatus.backend and log lines

    def __init__(
        self, db: Database, *, results_dir: Path, stall_seconds: float, progress_write_interval: float
    ) -> None:
        super().__init__()
        self._db = db
        self._results_dir = results_dir
        self.stall_seconds = stall_seconds
        self.progress_write_interval = progress_write_interval
        self._ledger: Ledger | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._dispatch_wanted = True
        self._started = False
        self._stopping = False

    # ----- the transport's part -----

    @abstractmethod
    async def _begin(self) -> None:
        """Start the workers (or the link to them) once the ledger is built, before the loop runs."""

    @abstractmethod
    async def _end(self) -> None:
        """Stop the workers (or the link) once the loop ended; what they held goes back (``_release``)."""

    @abstractmethod
    async def _handle(self, item: Any) -> None:
        """An item a thread posted with ``_tell`` (a worker's message, the broker link going up or down)."""

    @abstractmethod
    async def _on_cancel(self, job_id: int) -> None:
        """The job was cancelled: stop its work wherever it is (if anywhere)."""

    @abstractmethod
    async def _check_clocks(self, now: float) -> None:
        """Judge the workers by the time that passed: silent ones are hung or gone."""

    @abstractmethod
    def _held_ids(self) -> set[int]:
        """Every job the transport holds now (handed to a worker, started or not)."""

    @abstractmethod
    async def _dispatch(self) -> None:
        """Hand queued jobs to free workers."""

    @abstractmethod
    async def _stop_running(self, held: Held) -> None:
        """Tell the job's worker to stop it (it was cancelled, or taken, behind the worker's back)."""

    @abstractmethod
    def _ended(self, held: Held) -> None:
        """The job's worker reported its end: it no longer holds it."""

    @abstractmethod
    async def _device_failed(self, held: Held, message: str) -> None:
        """The job's worker broke its device (a CUDA context does not recover): the worker is lost."""

    # ----- the JobQueue interface -----

    @property
    def ledger(self) -> Ledger:
        assert self._ledger is not None, "the queue is not started"
        return self._ledger

    async def start(self, events: JobEvents) -> None:
        if self._started:
            raise RuntimeError(f"a {type(self).__name__} is started once")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._ledger = Ledger(
            self._db,
            events,
            results_dir=self._results_dir,
            progress_write_interval=self.progress_write_interval,
        )
        await self._begin()
        self._task = asyncio.create_task(self._serve(), name=f"{self.backend}-queue")

    async def stop(self) -> None:
        """The loop ends first; the reports already in the inbox are handled (a result that arrived is
        kept, not released); then the transport stops its workers."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        log.info("%s queue: stopping", self.backend)
        if self._task is not None:
            self._inbox.put_nowait(_Signal.STOP)
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self._task
            except TimeoutError:
                log.error("%s queue: the queue task did not stop in time; cancelling it", self.backend)
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        while not self._inbox.empty():
            item = self._inbox.get_nowait()
            if not isinstance(item, _Signal | _Cancel):
                with contextlib.suppress(Exception):
                    await self._handle(item)
        await self._end()
        if self._ledger is not None:
            await self._ledger.close(STOP_TIMEOUT)
        log.info("%s queue: stopped", self.backend)

    async def submit(self, job_id: int) -> None:
        log.debug("job %d: submitted", job_id)
        self._wake()
        self.ledger.queue_changed()  # a newcomer may go ahead of a busy user's jobs

    async def cancel(self, job_id: int) -> JobRecord | None:
        record = await self.ledger.cancel(job_id)
        if record is not None:
            self._inbox.put_nowait(_Cancel(job_id))
        self._wake()
        return record

    # ----- the loop -----

    def _tell(self, item: Any) -> None:
        """Put an item in the inbox from any thread; raises ``RuntimeError`` once the event loop is closed."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._inbox.put_nowait, item)

    def _wake(self) -> None:
        """Dispatch soon (a job was submitted, a worker became free, a job was retried)."""
        self._dispatch_wanted = True
        self._inbox.put_nowait(_Signal.WAKE)

    async def _serve(self) -> None:
        """The queue's one task: handle the inbox in order; once it is caught up (or after
        ``BACKLOG_LIMIT`` seconds of backlog), watch the clocks and dispatch. Clocks are read after the
        backlog, so messages that waited in the inbox (a busy event loop) never make a worker look silent."""
        next_dispatch = last_check = 0.0
        while True:
            item: Any = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_SECONDS):
                    item = await self._inbox.get()
            if item is _Signal.STOP:
                return
            try:
                if isinstance(item, _Cancel):
                    await self._on_cancel(item.job_id)
                elif item is not None and item is not _Signal.WAKE:
                    await self._handle(item)
                now = time.monotonic()
                if not self._inbox.empty() and now < last_check + BACKLOG_LIMIT:
                    continue
                last_check = now
                await self._check_clocks(now)
                if self._dispatch_wanted or now >= next_dispatch:
                    self._dispatch_wanted = False
                    next_dispatch = now + DISPATCH_TICK
                    await self._tick()
            except Exception:
                log.exception("%s queue: error while handling %r; carrying on", self.backend, item)

    async def _tick(self) -> None:
        """Dispatch, then let the ledger find the rows nobody holds (``Ledger.reconcile``)."""
        await self._dispatch()
        await self.ledger.reconcile(self._held_ids() | self.sketch_claims)

    # ----- shared bookkeeping -----

    async def _active(self, held: Collection[int]) -> tuple[list[JobRecord], list[JobRecord]]:
        """(queued, running) for ``fair_order``: the jobs the transport holds count as running (they are
        on a worker or on their way to one)."""
        active = await self._db.queued_and_running()
        queued = [j for j in active if j.state is JobState.QUEUED and j.id not in held]
        running = [j for j in active if j.state is JobState.RUNNING or j.id in held]
        return queued, running

    async def _ticket(self, record: JobRecord, *, by_reference: bool) -> Ticket | None:
        """The job's ticket; ``None`` when its inputs are gone (the job failed with ``input_lost``)."""
        try:
            if by_reference:  # no file is read
                return ticket_for(record, by_reference=True)
            return await asyncio.to_thread(ticket_for, record, by_reference=False)
        except InputLostError as err:
            await self.ledger.fail(record.id, err.code, str(err))
            return None

    def _heard(self, jobs: Iterable[Held]) -> None:
        """A worker's sign of life: every job it holds is alive (a batch's jobs the engine paints one
        after the other are waiting, not hung)."""
        now = time.monotonic()
        for held in jobs:
            held.last_heard = now

    def _stall_reason(self) -> str:
        return f"the worker sent nothing for {self.stall_seconds:g} s (hung)"

    # ----- reports → the ledger -----

    async def _on_report(self, held: Held, report: JobReport, worker: str) -> None:
        """A report from the worker that holds the job (the transport checked that much)."""
        if isinstance(report, Started):  # the ledger claims the row
            if held.started or held.cancel_at is not None:
                return
            record = await self.ledger.start(held.id, worker)
            if record is None:  # taken by the sketch process, or cancelled, before it started
                await self._stop_running(held)  # it must not paint
            else:
                held.record, held.worker, held.last_heard = record, worker, time.monotonic()
        elif isinstance(report, Progressed):
            live = held.started and held.cancel_at is None
            if live and not await self.ledger.progress(held.id, report.progress):
                await self._stop_running(held)  # cancelled behind the queue's back
        elif isinstance(report, Failed) and report.code == DEVICE_ERROR:
            await self._device_failed(held, report.message)
        else:
            self._ended(held)
            if isinstance(report, Done):
                await self._on_done(held, report.result)
            else:
                await self._on_failed(held, report.code, report.message)

    async def _on_done(self, held: Held, result: Any) -> None:
        """The worker's result is checked, then kept by the ledger (unless the job was cancelled)."""
        staged = held.staged
        if not held.started or held.cancel_at is not None:
            log.info("%s on %s: result dropped, the job was cancelled", held, held.worker)
            discard(staged)
            return
        try:
            report = ResultReport.from_dict(result)
        except BadReportError as err:
            log.error("%s on %s: a result that cannot be trusted: %s", held, held.worker, err)
            discard(staged)
            await self.ledger.fail(held.id, BAD_RESULT, f"the worker's result was refused: {err}")
            return
        await self.ledger.finish(held.id, report, staged=staged)

    async def _on_failed(self, held: Held, code: str, message: str) -> None:
        """A failure the job gave (a device error is the transport's: it loses the worker first)."""
        discard(held.staged)
        if code == Cancelled.code and held.cancel_at is not None:
            log.info("%s on %s: stopped after a cancel", held, held.worker)
        elif code == Cancelled.code:  # nobody asked: the job was lost, not the user's fault
            await self._lose(held, f"its worker {held.worker} stopped the job by itself")
        elif held.cancel_at is None:
            await self.ledger.fail(held.id, code, message)

    async def _lose(self, held: Held, reason: str) -> None:
        """The job's worker died, hung or gave it up: retry it while attempts are left (``Ledger.lose``)."""
        log.error("%s on %s: worker lost: %s", held, held.worker, reason)
        if await self.ledger.lose(held.id, reason):
            self._wake()

    async def _release(self, jobs: Iterable[Held]) -> None:
        """At stop(): the started jobs go back to the queue, their attempt given back (nobody's fault)."""
        for held in jobs:
            discard(held.staged)
            if held.started and held.cancel_at is None:
                with contextlib.suppress(Exception):
                    await self.ledger.release(held.id, RESTART_REASON)

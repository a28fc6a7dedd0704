"""The bookkeeping of jobs in flight, written once for both transports.

A transport subclasses ``Dispatcher`` and declares only what truly differs: who cuts batches (the bot for
its local processes, the Celery worker for itself), tickets by reference or by value, liveness by process
exit or by heartbeat, and its link to the workers (``embedded.EmbeddedQueue``: pipes to processes on this
machine; ``celery_queue.CeleryQueue``: a broker). Everything else is here, once:

* building the ledger at ``start``, closing it at ``stop``: the ledger stays the only writer of job states;
* ``submit`` and ``cancel``;
* the record of a held job (``Held``: its row, ticket, worker, stall clock, cancel time);
* the queued/running split a dispatch orders with ``fair_order``, and the tick that dispatches, then
  reconciles what the transport holds with the database;
* tickets (a job whose inputs are gone fails with ``input_lost``);
* the worker's reports → the ledger: ``started`` claims the row, ``progress`` is written, ``done`` is
  checked and kept, ``failed`` fails the job, ``device_error`` loses the worker; a ``Cancelled`` nobody
  asked for means the job was lost (the worker stopped it by itself), so it is retried, not failed;
* the stall clock and its message;
* ``stop``: the jobs still running are released (queued again, the attempt given back) for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from abc import abstractmethod
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from bot.db import Database, JobRecord, JobState
from bot.queue.base import RESTART_REASON, JobEvents, JobQueue
from bot.queue.ledger import BAD_RESULT, Ledger, discard, ticket_for
from engine.errors import Cancelled
from engine.protocol import Progress
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

STOP_TIMEOUT = 10.0  # how long pending events get to be delivered at stop()

T = TypeVar("T")


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
        return f"job {self.record.id} (user {self.record.user_id})"


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
        self._started = False
        self._stopping = False

    # ----- the transport's part -----

    @abstractmethod
    async def _begin(self) -> None:
        """Start the workers (or the link to them) once the ledger recovered the last run's jobs."""

    @abstractmethod
    async def _end(self) -> None:
        """Stop the workers (or the link); what they held is released with ``_release``."""

    @abstractmethod
    def _wake(self) -> None:
        """Dispatch soon (a job was submitted, a worker became free, a job was retried)."""

    @abstractmethod
    def _stop_job(self, job_id: int) -> None:
        """The job was cancelled: stop its work wherever it is (if anywhere)."""

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

    def _stop_timeout(self) -> float:
        """How long pending events get to be delivered at stop()."""
        return STOP_TIMEOUT

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

    async def stop(self) -> None:
        if not self._started or self._stopping:
            return
        self._stopping = True
        log.info("%s queue: stopping", self.backend)
        await self._end()
        if self._ledger is not None:
            await self._ledger.close(self._stop_timeout())
        log.info("%s queue: stopped", self.backend)

    async def submit(self, job_id: int) -> None:
        log.debug("job %d: submitted", job_id)
        self._wake()
        self.ledger.queue_changed()  # a newcomer may go ahead of a busy user's jobs

    async def cancel(self, job_id: int) -> JobRecord | None:
        record = await self.ledger.cancel(job_id)
        if record is not None:
            self._stop_job(job_id)
        self._wake()
        return record

    # ----- shared bookkeeping -----

    def _post(self, inbox: asyncio.Queue[T], item: T) -> None:
        """Put an item in an inbox from any thread (a pipe's reader, the broker's listener); raises
        ``RuntimeError`` once the event loop is closed."""
        loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(inbox.put_nowait, item)

    async def _tick(self) -> None:
        """Dispatch, then let the ledger find the rows nobody holds (``Ledger.reconcile``)."""
        await self._dispatch()
        await self.ledger.reconcile(self._held_ids() | self.sketch_claims)

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
        if isinstance(report, Started):
            if not await self._on_started(held, worker) and held.cancel_at is None:
                await self._stop_running(held)  # cancelled (or claimed) before it started: must not paint
        elif isinstance(report, Progressed):
            if not await self._on_progress(held, report.progress):
                await self._stop_running(held)  # cancelled behind the queue's back
        elif isinstance(report, Failed) and report.code == DEVICE_ERROR:
            await self._device_failed(held, report.message)
        else:
            self._ended(held)
            if isinstance(report, Done):
                await self._on_done(held, report.result)
            else:
                await self._on_failed(held, report.code, report.message)

    async def _on_started(self, held: Held, worker: str) -> bool:
        """The worker began the job: the ledger claims the row. ``False`` when it must not run (cancelled
        meanwhile, or taken by the sketch process): the transport stops it."""
        if held.started:
            return True
        if held.cancel_at is None:
            record = await self.ledger.start(held.id, worker)
            if record is not None:
                held.record, held.worker, held.last_heard = record, worker, time.monotonic()
                return True
        return False

    async def _on_progress(self, held: Held, progress: Progress) -> bool:
        """``False`` when the job was cancelled behind the queue's back: the transport stops it."""
        if held.cancel_at is not None or not held.started:
            return True
        return await self.ledger.progress(held.id, progress)

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

"""The embedded job queue: worker processes on this machine, fed from the bot's database.

The default back end (empty ``QUEUE_URL``): the local-process transport of ``dispatcher.Dispatcher``.

*The bot cuts the batches.* Each idle worker gets the next batch off the head of the fair order
(``scheduling.next_batch``), up to the limit its hello announced for the first job's tier
(``ENGINE_BATCH_SIZE``), so batching never lets a job start before one ahead of it. The worker paints a
batch in one ``Engine.stylize_batch`` call, each job still started, reported, cancelled and ended on its
own; the worker is free again when all have ended.

*Tickets by reference.* The worker shares this disk: a ticket names the job's stored photo and style images
and a file beside them for the painting; no image crosses the pipe.

*Liveness by process exit.* Each worker lives in a slot (``slots``). It is replaced when its pipe ends (it
died), when it answers ``device_error`` (a CUDA context does not recover), when it holds jobs and sends
nothing for ``stall_seconds`` (a hang), or ignores a cancel for ``cancel_grace``. Its started jobs are
lost (retried while attempts are left); the others stay queued. A worker that fails to start (no hello
within ``start_timeout``) or dies while idle is restarted after a doubling pause of at most
``BACKOFF_MAX`` seconds; meanwhile ``status().healthy`` is false unless another worker is usable.

*Stopping.* The workers run in sessions of their own, so the SIGTERM or Ctrl+C that stops the bot does not
reach them: ``stop()`` stops them, idle ones asked to exit, busy or starting ones terminated, every process
reaped before ``stop()`` returns.

*Worker count.* ``workers=None`` starts one worker; when its hello says CUDA and it sees N > 1 GPUs (and
``worker_options.device`` is ``auto`` or ``cuda``), the slot keeps ``cuda:0`` and one more worker starts
on each of ``cuda:1..N-1``. On the CPU one worker uses every core, so more would only compete.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import multiprocessing
import time
from pathlib import Path
from typing import Any

from bot.db import Database, JobRecord
from bot.queue.base import QueueStatus, accelerated, smallest_limits
from bot.queue.dispatcher import STOP_TIMEOUT, Dispatcher, Held
from bot.queue.ledger import discard
from bot.queue.scheduling import batch_limit, fair_order, next_batch
from bot.queue.slots import FromWorker, Slot, State, WorkerInfo, auto_devices
from engine.workers import wire
from engine.workers.process import backoff, describe_exit
from engine.workers.runner import WorkerOptions
from engine.workers.wire import BadReportError

log = logging.getLogger(__name__)

BACKOFF_FIRST = 1.0  # pause after the first failed start; doubles with each failure in a row
BACKOFF_MAX = 60.0


class EmbeddedQueue(Dispatcher):
    """Local worker processes fed from the database; see the module docstring."""

    backend = "embedded"

    def __init__(
        self,
        db: Database,
        *,
        worker_options: WorkerOptions,
        results_dir: Path,
        workers: int | None = None,
        stall_seconds: float = 180.0,
        start_timeout: float = 120.0,
        progress_write_interval: float = 1.0,
        cancel_grace: float = 10.0,
    ) -> None:
        if workers is not None and workers < 1:
            raise ValueError("workers must be at least 1 (or None for automatic)")
        super().__init__(
            db,
            results_dir=results_dir,
            stall_seconds=stall_seconds,
            progress_write_interval=progress_write_interval,
        )
        self._options = worker_options
        self._workers = workers
        self.start_timeout = start_timeout
        self.cancel_grace = cancel_grace
        self._context = multiprocessing.get_context("spawn")  # CUDA does not survive fork
        self._slots: list[Slot] = []
        self._expanded = workers is not None  # the auto worker count is settled

    # ----- the transport's part of the Dispatcher -----

    async def _begin(self) -> None:
        await self.ledger.recover()
        count = self._workers or 1
        log.info("embedded queue: starting %d worker(s) on %s", count, self._options.device)
        for _ in range(count):
            self._add_slot(self._options.device)

    async def _end(self) -> None:
        await asyncio.gather(*(self._shut_down(slot) for slot in self._slots))

    async def _shut_down(self, slot: Slot) -> None:
        """An idle worker is asked to exit (it reads its pipe), a busy or starting one is terminated at
        once; its running jobs are released for the next start."""
        await slot.end_process(grace=STOP_TIMEOUT if slot.state is State.IDLE else 0.0)
        jobs, slot.jobs = list(slot.jobs.values()), {}
        slot.state = State.STOPPED
        await self._release(jobs)

    async def _handle(self, event: FromWorker) -> None:
        slot = event.slot
        if event.generation != slot.generation or slot.process is None:
            return  # a replaced process's last words
        if event.message is not None:
            await self._on_message(slot, event.message)
            return
        exit = describe_exit(await slot.exit_code())
        if slot.state is State.STARTING:
            log.error("%s: the worker died while starting (%s)", slot.name, exit)
            await self._failed_start(slot)
        else:
            await self._replace(slot, f"the worker process ended ({exit})")

    async def _on_cancel(self, job_id: int) -> None:
        for slot in self._slots:
            job = slot.jobs.get(job_id)
            if job is not None and job.cancel_at is None:
                log.info("%s on %s: cancel requested; the engine stops at its next step", job, slot.name)
                await self._request_cancel(slot, job)

    async def _check_clocks(self, now: float) -> None:
        """A hello overdue, a pause over, a busy worker silent for ``stall_seconds`` (a hang) or ignoring
        a cancel for ``cancel_grace``."""
        for slot in list(self._slots):
            if slot.state is State.STARTING and now >= slot.deadline:
                if slot.process is None:
                    await self._spawn(slot)
                else:
                    log.error("%s: no hello within %g s; killing it", slot.name, self.start_timeout)
                    await self._failed_start(slot)
            elif slot.state is State.BUSY and (reason := self._overdue(slot, now)):
                await self._replace(slot, reason)

    def _held_ids(self) -> set[int]:
        return {job_id for slot in self._slots for job_id in slot.jobs}

    async def _stop_running(self, held: Held) -> None:
        await self._request_cancel(self._slot_of(held), held)

    def _ended(self, held: Held) -> None:
        slot = self._slot_of(held)
        del slot.jobs[held.id]
        slot.failures = 0
        slot.last_jobs.append(held.record)
        if not slot.jobs:
            self._free(slot)

    async def _device_failed(self, held: Held, message: str) -> None:
        await self._replace(self._slot_of(held), f"the device failed ({message})")

    def status(self) -> QueueStatus:
        usable = [s for s in self._slots if s.state in (State.IDLE, State.BUSY)]
        return QueueStatus(
            backend="embedded",
            workers=len(self._slots),
            busy=sum(s.state is State.BUSY for s in self._slots),
            healthy=bool(usable) and not self._stopping,
            batch_limits=smallest_limits([s.batch_limits for s in usable]),
            accelerated=accelerated(s.description or "" for s in usable),
        )

    def worker_info(self) -> list[WorkerInfo]:
        return [slot.info() for slot in self._slots]

    # ----- a slot's life -----

    def _add_slot(self, device: str) -> None:
        """A slot whose process the loop starts at once (its ``deadline`` has passed)."""
        index = len(self._slots)
        self._slots.append(Slot(index=index, name=f"{self._options.name}-{index}", device=device))
        self._wake()

    def _expand(self, first: Slot) -> None:
        """Auto worker count: one worker per visible GPU once the first worker said what it sees."""
        self._expanded = True
        devices = auto_devices(self._options.device, first.description or "", first.gpus)
        if len(devices) < 2 or self._stopping:
            return
        log.info("%s sees %d CUDA devices: one worker per GPU", first.name, len(devices))
        first.device = devices[0]  # "cuda" meant the current device, cuda:0; restarts say so
        for device in devices[1:]:
            self._add_slot(device)

    async def _spawn(self, slot: Slot) -> None:
        """Start a fresh process in the slot; its hello is due within ``start_timeout``."""
        if self._stopping:
            return
        if await slot.spawn(self._context, self._options, self._tell):
            slot.deadline = time.monotonic() + self.start_timeout
        else:
            await self._failed_start(slot)

    def _ready(self, slot: Slot) -> None:
        slot.state = State.IDLE
        if not self._expanded and slot.index == 0:
            self._expand(slot)
        self._wake()

    async def _failed_start(self, slot: Slot) -> None:
        slot.failures += 1
        await slot.end_process(grace=0.0)
        self._pause(slot)

    def _pause(self, slot: Slot) -> None:
        """The next start after failures in a row waits 1, 2, 4 ... ``BACKOFF_MAX`` seconds."""
        delay = backoff(slot.failures, BACKOFF_FIRST, BACKOFF_MAX)
        log.error(
            "%s: %d failure(s) in a row; starting another worker in %.0f s", slot.name, slot.failures, delay
        )
        slot.state, slot.deadline = State.STARTING, time.monotonic() + delay

    async def _replace(self, slot: Slot, reason: str) -> None:
        """The worker is lost: end its process and lose its started jobs (the ledger retries or fails
        them); the ones it had not started stay queued. Another process starts (after a pause, if the
        worker died idle: an idle worker should not die)."""
        jobs, slot.jobs = list(slot.jobs.values()), {}
        slot.state = State.STARTING
        await slot.end_process(grace=0.0)
        for job in jobs:
            discard(job.staged)
            if job.started:
                await self._lose(job, reason)
        self._wake()
        if not jobs:
            log.error("%s: worker lost while idle: %s", slot.name, reason)
            slot.failures += 1
        if slot.failures:
            self._pause(slot)
        else:
            await self._spawn(slot)

    def _overdue(self, slot: Slot, now: float) -> str | None:
        """Why the busy worker counts as lost by ``now`` (a cancel ignored, or a hang); else ``None``."""
        jobs = slot.jobs.values()
        if any(j.cancel_at is not None and now >= j.cancel_at + self.cancel_grace for j in jobs):
            return f"the worker did not stop within {self.cancel_grace:g} s of a cancel"
        if jobs and now >= min(job.last_heard for job in jobs) + self.stall_seconds:
            return self._stall_reason()
        return None

    # ----- jobs on a slot -----

    async def _dispatch(self) -> None:
        """Give each idle worker the next batch off the head of the fair order (one job at batch size 1).

        A worker that just became free counts its last jobs as still running while their successors are
        chosen. Otherwise, with one worker, the user whose job just ended would have no job running at the
        very moment the next one is picked, and their second job would go before another user's first:
        the opposite of round robin, and of the places users were told while that job ran.
        """
        idle = [slot for slot in self._slots if slot.state is State.IDLE]
        if self._stopping or not idle:
            return
        queued, running = await self._active(self._held_ids())
        running += [job for slot in idle for job in slot.last_jobs]
        order = fair_order(queued, running)
        for slot in idle:
            slot.last_jobs = []
        for slot in idle:
            batch = next_batch(order, functools.partial(batch_limit, slot.batch_limits))
            if not batch:
                break
            order = order[len(batch) :]
            await self._assign(slot, batch)

    async def _assign(self, slot: Slot, records: list[JobRecord]) -> None:
        """Hand a batch to the worker, as tickets by reference."""
        for record in records:
            ticket = await self._ticket(record, by_reference=True)
            if ticket is not None:
                slot.jobs[record.id] = Held(record, ticket, sent_at=time.monotonic())
        if not slot.jobs:
            self._free(slot)
            return
        slot.state = State.BUSY
        self._heard(slot.jobs.values())
        tickets = [job.ticket.to_dict() for job in slot.jobs.values() if job.ticket is not None]
        await self._send(slot, (wire.ASSIGN, tickets))
        self._heard(slot.jobs.values())

    async def _on_message(self, slot: Slot, message: dict[str, Any]) -> None:
        try:
            report = wire.decode(message)
        except BadReportError as err:
            log.warning("%s: a malformed report was dropped: %s", slot.name, err)
            return
        if isinstance(report, wire.Hello):
            if slot.state is State.STARTING:
                slot.greeted(report)
                self._ready(slot)
            return
        job = slot.jobs.get(report.job_id)
        if job is None:
            log.info("%s: ignored %r for job %r, not one it holds", slot.name, report.kind, report.job_id)
            return
        self._heard(slot.jobs.values())
        await self._on_report(job, report, slot.name)

    def _slot_of(self, job: Held) -> Slot:
        return next(slot for slot in self._slots if job.id in slot.jobs)

    def _free(self, slot: Slot) -> None:
        """The worker is ready for the next assignment."""
        slot.state = State.IDLE
        self._wake()
        self.ledger.queue_changed()

    async def _request_cancel(self, slot: Slot, job: Held) -> None:
        """The worker stops the job at the engine's next step; ``cancel_grace`` later it counts as hung."""
        job.cancel_at = time.monotonic()
        await self._send(slot, (wire.CANCEL, [job.id]))

    async def _send(self, slot: Slot, message: tuple[Any, ...]) -> None:
        if (lost := await slot.send(message, within=self.stall_seconds)) is not None:
            await self._replace(slot, lost)


__all__ = ["EmbeddedQueue", "WorkerInfo", "WorkerOptions", "auto_devices"]

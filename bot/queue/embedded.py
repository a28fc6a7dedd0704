"""The embedded job queue: worker processes on this machine, fed from the bot's database.

The default back end (empty ``QUEUE_URL``): the local-process transport of ``dispatcher.Dispatcher``, which
keeps the bookkeeping of the jobs in flight (the ledger writes every state). What this transport declares:

*The bot cuts the batches.* The dispatcher task (woken by submit, a free worker, a cancel, a retry, and a
slow tick) orders the queued rows with ``fair_order`` (the job a worker just ended still counts for its
user, see ``_dispatch``) and gives each idle slot the next batch off the head of that order
(``scheduling.next_batch``), up to the limit its worker announced in its hello for the first job's tier
(``ENGINE_BATCH_SIZE``, ``engine.workers.batching``), so batching never lets a job start before one ahead
of it. The worker paints a batch in one ``Engine.stylize_batch`` call, each job still started, reported,
cancelled and ended on its own; the slot is free again when all have ended.

*Tickets by reference.* The worker shares this disk: a ticket names the job's stored photo and style images
and a file beside them for the painting; no image crosses the pipe. Each job has its own cancel, a message
a thread in the worker reads while the engine computes.

*Liveness by process exit.* Each worker lives in a slot (``slots``) with a supervisor task that starts its
process, waits for its hello, sends assignments and cancels, hands the reports to the dispatcher, and
replaces the process when its pipe ends (it died), when it answers ``device_error`` (a CUDA context does
not recover), when it holds jobs and sends nothing for ``stall_seconds`` (a hang), or ignores a cancel for
``cancel_grace``. Its started jobs are lost (retried while attempts are left); the others stay queued. A
worker that fails to start (no hello within ``start_timeout``) or dies while idle is restarted after a
doubling pause of at most ``BACKOFF_MAX`` seconds; meanwhile ``status().healthy`` is false unless another
worker is usable.

*Stopping.* The workers run in sessions of their own, so the SIGTERM or Ctrl+C that stops the bot does not
reach them: ``stop()`` stops them. Reports already received are handled first; idle workers are asked to
exit and get ``STOP_TIMEOUT``; busy or starting ones, and stragglers, get SIGTERM, then SIGKILL; every
process is reaped before ``stop()`` returns.

*Worker count.* ``workers=None`` starts one worker; when its hello says CUDA and it sees N > 1 GPUs
(and ``worker_options.device`` is ``auto`` or ``cuda``, not one GPU by index), the slot keeps
``cuda:0`` and one more worker starts on each of ``cuda:1..N-1``. On the CPU one worker uses every
core, so more would only compete. An explicit ``workers`` starts that many on ``worker_options.device``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import multiprocessing
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.db import Database
from bot.queue.base import QueueStatus, smallest_limits
from bot.queue.dispatcher import Dispatcher, Held
from bot.queue.ledger import discard
from bot.queue.scheduling import batch_limit, fair_order, next_batch
from bot.queue.slots import (
    KILL_TIMEOUT,
    USABLE,
    Assign,
    CancelJob,
    FromWorker,
    Signal,
    Slot,
    State,
    Stopping,
    WorkerInfo,
    WorkerLost,
    auto_devices,
)
from engine.workers import wire
from engine.workers.process import backoff, describe_exit
from engine.workers.runner import WorkerOptions
from engine.workers.wire import BadReportError

log = logging.getLogger(__name__)

TICK_SECONDS = 5.0  # the dispatcher looks at the queue at least this often, woken or not
STOP_TIMEOUT = 10.0  # how long an idle worker gets to exit when asked, at stop()
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
        self._woken = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._expanded = workers is not None  # the auto worker count is settled

    # ----- the transport's part of the Dispatcher -----

    async def _begin(self) -> None:
        if await self.ledger.recover():
            self._wake()
        count = self._workers or 1
        log.info("embedded queue: starting %d worker(s) on %s", count, self._options.device)
        for _ in range(count):
            self._add_slot(self._options.device)
        self._dispatcher = asyncio.create_task(self._dispatch_forever(), name="embedded-queue-dispatcher")

    async def _end(self) -> None:
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        for slot in self._slots:
            slot.inbox.put_nowait(Signal.STOP)
        tasks = [slot.task for slot in self._slots if slot.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT + 3 * KILL_TIMEOUT)
            for task in pending:
                log.error("embedded queue: a supervisor did not stop in time; cancelling it")
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for slot in self._slots:
            slot.kill_now()

    def _stop_timeout(self) -> float:
        return STOP_TIMEOUT

    def _wake(self) -> None:
        self._woken.set()

    def _stop_job(self, job_id: int) -> None:
        for slot in self._slots:
            if job_id in slot.held():
                slot.inbox.put_nowait(CancelJob(job_id))

    def _held_ids(self) -> set[int]:
        return {job_id for slot in self._slots for job_id in slot.held()}

    def status(self) -> QueueStatus:
        usable = [s for s in self._slots if s.state in USABLE]
        busy = [s for s in self._slots if s.state in (State.ASSIGNED, State.BUSY)]
        return QueueStatus(
            backend="embedded",
            workers=len(self._slots),
            busy=len(busy),
            healthy=bool(usable) and not self._stopping,
            batch_limits=smallest_limits([s.batch_limits for s in usable]),
        )

    def worker_info(self) -> list[WorkerInfo]:
        return [slot.info() for slot in self._slots]

    # ----- slots -----

    def _add_slot(self, device: str) -> None:
        index = len(self._slots)
        slot = Slot(index=index, name=f"{self._options.name}-{index}", device=device)
        self._slots.append(slot)
        slot.task = asyncio.create_task(self._supervise(slot), name=f"embedded-queue-{slot.name}")
        slot.task.add_done_callback(self._supervisor_ended)

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

    # ----- a slot's life -----

    async def _supervise(self, slot: Slot) -> None:
        """Start a worker, serve jobs, replace it when it is lost; until stop().

        An error of the queue's own (the database refusing a write, a bug) also replaces the worker and
        retries its jobs: the slot's state is then not to be trusted, and a fresh start is cheap next to a
        slot that stops serving. It counts as a failure, so a lasting cause is retried with back-off.
        """
        try:
            while True:
                try:
                    await self._run_worker(slot)
                except (Stopping, asyncio.CancelledError):
                    raise
                except Exception:
                    log.exception("%s: unexpected error in the queue; replacing the worker", slot.name)
                    slot.failures += 1
                    await self._replace(slot, "an internal error in the queue")
        except Stopping:
            await self._shut_down(slot)

    async def _run_worker(self, slot: Slot) -> None:
        """One process's life in the slot: start it, serve jobs until it is lost, clean up after it."""
        if slot.failures:
            await self._back_off(slot)
        if not await self._launch(slot):
            slot.failures += 1
            await slot.end_process(grace=0.0)
            return
        self._ready(slot)
        try:
            await self._serve(slot)
        except WorkerLost as lost:
            await self._replace(slot, lost.reason)

    def _supervisor_ended(self, task: asyncio.Task[None]) -> None:
        """A supervisor ends only at stop(); anything else leaves its slot without a worker: say so."""
        if not task.cancelled() and task.exception() is not None:
            log.critical("embedded queue: %s died", task.get_name(), exc_info=task.exception())

    async def _launch(self, slot: Slot) -> bool:
        """Start a fresh process in the slot; ``True`` once it said hello."""
        if not await slot.spawn(self._context, self._options, self._poster(slot)):
            return False
        return await self._await_hello(slot, slot.generation)

    def _poster(self, slot: Slot) -> Callable[[FromWorker], None]:
        def post(event: FromWorker) -> None:
            self._post(slot.inbox, event)

        return post

    async def _await_hello(self, slot: Slot, generation: int) -> bool:
        deadline = time.monotonic() + self.start_timeout
        while True:
            event = await slot.next_event(deadline - time.monotonic())
            if event is None:
                log.error("%s: no hello within %g s; killing it", slot.name, self.start_timeout)
                return False
            if isinstance(event, Assign):
                self._unassign(slot)
            elif isinstance(event, FromWorker) and event.generation == generation:
                if event.message is None:
                    code = await slot.exit_code()
                    log.error("%s: the worker died while starting (%s)", slot.name, describe_exit(code))
                    return False
                if slot.said_hello(event.message):
                    return True

    def _ready(self, slot: Slot) -> None:
        slot.state = State.IDLE
        if not self._expanded and slot.index == 0:
            self._expand(slot)
        self._wake()

    async def _back_off(self, slot: Slot) -> None:
        """Pause before the next start after failures in a row: 1, 2, 4 ... ``BACKOFF_MAX`` seconds."""
        delay = backoff(slot.failures, BACKOFF_FIRST, BACKOFF_MAX)
        log.error(
            "%s: the worker failed %d time(s) in a row; starting another in %.0f s",
            slot.name,
            slot.failures,
            delay,
        )
        deadline = time.monotonic() + delay
        while (event := await slot.next_event(deadline - time.monotonic())) is not None:
            if isinstance(event, Assign):
                self._unassign(slot)

    async def _serve(self, slot: Slot) -> None:
        """Handle the slot's inbox while its worker is usable; raises ``WorkerLost`` or ``Stopping``."""
        while True:
            event = await slot.next_event(slot.time_left(self.stall_seconds, self.cancel_grace))
            if event is None:
                raise WorkerLost(slot.timeout_reason(self._stall_reason(), self.cancel_grace))
            if isinstance(event, Assign):
                await self._send_assignment(slot)
            elif isinstance(event, CancelJob):
                job = slot.jobs.get(event.job_id)
                if job is not None and job.cancel_at is None:
                    log.info("%s on %s: cancel requested; the engine stops at its next step", job, slot.name)
                    await self._request_cancel(slot, job)
            elif isinstance(event, FromWorker) and event.generation == slot.generation:
                if event.message is None:
                    code = await slot.exit_code()
                    raise WorkerLost(f"the worker process ended ({describe_exit(code)})")
                await self._on_message(slot, event.message)

    async def _replace(self, slot: Slot, reason: str) -> None:
        """The worker is lost: end its process and lose its started jobs (the ledger retries or fails
        them); the ones it had not started stay queued. The supervisor starts another process."""
        jobs, slot.jobs = list(slot.jobs.values()), {}
        self._unassign(slot)
        slot.state = State.STARTING
        if not jobs:
            slot.failures += 1  # an idle worker should not die: pause before the next one
            log.error("%s: worker lost while idle: %s", slot.name, reason)
        await slot.end_process(grace=0.0)
        for job in jobs:
            discard(job.staged)
            if not job.started:
                continue
            try:
                await self._lose(job, reason)
            except Exception:
                log.exception("%s: could not be requeued; the next start will recover it", job)
        self._wake()

    async def _shut_down(self, slot: Slot) -> None:
        """At stop(): reports already received are handled; an idle worker is asked to exit, a busy or
        still starting one is terminated at once. Its running jobs are released for the next start."""
        while not slot.inbox.empty():
            event = slot.inbox.get_nowait()
            if (
                isinstance(event, FromWorker)
                and event.generation == slot.generation
                and event.message is not None
                and slot.state in USABLE
            ):
                with contextlib.suppress(Exception):
                    await self._on_message(slot, event.message)
        self._unassign(slot)
        listening = slot.state in (State.IDLE, State.ASSIGNED)  # waiting for a job, so it reads the pipe
        await slot.end_process(grace=STOP_TIMEOUT if listening else 0.0)
        jobs, slot.jobs = list(slot.jobs.values()), {}
        slot.state = State.STOPPED
        await self._release(jobs)

    # ----- jobs on a slot -----

    async def _send_assignment(self, slot: Slot) -> None:
        """Hand the dispatcher's jobs to the worker, as tickets by reference."""
        records, slot.assigned = slot.assigned, []
        if self._stopping:
            return
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
        await slot.send((wire.ASSIGN, tickets), within=self.stall_seconds)
        self._heard(slot.jobs.values())

    async def _on_message(self, slot: Slot, message: dict[str, Any]) -> None:
        try:
            report = wire.decode(message)
        except BadReportError as err:
            log.warning("%s: a malformed report was dropped: %s", slot.name, err)
            return
        if isinstance(report, wire.Hello):
            return
        job = slot.jobs.get(report.job_id)
        if job is None:
            log.info("%s: ignored %r for job %r, not one it holds", slot.name, report.kind, report.job_id)
            return
        self._heard(slot.jobs.values())
        await self._on_report(job, report, slot.name)

    def _slot_of(self, job: Held) -> Slot:
        return next(slot for slot in self._slots if job.id in slot.jobs)

    async def _stop_running(self, held: Held) -> None:
        await self._request_cancel(self._slot_of(held), held)

    def _ended(self, held: Held) -> None:
        self._end_job(self._slot_of(held), held)

    async def _device_failed(self, held: Held, message: str) -> None:
        raise WorkerLost(f"the device failed ({message})")

    def _end_job(self, slot: Slot, job: Held) -> None:
        del slot.jobs[job.id]
        slot.failures = 0
        slot.last_jobs.append(job.record)
        if not slot.jobs:
            self._free(slot)

    def _free(self, slot: Slot) -> None:
        """The worker is ready for the next assignment."""
        slot.state = State.IDLE
        self._wake()
        self.ledger.queue_changed()

    async def _request_cancel(self, slot: Slot, job: Held) -> None:
        """The worker stops the job at the engine's next step; ``cancel_grace`` later it counts as hung."""
        job.cancel_at = time.monotonic()
        await slot.send((wire.CANCEL, [job.id]), within=self.stall_seconds)

    # ----- dispatching -----

    async def _dispatch_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_SECONDS):
                    await self._woken.wait()
            self._woken.clear()
            try:
                await self._tick()
            except Exception:
                log.exception("embedded queue: dispatching failed; trying again")

    async def _dispatch(self) -> None:
        """Give each idle worker the next batch off the head of the fair order (one job at batch size 1).

        A worker that just became free counts its last jobs as still running while their successors are
        chosen. Otherwise, with one worker, the user whose job just ended would have no job running at the
        very moment the next one is picked, and their second job would go before another user's first:
        the opposite of round robin, and of the places users were told while that job ran.
        """
        if not self._idle_slots():
            return
        queued, running = await self._active(self._held_ids())
        idle = self._idle_slots()  # again: slots changed while the database answered
        if self._stopping or not idle:
            return
        held = self._held_ids()
        queued = [j for j in queued if j.id not in held]
        running += [job for slot in idle for job in slot.last_jobs]
        order = fair_order(queued, running)
        for slot in idle:
            slot.last_jobs = []
        for slot in idle:
            batch = next_batch(order, functools.partial(batch_limit, slot.batch_limits))
            if not batch:
                break
            order = order[len(batch) :]
            slot.state = State.ASSIGNED
            slot.assigned = batch
            slot.inbox.put_nowait(Assign(batch))

    def _idle_slots(self) -> list[Slot]:
        return [slot for slot in self._slots if slot.state is State.IDLE]

    def _unassign(self, slot: Slot) -> None:
        """Jobs assigned to a slot that cannot take them stay queued for another."""
        if slot.assigned:
            slot.assigned = []
            self._wake()


__all__ = ["EmbeddedQueue", "WorkerInfo", "WorkerOptions", "auto_devices"]

"""The embedded job queue: worker processes on this machine, fed from the bot's database.

The default back end (empty ``QUEUE_URL``). The database is the queue: a job is a row in state ``queued``
and the bot's ``submit`` only wakes the dispatcher, so nothing is lost when the bot restarts. Every change
of a job's state goes through ``ledger.Ledger``; this module decides only which worker runs what and when
a worker is lost.

How it fits together
--------------------
*Slots.* Each worker process (``engine.workers.pipe``) lives in a slot: a ``Pipe`` to the process and a
supervisor task. The supervisor alone changes its slot: it starts the process, waits for its hello, sends
the assignments the dispatcher makes and the cancels the bot asks for, handles the worker's reports, and
replaces the process when it dies, hangs or reports a broken GPU. Everything a slot reacts to (the
worker's messages, the end of its pipe, an assignment, a cancel, stop) arrives in one inbox, an
``asyncio.Queue``, and is handled in arrival order, one at a time: a late result, a death and a new
assignment can never be handled out of order or half-way through one another.

*Assignments.* The dispatcher gives an idle slot a list of jobs: one, or a batch of up to the limit its
worker announced in its hello for the first job's tier (``ENGINE_BATCH_SIZE``, worked out by the worker:
``engine.workers.batching``). The worker paints a batch in one ``Engine.stylize_batch`` call, every job
still started, reported, cancelled and ended on its own; the slot is free again when all have ended.
Each job travels as a ``wire.Ticket`` *by reference*: the worker shares this disk, so the ticket names the
job's stored photo and style images and a file beside them for the painting; no image crosses the pipe.
The row stays ``queued`` until the worker reports ``started`` (``Ledger.start``, as on Celery); a job
cancelled meanwhile is stopped at once. Each job has its own cancel, sent as a message that a thread in
the worker reads while the engine computes.

*Reading pipes.* One reader thread per worker blocks in ``conn.recv()`` and hands each message to the
loop with ``call_soon_threadsafe``; the thread ends by itself at the end of the pipe, which is also how a
dead worker is noticed. Sends run in ``asyncio.to_thread``: a worker that stopped reading must not block
the bot's event loop.

*Dispatching.* One task, woken by an ``asyncio.Event`` (submit, a worker becoming free, cancel, a
retry), plus a slow tick as a safety net. It orders the queued rows with ``fair_order`` (round robin
across users; the job a worker just ended still counts for its user, see ``_dispatch``) and gives each
idle slot the next batch off the head of that order (``scheduling.next_batch``: the head job and the
compatible jobs right behind it), so batching never lets a job start before one ahead of it.

*Supervision.* A worker is replaced (killed if need be, a fresh process in the same slot) when its pipe
ends (the process died), when it answers ``device_error`` (it exits by itself: a CUDA context does not
recover), when it has jobs and sends nothing for ``stall_seconds`` (a hang), or ignores a cancel for
``cancel_grace``. Its started jobs are lost (``Ledger.lose``: retried while attempts are left); the ones
it had not started stay queued. A worker that fails to start (no hello within ``start_timeout``, or an
exit before it) or dies while idle is restarted after a doubling pause of at most ``BACKOFF_MAX`` seconds;
meanwhile ``status().healthy`` is false unless another worker is usable.

*Stopping.* The workers run in sessions of their own, so the SIGTERM or Ctrl+C that stops the bot does not
reach them: ``stop()`` stops them. Idle workers are asked to exit (``None``) and get ``STOP_TIMEOUT``;
busy or starting ones, and stragglers, get SIGTERM, then SIGKILL. Every process is reaped before
``stop()`` returns, and a worker whose bot vanished sees its pipe end and exits. Reports already received
are handled first; the jobs still running are released (``Ledger.release``): queued again, their attempt
given back, for the next start.

*Guards.* A message from a worker about a job it does not hold is ignored; the ledger refuses a result or
failure for a job that is no longer ``running`` (cancelled, requeued).

*Worker count.* ``workers=None`` starts one worker; when its hello says CUDA and it sees N > 1 GPUs
(and ``worker_options.device`` is ``auto`` or ``cuda``, not one GPU by index), the slot keeps
``cuda:0`` and one more worker starts on each of ``cuda:1..N-1``. On the CPU one worker uses every
core, so more would only compete. An explicit ``workers`` starts that many on ``worker_options.device``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from bot.db import Database, JobRecord
from bot.queue.base import QueueStatus, smallest_limits
from bot.queue.dispatcher import Dispatcher, Held
from bot.queue.ledger import discard
from bot.queue.scheduling import batch_limit, fair_order, next_batch
from engine.protocol import Progress
from engine.workers import pipe, wire
from engine.workers.batching import parse_limits
from engine.workers.runner import WorkerOptions

log = logging.getLogger(__name__)

TICK_SECONDS = 5.0  # the dispatcher looks at the queue at least this often, woken or not
STOP_TIMEOUT = 10.0  # how long an idle worker gets to exit when asked, at stop()
KILL_TIMEOUT = 5.0  # how long a terminated (then killed) process gets to go
BACKOFF_FIRST = 1.0  # pause after the first failed start; doubles with each failure in a row
BACKOFF_MAX = 60.0


def auto_devices(requested: str, description: str, gpus: int) -> list[str]:
    """The devices an auto-sized queue runs on, given its first worker's hello (see the module docstring).

    ``requested`` is ``worker_options.device``; ``description`` and ``gpus`` come from the hello.
    """
    if requested in ("auto", "cuda") and description.startswith("cuda") and gpus > 1:
        return [f"cuda:{index}" for index in range(gpus)]
    return [requested]


@dataclass(frozen=True)
class WorkerInfo:
    """One worker slot, for /healthz, logs and tests."""

    name: str
    device: str
    state: str  # "starting", "idle", "assigned", "busy" or "stopped"
    pid: int | None
    job_ids: tuple[int, ...]  # the jobs it holds (assigned or running)
    description: str | None  # from the hello, e.g. "cuda:0 (NVIDIA H100 80GB HBM3)"
    starts: int  # processes started in this slot so far


class _State(enum.Enum):
    STARTING = "starting"  # no usable process: starting one, waiting for its hello, or pausing
    IDLE = "idle"
    ASSIGNED = "assigned"  # the dispatcher gave it jobs the supervisor has not sent yet
    BUSY = "busy"
    STOPPED = "stopped"


USABLE = (_State.IDLE, _State.ASSIGNED, _State.BUSY)


@dataclass(frozen=True)
class _FromWorker:
    generation: int  # which process of the slot sent it: messages of a replaced process are ignored
    message: tuple[Any, ...] | None  # None: the pipe ended (the process is gone)


@dataclass(frozen=True)
class _Assign:
    jobs: list[JobRecord]


@dataclass(frozen=True)
class _Cancel:
    job_id: int


class _Signal(enum.Enum):
    STOP = "stop"


_Event = _FromWorker | _Assign | _Cancel | _Signal


class _Stopping(Exception):
    """stop() was called: the supervisor shuts its worker down and ends."""


class _WorkerLost(Exception):
    """The worker died, hung or broke its device: replace it and retry its jobs."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class _Slot:
    index: int
    name: str
    device: str
    inbox: asyncio.Queue[_Event] = field(default_factory=asyncio.Queue)
    state: _State = _State.STARTING
    generation: int = 0
    process: BaseProcess | None = None
    conn: Connection | None = None
    reader: threading.Thread | None = None
    jobs: dict[int, Held] = field(default_factory=dict)  # job id → the job; an assignment's jobs
    assigned: list[JobRecord] = field(default_factory=list)  # given by the dispatcher, not sent yet
    last_jobs: list[JobRecord] = field(default_factory=list)  # what an idle worker ran last
    description: str | None = None
    gpus: int = 0
    batch_limits: dict[str, int] = field(default_factory=dict)  # per tier, from the hello
    starts: int = 0
    failures: int = 0  # starts in a row that did not lead to a working worker
    task: asyncio.Task[None] | None = None

    def held(self) -> set[int]:
        return {*self.jobs, *(job.id for job in self.assigned)}


def _read_pipe(conn: Connection, post: Callable[[_FromWorker], None], generation: int) -> None:
    """A reader thread: hand every message, then the end of the pipe, to the slot's inbox."""
    while True:
        message: tuple[Any, ...] | None
        try:
            message = conn.recv()
        except (EOFError, OSError):
            message = None
        except Exception:  # a garbled message: the worker is not to be trusted any more
            log.exception("unreadable message from a worker")
            message = None
        try:
            post(_FromWorker(generation, message))
        except RuntimeError:  # the event loop is closed: nobody is listening
            return
        if message is None:
            return


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


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
        self._slots: list[_Slot] = []
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
            slot.inbox.put_nowait(_Signal.STOP)
        tasks = [slot.task for slot in self._slots if slot.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=STOP_TIMEOUT + 3 * KILL_TIMEOUT)
            for task in pending:
                log.error("embedded queue: a supervisor did not stop in time; cancelling it")
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for slot in self._slots:
            self._kill_now(slot)

    def _stop_timeout(self) -> float:
        return STOP_TIMEOUT

    def _wake(self) -> None:
        self._woken.set()

    def _stop_job(self, job_id: int) -> None:
        for slot in self._slots:
            if job_id in slot.held():
                slot.inbox.put_nowait(_Cancel(job_id))

    def _held_ids(self) -> set[int]:
        return {job_id for slot in self._slots for job_id in slot.held()}

    def status(self) -> QueueStatus:
        usable = [s for s in self._slots if s.state in USABLE]
        busy = [s for s in self._slots if s.state in (_State.ASSIGNED, _State.BUSY)]
        return QueueStatus(
            backend="embedded",
            workers=len(self._slots),
            busy=len(busy),
            healthy=bool(usable) and not self._stopping,
            batch_limits=smallest_limits([s.batch_limits for s in usable]),
        )

    def worker_info(self) -> list[WorkerInfo]:
        return [
            WorkerInfo(
                name=s.name,
                device=s.device,
                state=s.state.value,
                pid=s.process.pid if s.process is not None else None,
                job_ids=tuple(sorted(s.held())),
                description=s.description,
                starts=s.starts,
            )
            for s in self._slots
        ]

    # ----- slots -----

    def _add_slot(self, device: str) -> None:
        index = len(self._slots)
        slot = _Slot(index=index, name=f"{self._options.name}-{index}", device=device)
        self._slots.append(slot)
        slot.task = asyncio.create_task(self._supervise(slot), name=f"embedded-queue-{slot.name}")
        slot.task.add_done_callback(self._supervisor_ended)

    def _expand(self, first: _Slot) -> None:
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

    async def _supervise(self, slot: _Slot) -> None:
        """Start a worker, serve jobs, replace it when it is lost; until stop().

        An error of the queue's own (the database refusing a write, a bug) also replaces the worker and
        retries its jobs: the slot's state is then not to be trusted, and a fresh start is cheap next to a
        slot that stops serving. It counts as a failure, so a lasting cause is retried with back-off.
        """
        try:
            while True:
                try:
                    await self._run_worker(slot)
                except (_Stopping, asyncio.CancelledError):
                    raise
                except Exception:
                    log.exception("%s: unexpected error in the queue; replacing the worker", slot.name)
                    slot.failures += 1
                    await self._replace(slot, "an internal error in the queue")
        except _Stopping:
            await self._shut_down(slot)

    async def _run_worker(self, slot: _Slot) -> None:
        """One process's life in the slot: start it, serve jobs until it is lost, clean up after it."""
        if slot.failures:
            await self._back_off(slot)
        if not await self._launch(slot):
            slot.failures += 1
            await self._end_process(slot, grace=0.0)
            return
        self._ready(slot)
        try:
            await self._serve(slot)
        except _WorkerLost as lost:
            await self._replace(slot, lost.reason)

    def _supervisor_ended(self, task: asyncio.Task[None]) -> None:
        """A supervisor ends only at stop(); anything else leaves its slot without a worker: say so."""
        if not task.cancelled() and task.exception() is not None:
            log.critical("embedded queue: %s died", task.get_name(), exc_info=task.exception())

    async def _launch(self, slot: _Slot) -> bool:
        """Start a fresh process in the slot; ``True`` once it said hello."""
        slot.state = _State.STARTING
        slot.generation += 1
        slot.starts += 1
        generation = slot.generation
        parent, child = self._context.Pipe(duplex=True)
        options = self._options.replace(name=slot.name, device=slot.device)
        process = self._context.Process(
            target=pipe.run,
            args=(child, options),
            name=f"stylebot-{slot.name}",
            daemon=True,  # never outlives the bot, even if stop() is never reached
        )
        try:
            await asyncio.to_thread(process.start)
        except Exception:
            log.exception("%s: could not start a worker process", slot.name)
            parent.close()
            return False
        finally:
            child.close()  # the child has its own copy; ours would hide the end of the pipe
        slot.process, slot.conn = process, parent
        slot.reader = threading.Thread(
            target=_read_pipe,
            args=(parent, self._poster(slot), generation),
            name=f"stylebot-{slot.name}-reader",
            daemon=True,
        )
        slot.reader.start()
        log.info("%s: started worker process %d on %s", slot.name, process.pid, slot.device)
        return await self._await_hello(slot, generation)

    def _poster(self, slot: _Slot) -> Callable[[_FromWorker], None]:
        def post(event: _FromWorker) -> None:
            self._post(slot.inbox, event)

        return post

    async def _await_hello(self, slot: _Slot, generation: int) -> bool:
        deadline = time.monotonic() + self.start_timeout
        while True:
            event = await self._next_event(slot, deadline - time.monotonic())
            if event is None:
                log.error("%s: no hello within %g s; killing it", slot.name, self.start_timeout)
                return False
            if isinstance(event, _Assign):
                self._unassign(slot)
            elif isinstance(event, _FromWorker) and event.generation == generation:
                if event.message is None:
                    code = await self._exit_code(slot)
                    log.error("%s: the worker died while starting (%s)", slot.name, _describe_exit(code))
                    return False
                if event.message[0] == wire.HELLO:
                    _, slot.description, slot.gpus, limits = event.message
                    slot.batch_limits = parse_limits(limits)
                    log.info("%s: ready on %s, batches %s", slot.name, slot.description, slot.batch_limits)
                    return True

    def _ready(self, slot: _Slot) -> None:
        slot.state = _State.IDLE
        if not self._expanded and slot.index == 0:
            self._expand(slot)
        self._wake()

    async def _back_off(self, slot: _Slot) -> None:
        """Pause before the next start after failures in a row: 1, 2, 4 ... ``BACKOFF_MAX`` seconds."""
        delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (slot.failures - 1))
        log.error(
            "%s: the worker failed %d time(s) in a row; starting another in %.0f s",
            slot.name,
            slot.failures,
            delay,
        )
        deadline = time.monotonic() + delay
        while (event := await self._next_event(slot, deadline - time.monotonic())) is not None:
            if isinstance(event, _Assign):
                self._unassign(slot)

    async def _serve(self, slot: _Slot) -> None:
        """Handle the slot's inbox while its worker is usable; raises ``_WorkerLost`` or ``_Stopping``."""
        while True:
            event = await self._next_event(slot, self._time_left(slot))
            if event is None:
                raise _WorkerLost(self._timeout_reason(slot))
            if isinstance(event, _Assign):
                await self._send_assignment(slot)
            elif isinstance(event, _Cancel):
                job = slot.jobs.get(event.job_id)
                if job is not None and job.cancel_at is None:
                    log.info("%s on %s: cancel requested; the engine stops at its next step", job, slot.name)
                    await self._request_cancel(slot, job)
            elif isinstance(event, _FromWorker) and event.generation == slot.generation:
                if event.message is None:
                    code = await self._exit_code(slot)
                    raise _WorkerLost(f"the worker process ended ({_describe_exit(code)})")
                await self._on_message(slot, event.message)

    async def _next_event(self, slot: _Slot, within: float | None) -> _Event | None:
        """The slot's next event, or ``None`` when ``within`` seconds pass first; raises on STOP.

        An event already waiting is returned even if the deadline has passed: it is a sign of life.
        """
        try:
            if within is None:
                event = await slot.inbox.get()
            else:
                async with asyncio.timeout(max(0.0, within)):
                    event = await slot.inbox.get()
        except TimeoutError:
            return None
        if event is _Signal.STOP:
            raise _Stopping
        return event

    def _time_left(self, slot: _Slot) -> float | None:
        """Seconds until the worker counts as hung (or as ignoring a cancel); None when it holds no job."""
        if not slot.jobs or slot.state is not _State.BUSY:
            return None
        deadline = min(job.last_heard for job in slot.jobs.values()) + self.stall_seconds
        for job in slot.jobs.values():
            if job.cancel_at is not None:
                deadline = min(deadline, job.cancel_at + self.cancel_grace)
        return deadline - time.monotonic()

    def _timeout_reason(self, slot: _Slot) -> str:
        now = time.monotonic()
        if any(
            j.cancel_at is not None and now >= j.cancel_at + self.cancel_grace for j in slot.jobs.values()
        ):
            return f"the worker did not stop within {self.cancel_grace:g} s of a cancel"
        return self._stall_reason()

    async def _replace(self, slot: _Slot, reason: str) -> None:
        """The worker is lost: end its process and lose its started jobs (the ledger retries or fails
        them); the ones it had not started stay queued. The supervisor starts another process."""
        jobs, slot.jobs = list(slot.jobs.values()), {}
        self._unassign(slot)
        slot.state = _State.STARTING
        if not jobs:
            slot.failures += 1  # an idle worker should not die: pause before the next one
            log.error("%s: worker lost while idle: %s", slot.name, reason)
        await self._end_process(slot, grace=0.0)
        for job in jobs:
            discard(job.staged)
            if not job.started:
                continue
            try:
                await self._lose(job, reason)
            except Exception:
                log.exception("%s: could not be requeued; the next start will recover it", job)
        self._wake()

    async def _shut_down(self, slot: _Slot) -> None:
        """At stop(): reports already received are handled; an idle worker is asked to exit, a busy or
        still starting one is terminated at once. Its running jobs are released for the next start."""
        while not slot.inbox.empty():
            event = slot.inbox.get_nowait()
            if (
                isinstance(event, _FromWorker)
                and event.generation == slot.generation
                and event.message is not None
                and slot.state in USABLE
            ):
                with contextlib.suppress(Exception):
                    await self._on_message(slot, event.message)
        self._unassign(slot)
        listening = slot.state in (_State.IDLE, _State.ASSIGNED)  # waiting for a job, so it reads the pipe
        await self._end_process(slot, grace=STOP_TIMEOUT if listening else 0.0)
        jobs, slot.jobs = list(slot.jobs.values()), {}
        slot.state = _State.STOPPED
        await self._release(jobs)

    async def _end_process(self, slot: _Slot, *, grace: float) -> None:
        """End the slot's process: with ``grace``, ask it (``None``) and wait that long; then SIGTERM,
        then SIGKILL. Reaps it, waits for its reader thread and closes the pipe."""
        process, conn, reader = slot.process, slot.conn, slot.reader
        slot.process = slot.conn = slot.reader = None
        if process is None:
            return
        if grace > 0 and process.is_alive() and conn is not None:
            with contextlib.suppress(OSError):
                conn.send(None)
            await asyncio.to_thread(process.join, grace)
        for end in (process.terminate, process.kill):
            if not process.is_alive():
                break
            end()
            await asyncio.to_thread(process.join, KILL_TIMEOUT)
        if process.is_alive():
            log.error("%s: process %d survived SIGKILL", slot.name, process.pid)
            return
        log.info("%s: worker process %d ended (%s)", slot.name, process.pid, _describe_exit(process.exitcode))
        if reader is not None:
            await asyncio.to_thread(reader.join, KILL_TIMEOUT)
        if conn is not None and (reader is None or not reader.is_alive()):
            conn.close()  # never under a thread still reading it
        process.close()

    def _kill_now(self, slot: _Slot) -> None:
        """The last resort of stop(), for a supervisor that had to be cancelled: no orphans, ever."""
        process = slot.process
        if process is not None and process.is_alive():
            process.kill()
            process.join(KILL_TIMEOUT)

    async def _exit_code(self, slot: _Slot) -> int | None:
        """The exit code of a process whose pipe just ended (it may take a moment to be reaped)."""
        process = slot.process
        if process is None:
            return None
        await asyncio.to_thread(process.join, 1.0)
        return process.exitcode

    # ----- jobs on a slot -----

    async def _send(self, slot: _Slot, message: tuple[Any, ...]) -> None:
        """A message to the worker, off the event loop; a worker that does not take it is lost."""
        conn = slot.conn
        if conn is None:
            raise _WorkerLost("the worker has no pipe")
        try:
            async with asyncio.timeout(self.stall_seconds):
                await asyncio.to_thread(conn.send, message)
        except (OSError, TimeoutError) as err:
            raise _WorkerLost(f"a message could not be handed to the worker ({err!r})") from err

    async def _send_assignment(self, slot: _Slot) -> None:
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
        slot.state = _State.BUSY
        self._heard(slot.jobs.values())
        tickets = [job.ticket.to_dict() for job in slot.jobs.values() if job.ticket is not None]
        await self._send(slot, (wire.ASSIGN, tickets))
        self._heard(slot.jobs.values())

    async def _on_message(self, slot: _Slot, message: tuple[Any, ...]) -> None:
        kind = message[0]
        if kind == wire.HELLO:
            return
        job = slot.jobs.get(message[1]) if len(message) > 1 else None
        if job is None:
            log.info("%s: ignored a %r message for job %r, not one it holds", slot.name, kind, message[1:2])
            return
        self._heard(slot.jobs.values())
        if kind == wire.STARTED:
            if not await self._on_started(job, slot.name) and job.cancel_at is None:
                await self._request_cancel(slot, job)  # cancelled before it started: it must not paint
        elif kind == wire.PROGRESS:
            progress = _progress(message[2])
            if progress is not None and not await self._on_progress(job, progress):
                await self._request_cancel(slot, job)  # cancelled behind the queue's back
        elif kind == wire.DONE:
            self._end_job(slot, job)
            await self._on_done(job, message[2])
        elif kind == wire.FAILED:
            code, text = str(message[2]), str(message[3])
            if code == wire.DEVICE_ERROR:
                raise _WorkerLost(f"the device failed ({text})")
            self._end_job(slot, job)
            await self._on_failed(job, code, text)
        else:
            log.warning("%s: unknown message %r from the worker", slot.name, kind)

    def _end_job(self, slot: _Slot, job: Held) -> None:
        del slot.jobs[job.id]
        slot.failures = 0
        slot.last_jobs.append(job.record)
        if not slot.jobs:
            self._free(slot)

    def _free(self, slot: _Slot) -> None:
        """The worker is ready for the next assignment."""
        slot.state = _State.IDLE
        self._wake()
        self.ledger.queue_changed()

    async def _request_cancel(self, slot: _Slot, job: Held) -> None:
        """The worker stops the job at the engine's next step; ``cancel_grace`` later it counts as hung."""
        job.cancel_at = time.monotonic()
        await self._send(slot, (wire.CANCEL, [job.id]))

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
            slot.state = _State.ASSIGNED
            slot.assigned = batch
            slot.inbox.put_nowait(_Assign(batch))

    def _idle_slots(self) -> list[_Slot]:
        return [slot for slot in self._slots if slot.state is _State.IDLE]

    def _unassign(self, slot: _Slot) -> None:
        """Jobs assigned to a slot that cannot take them stay queued for another."""
        if slot.assigned:
            slot.assigned = []
            self._wake()


def _progress(data: Any) -> Progress | None:
    try:
        return Progress.from_dict(data)
    except (TypeError, ValueError) as err:
        log.warning("a malformed progress report was dropped: %r", err)
        return None


__all__ = ["EmbeddedQueue", "WorkerInfo", "WorkerOptions", "auto_devices"]

"""The scale-out job queue: Celery workers on other machines, reached through Redis or RabbitMQ.

Chosen when ``QUEUE_URL`` is set; each GPU machine runs ``python -m engine worker`` (see
``engine/workers/celery.py``; the names and messages on the broker are in ``engine/workers/broker.py``).
As with the embedded queue, the bot's database is the queue and every change of a job's state goes
through ``ledger.Ledger``: workers never see the database, they only run what they are sent and report
back, and this module decides only what is sent where and when a worker is lost.

How it fits together
--------------------
*Dispatching.* Queued jobs stay rows in the database. The bot hands the broker only as many tasks as the
live workers paint at once (each its batch size, ``ENGINE_BATCH_SIZE``, from its heartbeats: one job
without batching), plus one more batch so that a worker finishing finds the next one waiting, and picks
them with ``fair_order``: round robin across users and the places users are told hold as with the
embedded queue. Still one task per job: a worker gathers the tasks it is handed into batches itself
(``engine/workers/celery.py``), off the head of the order they came in, which is the fair order.
Each dispatch gets a fresh task id, stored with ``set_external_id``; the task carries the
job's ``wire.Ticket`` *by value* (the images in the JSON, base64: a worker on another machine cannot read
the bot's disk), and the ``done`` report brings the painting back the same way. The row stays ``queued``
until a worker says ``started``; only then is it claimed (``Ledger.start``, which counts the attempt).

*Events.* Workers report on a queue of their own (started, progress, done, failed, released,
redelivered, and a heartbeat every ``QUEUE_HEARTBEAT_SECONDS``). A thread (``_Listener``) consumes it
with kombu, decodes each message (results are megabytes of base64) and hands it to the event loop with
``call_soon_threadsafe``. Everything that changes the queue's state (those messages, ``submit``,
``cancel``, the broker connection going and coming back, a tick of the clock) goes through one inbox
handled by one task, in arrival order: nothing interleaves, nothing on the event loop blocks (sends to
the broker and request building run in threads). ``JobEvents`` are called through ``EventLines``.

*Only the current task counts.* A job's messages are accepted only from the task id it was last
dispatched as, and from the worker that started it. Anything else (a task the bot gave up on, one from
before a restart) is ignored, and a task that is still running unwanted is told to stop.

*Cancel and stop.* Bot → workers goes on a fanout exchange: ``{"stop": [task ids]}``. Every worker keeps
the ids; the running job checks them between engine steps, and a withdrawn task that arrives later is
skipped. ``cancel`` forgets the job's task and stops it; the freed place goes to the next job at once.

*Lost workers.* A worker is alive while its heartbeats come; after ``LOST_BEATS`` missed ones it is
gone, and its job is lost (``Ledger.lose``: retried while attempts are left), exactly as the embedded
queue does. The same happens to a job whose worker sends nothing about it for ``WORKER_STALL_SECONDS``
(a hang) or whose device broke (``device_error``). A job whose worker shut down under it (``released``)
is queued again with its attempt given back (``Ledger.release``): a stop is not the job's fault. A
retried job is dispatched again under a new task id; the old one is stopped. Workers never run a task
the broker hands out a second time (they report ``redelivered``), so a job that kills its worker cannot go
round the workers; a redelivery of a job that has not started yet is dispatched again at once.

*Broker restarts.* A restarted Redis (which may keep nothing) loses the tasks waiting in it: when the
listener's connection comes back after a loss, every task dispatched but not started is dispatched again.
RabbitMQ keeps its durable queues, so there nothing is resent. As a last resort, a task still waiting
while some worker has been idle for ``redispatch_after`` seconds is taken as lost and sent again. Running
jobs carry on; their worker's reports are retried until the broker is back. Nobody can be heard while the
broker is away, so no worker is judged by its silence then, nor for ``RECONNECT_GRACE`` seconds after.

*Restarts of the bot.* ``start`` recovers as the embedded queue does: rows a crashed bot left ``running``
are lost (``Ledger.recover``), tasks dispatched by the last run are stopped and their jobs dispatched
again. ``stop`` stops the tasks in flight and releases their jobs (queued, the attempt given back).

*Trust.* Whoever can publish on the broker speaks for the workers, so the broker must be private. Even so,
a report is checked before it counts (``wire.ResultReport``: a known format, sane sizes, an image of that
format; its task id and job id must match the dispatch), and the painting is kept under a name the ledger
makes from the job id.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.db import Database, JobRecord, JobState
from bot.queue.base import RESTART_REASON, JobEvents, JobQueue, QueueStatus, smallest_limits
from bot.queue.ledger import BAD_RESULT, Ledger, ticket_for
from bot.queue.scheduling import batch_limit, fair_order
from engine.errors import Cancelled
from engine.protocol import Progress
from engine.workers import broker as protocol
from engine.workers.batching import parse_limits
from engine.workers.settings import QueueSettings
from engine.workers.wire import DEVICE_ERROR, BadReportError, InputLostError, ResultReport, Ticket

log = logging.getLogger(__name__)

TICK_SECONDS = 0.5  # how often the clocks (heartbeats, stalls) are looked at
BACKLOG_LIMIT = 5.0  # the clocks wait for the inbox to be handled, but never longer than this
DISPATCH_TICK = 5.0  # the queue is looked at at least this often, woken or not
LOST_BEATS = 3  # heartbeats a worker may miss before it counts as gone
RECONNECT_GRACE = 15.0  # after the broker connection comes back, workers get this long to be heard again
STOP_RESEND = 2.0  # a withdrawn task that keeps running is told again at most this often
WITHDRAWN_TTL = 3600.0  # withdrawn task ids are remembered this long
STOP_TIMEOUT = 10.0  # for stop(): the listener, the last stop messages, pending events
LISTENER_PREFETCH = 50
RECONNECT_DELAY = 1.0  # between the listener's attempts to reach the broker again
STOP_RETRY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}


# ----- what the inbox carries -----


@dataclass(frozen=True)
class _Event:
    """A message from a worker, decoded in the listener thread."""

    kind: str
    worker: str
    task_id: str | None = None
    job_id: int | None = None
    progress: Progress | None = None
    result: Any = None  # the raw report: the ledger's checks decide what becomes of it
    fields: dict[str, Any] = field(default_factory=dict)  # the rest: code, message, reason, heartbeat data


@dataclass(frozen=True)
class _Link:
    """The listener's connection to the broker went down (``up=False``) or is up again."""

    up: bool
    reason: str = ""


@dataclass(frozen=True)
class _Cancel:
    job_id: int


class _Signal(enum.Enum):
    WAKE = "wake"
    STOP = "stop"


_Item = _Event | _Link | _Cancel | _Signal


# ----- state -----


@dataclass
class _Dispatch:
    """A job handed to the broker as ``task_id``; ``worker`` is set once a worker started it."""

    job: JobRecord
    task_id: str
    sent_at: float
    worker: str | None = None
    last_heard: float = 0.0  # the stall clock, once started

    @property
    def id(self) -> int:
        return self.job.id

    def __str__(self) -> str:
        return f"job {self.job.id} (user {self.job.user_id})"


@dataclass
class WorkerSeen:
    """A worker process as its heartbeats describe it; for status, logs and tests."""

    name: str
    device: str
    pid: int | None
    interval: float
    last_seen: float  # monotonic, on this machine
    task_ids: tuple[str, ...]  # what it runs now (a batch: several)
    idle_since: float | None  # monotonic, on this machine; None while it runs a task
    batch_limits: dict[str, int] = field(default_factory=dict)  # per tier: jobs it paints at once

    @property
    def batch_size(self) -> int:
        """The most tasks it takes at once, whatever their tier."""
        return max(self.batch_limits.values(), default=1)


# ----- the listener thread -----


def _decode(body: Any) -> _Event | None:
    """A worker's message as an ``_Event``; ``None`` (logged) for anything malformed."""
    try:
        fields = dict(body)
        kind, worker = str(fields.pop("kind")), str(fields.pop("worker"))
        task_id = fields.pop("task_id", None)
        job_id = fields.pop("job_id", None)
        progress = fields.pop("progress", None)
        result = fields.pop("result", None)
        return _Event(
            kind=kind,
            worker=worker,
            task_id=None if task_id is None else str(task_id),
            job_id=None if job_id is None else int(job_id),
            progress=None if progress is None else Progress.from_dict(progress),
            result=result,
            fields=fields,
        )
    except Exception:
        log.exception("celery queue: an unreadable message from a worker was dropped")
        return None


class _LoopClosed(Exception):
    """The bot's event loop is gone: the listener thread ends."""


class _Listener(threading.Thread):
    """Consumes the events queue with its own kombu connection and posts what it gets to the loop.

    Reconnects by itself, posting ``_Link(False)`` when the connection breaks (or cannot be made) and
    ``_Link(True)`` each time it is consuming again.
    """

    def __init__(self, settings: QueueSettings, post: Callable[[_Item], None]) -> None:
        super().__init__(name="stylebot-celery-listener", daemon=True)
        self._settings = settings
        self._post = post
        self._closing = threading.Event()

    def close(self) -> None:
        self._closing.set()
        self.join(STOP_TIMEOUT)

    def run(self) -> None:
        """Consume until closed, trying to reconnect every ``RECONNECT_DELAY`` seconds: the sooner the
        bot hears again after a broker restart, the sooner lost tasks are sent again."""
        while not self._closing.is_set():
            try:
                self._consume()
            except _LoopClosed:  # nobody is listening any more
                return
            except Exception as err:
                if self._closing.is_set():
                    return
                try:
                    self._tell(_Link(False, repr(err)))
                except _LoopClosed:
                    return
                self._closing.wait(RECONNECT_DELAY)

    def _consume(self) -> None:
        queue = protocol.events_queue(self._settings.names)
        with protocol.connect(self._settings, heartbeat=protocol.KOMBU_HEARTBEAT) as connection:
            connection.ensure_connection(max_retries=1)
            with connection.Consumer(
                [queue],
                callbacks=[self._on_message],
                accept=["json"],
                prefetch_count=LISTENER_PREFETCH,
                on_decode_error=self._on_bad_message,
            ):
                self._tell(_Link(True))
                while not self._closing.is_set():
                    try:
                        connection.drain_events(timeout=TICK_SECONDS)
                    except TimeoutError:
                        connection.heartbeat_check()

    def _on_message(self, body: Any, message: Any) -> None:
        event = _decode(body)
        if event is not None:
            self._tell(event)
        message.ack()

    def _on_bad_message(self, message: Any, err: Exception) -> None:
        log.error("celery queue: dropped a message that is not JSON (%s): %r", message.content_type, err)
        message.ack()

    def _tell(self, item: _Item) -> None:
        try:
            self._post(item)
        except RuntimeError as err:  # call_soon_threadsafe on a closed event loop
            raise _LoopClosed from err


class _Broker:
    """Blocking sends, for ``asyncio.to_thread``: Celery's producer pool is safe to share between threads."""

    def __init__(self, settings: QueueSettings) -> None:
        self.app = protocol.make_app(settings)
        self._exchange = protocol.control_exchange(settings.names)

    def send_job(self, task_id: str, ticket: Ticket, order: int) -> None:
        self.app.send_task(
            protocol.TASK_NAME, args=[ticket.to_dict()], kwargs={"order": order}, task_id=task_id
        )

    def send_stop(self, task_ids: list[str], worker: str | None) -> None:
        with self.app.producer_pool.acquire(block=True, timeout=protocol.CONNECT_TIMEOUT) as producer:
            producer.publish(
                protocol.stop_message(task_ids, worker),
                exchange=self._exchange,
                routing_key="",
                declare=[self._exchange],
                serializer="json",
                retry=True,
                retry_policy=STOP_RETRY,
            )

    def close(self) -> None:
        self.app.close()


# ----- the queue -----


class CeleryQueue(JobQueue):
    """Celery workers fed from the bot's database; see the module docstring."""

    def __init__(
        self,
        db: Database,
        settings: Settings,
        *,
        results_dir: Path,
        stall_seconds: float | None = None,
        progress_write_interval: float = 1.0,
        redispatch_after: float = 30.0,
    ) -> None:
        super().__init__()
        self._db = db
        self._settings = settings
        self._results_dir = results_dir
        if not settings.queue_url:
            raise ValueError("the Celery queue needs QUEUE_URL")
        self.stall_seconds = settings.worker_stall_seconds if stall_seconds is None else stall_seconds
        self.progress_write_interval = progress_write_interval
        self.redispatch_after = redispatch_after
        self._broker = _Broker(self._settings)
        self._dispatches: dict[int, _Dispatch] = {}  # job id → its current task
        # Each task's place in the order of dispatch (the fair order), for the worker that gathers batches;
        # counted from the clock so a restarted bot's tasks come after the last run's.
        self._order = itertools.count(time.time_ns())
        self._by_task: dict[str, _Dispatch] = {}
        self._workers: dict[str, WorkerSeen] = {}
        self._withdrawn: dict[str, float] = {}  # task ids the bot gave up on → when
        self._stops_sent: dict[tuple[str, str | None], float] = {}  # (task id, worker) → when last told
        self._inbox: asyncio.Queue[_Item] = asyncio.Queue()
        self._background: set[asyncio.Task[None]] = set()
        self._ledger: Ledger | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: _Listener | None = None
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self._link_lost = False  # the connection broke since it was last up
        self._quiet_until = 0.0  # no worker counts as gone, no job as hung, before this (a broker outage)
        self._dispatch_wanted = True
        self._started = False
        self._stopping = False

    # ----- the JobQueue interface -----

    async def start(self, events: JobEvents) -> None:
        if self._started:
            raise RuntimeError("a CeleryQueue is started once")
        self._started = True
        self._loop = asyncio.get_running_loop()
        self._ledger = Ledger(
            self._db,
            events,
            results_dir=self._results_dir,
            progress_write_interval=self.progress_write_interval,
        )
        log.info(
            "celery queue: broker %s, names %s.*",
            protocol.safe_url(self._settings),
            self._settings.queue_name,
        )
        if self._db.dialect_name == "sqlite":
            log.warning("celery queue: the database is SQLite; scaled out, PostgreSQL is the one to use")
        await self._recover()
        self._listener = _Listener(self._settings, self._post)
        self._listener.start()
        self._task = asyncio.create_task(self._serve(), name="celery-queue")

    async def stop(self) -> None:
        if not self._started or self._stopping:
            return
        self._stopping = True
        log.info("celery queue: stopping")
        if self._task is not None:
            self._inbox.put_nowait(_Signal.STOP)
            try:
                async with asyncio.timeout(STOP_TIMEOUT):
                    await self._task
            except TimeoutError:
                log.error("celery queue: the queue task did not stop in time; cancelling it")
                self._task.cancel()
                await asyncio.gather(self._task, return_exceptions=True)
        if self._listener is not None:
            await asyncio.to_thread(self._listener.close)
        in_flight = list(self._dispatches.values())
        if in_flight:  # the next start dispatches them again
            log.info("celery queue: stopping %d task(s) in flight", len(in_flight))
            self._withdraw_tasks([d.task_id for d in in_flight])
        for dispatch in in_flight:
            if dispatch.worker is not None:
                with contextlib.suppress(Exception):
                    await self.ledger.release(dispatch.id, RESTART_REASON)
        if self._background:
            await asyncio.wait(self._background, timeout=STOP_TIMEOUT)
        if self._ledger is not None:
            await self._ledger.close(STOP_TIMEOUT)
        await asyncio.to_thread(self._broker.close)
        log.info("celery queue: stopped")

    async def submit(self, job_id: int) -> None:
        log.debug("job %d: submitted", job_id)
        self._post(_Signal.WAKE)
        self.ledger.queue_changed()

    async def cancel(self, job_id: int) -> JobRecord | None:
        record = await self.ledger.cancel(job_id)
        if record is not None:
            self._post(_Cancel(job_id))
        return record

    @property
    def ledger(self) -> Ledger:
        assert self._ledger is not None, "the queue is not started"
        return self._ledger

    def status(self) -> QueueStatus:
        return QueueStatus(
            backend="celery",
            workers=len(self._workers),
            busy=len({d.worker for d in self._dispatches.values() if d.worker is not None}),
            healthy=self._connected and bool(self._workers) and not self._stopping,
            batch_limits=smallest_limits(w.batch_limits for w in self._workers.values()),
        )

    def workers(self) -> list[WorkerSeen]:
        """The live workers, as their last heartbeats describe them."""
        return list(self._workers.values())

    # ----- start-up and recovery -----

    async def _recover(self) -> None:
        """Jobs left ``running`` by the last run are retried or failed; tasks it dispatched are stopped
        (the jobs still queued are dispatched again under new task ids)."""
        stale = [record.external_id for record in await self.ledger.recover() if record.external_id]
        for record in await self._db.queued_and_running():
            if record.state is JobState.QUEUED and record.external_id:
                stale.append(record.external_id)
                await self._db.set_external_id(record.id, None)
        if stale:
            log.info("celery queue: stopping %d task(s) of the last run", len(stale))
            self._withdraw_tasks(stale)

    # ----- the inbox -----

    def _post(self, item: _Item) -> None:
        """Put an item in the inbox, from any thread."""
        loop = self._loop
        if loop is None:
            return
        loop.call_soon_threadsafe(self._inbox.put_nowait, item)

    async def _serve(self) -> None:
        """The queue's one task: handle the inbox in order; once it is caught up (or after
        ``BACKLOG_LIMIT`` seconds of backlog), watch the clocks and dispatch. Clocks are read after the
        backlog, so messages that waited in the inbox (a busy event loop) never make a worker look silent."""
        next_dispatch = last_check = 0.0
        while True:
            item: _Item | None = None
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_SECONDS):
                    item = await self._inbox.get()
            if item is _Signal.STOP:
                return
            try:
                if item is not None:
                    await self._handle(item)
                now = time.monotonic()
                if not self._inbox.empty() and now < last_check + BACKLOG_LIMIT:
                    continue
                last_check = now
                await self._check_clocks()
                if self._dispatch_wanted or now >= next_dispatch:
                    self._dispatch_wanted = False
                    next_dispatch = now + DISPATCH_TICK
                    await self._dispatch()
                    await self.ledger.reconcile(set(self._dispatches) | self.sketch_claims)
            except Exception:
                log.exception("celery queue: error while handling %r; carrying on", item)

    async def _handle(self, item: _Item) -> None:
        if isinstance(item, _Event):
            await self._on_event(item)
        elif isinstance(item, _Link):
            self._on_link(item)
        elif isinstance(item, _Cancel):
            self._on_cancel(item.job_id)
        elif item is _Signal.WAKE:
            self._dispatch_wanted = True

    # ----- messages from workers -----

    async def _on_event(self, event: _Event) -> None:
        if event.kind == protocol.HEARTBEAT:
            self._on_heartbeat(event)
            return
        if event.kind == protocol.BYE:
            if self._workers.pop(event.worker, None) is not None:
                log.info("worker %s: stopped", event.worker)
                self._dispatch_wanted = True
            return
        dispatch = self._by_task.get(event.task_id or "")
        if dispatch is None or dispatch.id != event.job_id:
            self._on_stale(event)
            return
        if event.kind == protocol.STARTED:
            await self._on_started(dispatch, event)
        elif event.kind == protocol.REDELIVERED:
            await self._on_redelivered(dispatch, event)
        elif event.kind == protocol.RELEASED and dispatch.worker is None:
            log.info("%s: %s; sending it again", dispatch, event.fields.get("reason"))
            self._withdraw(dispatch)
        elif dispatch.worker != event.worker:  # only the worker that started it speaks for the job
            log.warning(
                "%s: ignored %r from %s, it runs on %s", dispatch, event.kind, event.worker, dispatch.worker
            )
            self._stop_copy(dispatch.task_id, event.worker)
        elif event.kind == protocol.PROGRESS and event.progress is not None:
            await self._on_progress(dispatch, event.progress)
        elif event.kind == protocol.DONE:
            await self._on_done(dispatch, event.result)
        elif event.kind == protocol.FAILED:
            await self._on_failed(dispatch, str(event.fields.get("code")), str(event.fields.get("message")))
        elif event.kind == protocol.RELEASED:
            self._withdraw(dispatch)
            reason = str(event.fields.get("reason") or f"its worker {event.worker} stopped")
            log.info("%s on %s: released: %s", dispatch, dispatch.worker, reason)
            await self.ledger.release(dispatch.id, reason)
        else:
            log.warning("celery queue: unknown message %r from %s", event.kind, event.worker)

    def _on_stale(self, event: _Event) -> None:
        """A message about a task the bot no longer holds; one still running is told to stop."""
        if event.kind in (protocol.STARTED, protocol.PROGRESS) and event.task_id:
            if self._withdraw_tasks([event.task_id]):
                log.info(
                    "job %s: task %s on %s is no longer wanted; told it to stop",
                    event.job_id,
                    event.task_id,
                    event.worker,
                )
        else:
            log.info(
                "job %s: ignored a late %r of task %s from %s",
                event.job_id,
                event.kind,
                event.task_id,
                event.worker,
            )

    async def _on_started(self, dispatch: _Dispatch, event: _Event) -> None:
        if dispatch.worker is not None:  # a second start of one task (never expected)
            if dispatch.worker != event.worker:
                log.warning("%s: started again on %s; stopping that copy", dispatch, event.worker)
                self._stop_copy(dispatch.task_id, event.worker)
            return
        record = await self.ledger.start(dispatch.id, event.worker)
        if record is None:  # cancelled meanwhile
            self._withdraw(dispatch)
            return
        dispatch.job, dispatch.worker, dispatch.last_heard = record, event.worker, time.monotonic()

    async def _on_redelivered(self, dispatch: _Dispatch, event: _Event) -> None:
        """The broker handed the task out again (its worker lost the connection, or died); the worker that
        got it did not run it. Not started yet: send it again. Running: the worker's heartbeats decide."""
        if dispatch.worker is None:
            log.warning(
                "%s: its task came back from the broker before it started; sending it again", dispatch
            )
            self._withdraw(dispatch)
        elif dispatch.worker in self._workers:
            log.info(
                "%s: its task was handed out again; %s is judged by its heartbeats", dispatch, dispatch.worker
            )
        else:
            await self._lose(
                dispatch, f"its worker {dispatch.worker} is gone (the broker handed the task out again)"
            )

    async def _on_progress(self, dispatch: _Dispatch, progress: Progress) -> None:
        now = time.monotonic()
        for other in self._dispatches.values():
            # The worker's engine is alive: jobs of its batch it paints one after the other (the engine's
            # choice) are waiting, not hung.
            if other.worker == dispatch.worker:
                other.last_heard = now
        if not await self.ledger.progress(dispatch.id, progress):  # cancelled behind the queue's back
            self._withdraw(dispatch)

    async def _on_done(self, dispatch: _Dispatch, result: Any) -> None:
        self._forget(dispatch)
        try:
            report = ResultReport.from_dict(result)
        except BadReportError as err:
            log.error("%s on %s: a result that cannot be trusted: %s", dispatch, dispatch.worker, err)
            await self.ledger.fail(dispatch.id, BAD_RESULT, f"the worker's result was refused: {err}")
            return
        await self.ledger.finish(dispatch.id, report)

    async def _on_failed(self, dispatch: _Dispatch, code: str, message: str) -> None:
        if code == DEVICE_ERROR:
            await self._lose(dispatch, f"the device failed ({message})")
            return
        if code == Cancelled.code:  # a worker stops a job on its own only when it shuts down
            await self._lose(dispatch, f"its worker {dispatch.worker} stopped it")
            return
        self._forget(dispatch)
        await self.ledger.fail(dispatch.id, code, message)

    def _on_heartbeat(self, event: _Event) -> None:
        now = time.monotonic()
        data = event.fields
        task_ids = tuple(str(t) for t in data.get("task_ids") or ())
        idle = None if task_ids else now - float(data.get("idle_seconds") or 0.0)
        limits = parse_limits(data.get("batch_limits"))
        worker = self._workers.get(event.worker)
        if worker is None:
            worker = self._workers[event.worker] = WorkerSeen(
                name=event.worker,
                device=str(data.get("device")),
                pid=data.get("pid"),
                interval=float(data.get("interval") or 1.0),
                last_seen=now,
                task_ids=task_ids,
                idle_since=idle,
                batch_limits=limits,
            )
            log.info("worker %s: up on %s, batches %s", worker.name, worker.device, limits)
            self._dispatch_wanted = True
        if limits != worker.batch_limits:
            worker.batch_limits, self._dispatch_wanted = limits, True
        worker.last_seen, worker.task_ids, worker.idle_since = now, task_ids, idle
        stale = [task_id for task_id in task_ids if task_id in self._withdrawn]
        if stale:
            self._withdraw_tasks(stale)  # still running tasks the bot gave up on: tell it again
        if worker.idle_since is not None and now - worker.idle_since >= self.redispatch_after:
            self._resend_lost_tasks(worker)

    def _resend_lost_tasks(self, idle: WorkerSeen) -> None:
        """Tasks waiting in the broker long after a worker became idle were lost on the way."""
        for dispatch in list(self._dispatches.values()):
            if dispatch.worker is None and time.monotonic() - dispatch.sent_at >= self.redispatch_after:
                log.warning(
                    "%s: task %s not picked up in %.0f s while %s was idle; sending it again",
                    dispatch,
                    dispatch.task_id,
                    self.redispatch_after,
                    idle.name,
                )
                self._withdraw(dispatch)

    # ----- the broker connection, cancel, clocks -----

    def _on_link(self, link: _Link) -> None:
        if not link.up:
            if self._connected or not self._link_lost:
                log.warning("celery queue: no connection to the broker (%s)", link.reason)
            self._connected, self._link_lost = False, True
            return
        lost, self._connected, self._link_lost = self._link_lost, True, False
        log.info("celery queue: connected to the broker%s", " again" if lost else "")
        if lost:  # nobody could be heard meanwhile: give the workers time to reconnect before judging them
            self._quiet_until = time.monotonic() + RECONNECT_GRACE
        waiting = [d for d in self._dispatches.values() if d.worker is None]
        if lost and waiting and not self._settings.keeps_tasks:
            log.warning(
                "celery queue: the broker may have lost %d waiting task(s); sending them again", len(waiting)
            )
            for dispatch in waiting:
                self._withdraw(dispatch)
        self._dispatch_wanted = True

    def _on_cancel(self, job_id: int) -> None:
        dispatch = self._dispatches.get(job_id)
        if dispatch is None:
            log.info("job %d: cancelled while not dispatched; nothing to stop", job_id)
        else:
            where = f"on {dispatch.worker}" if dispatch.worker else "waiting in the broker"
            log.info("%s %s: cancelled; stopping task %s", dispatch, where, dispatch.task_id)
            self._withdraw(dispatch)

    async def _check_clocks(self) -> None:
        """Workers whose heartbeats stopped are gone, with their jobs; a job silent too long is hung."""
        now = time.monotonic()
        if not self._connected or now < self._quiet_until:
            self._heard_from_everyone(now)
            return
        gone = [w for w in self._workers.values() if now - w.last_seen > LOST_BEATS * w.interval]
        for worker in gone:
            del self._workers[worker.name]
            log.warning(
                "worker %s: no heartbeat for %.1f s; counted as gone", worker.name, now - worker.last_seen
            )
        names = {worker.name for worker in gone}
        for dispatch in list(self._dispatches.values()):
            if dispatch.worker is None:
                continue
            if dispatch.worker in names:
                await self._lose(dispatch, f"its worker {dispatch.worker} stopped sending heartbeats")
            elif now - dispatch.last_heard > self.stall_seconds:
                await self._lose(dispatch, f"the worker sent nothing for {self.stall_seconds:g} s (hung)")
        if gone:
            self._dispatch_wanted = True

    def _heard_from_everyone(self, now: float) -> None:
        """While the broker is out of reach silence proves nothing: the clocks start again when it is back."""
        for worker in self._workers.values():
            worker.last_seen = now
        for dispatch in self._dispatches.values():
            dispatch.last_heard = now

    # ----- job bookkeeping -----

    def _forget(self, dispatch: _Dispatch) -> None:
        """The task ended: its place goes to the next job."""
        self._dispatches.pop(dispatch.id, None)
        self._by_task.pop(dispatch.task_id, None)
        self._dispatch_wanted = True

    def _withdraw(self, dispatch: _Dispatch) -> None:
        """Give up on the task (stop it wherever it is); the row, if still queued, is dispatched again."""
        self._forget(dispatch)
        self._withdraw_tasks([dispatch.task_id])
        self.ledger.queue_changed()

    async def _lose(self, dispatch: _Dispatch, reason: str) -> None:
        """The job's worker is gone (or hung, or broke): stop its task, retry or fail the job."""
        log.error("%s on %s: worker lost: %s", dispatch, dispatch.worker, reason)
        self._withdraw(dispatch)
        if await self.ledger.lose(dispatch.id, reason):
            self._dispatch_wanted = True

    # ----- dispatching -----

    def _capacity(self, head: JobRecord | None = None) -> int:
        """Tasks the broker may hold, running or waiting: a batch per live worker, plus one batch waiting
        (without batching: one per worker, plus one), batches being the size of ``head``'s tier (the job
        at the head of the fair order; without it, the largest tier's, an upper bound). More would promise
        jobs to the broker early, where a user arriving later could no longer go ahead of them in the round
        robin."""
        sizes = [
            worker.batch_size if head is None else batch_limit(worker.batch_limits, head)
            for worker in self._workers.values()
        ]
        return sum(sizes) + max(sizes, default=1)

    async def _dispatch(self) -> None:
        """Hand the fairest queued jobs to the broker, up to ``_capacity``.

        Dispatched jobs count as running for ``fair_order`` (they are on their way to a worker), so the
        next user in the round robin is the one who has nothing running or on its way.
        """
        if self._stopping or not self._connected or len(self._dispatches) >= self._capacity():
            return
        active = await self._db.queued_and_running()
        queued = [j for j in active if j.state is JobState.QUEUED and j.id not in self._dispatches]
        running = [j for j in active if j.state is JobState.RUNNING or j.id in self._dispatches]
        order = fair_order(queued, running)
        free = self._capacity(order[0]) - len(self._dispatches) if order else 0
        for job in order[: max(0, free)]:
            if not await self._send(job):
                break

    async def _send(self, job: JobRecord) -> bool:
        """Dispatch one job under a new task id; ``False`` when the broker refused it (it stays queued)."""
        try:
            ticket = await asyncio.to_thread(ticket_for, job, by_reference=False)
        except InputLostError as err:
            await self.ledger.fail(job.id, err.code, str(err))
            return True
        task_id = str(uuid.uuid4())
        await self._db.set_external_id(job.id, task_id)
        try:
            await asyncio.to_thread(self._broker.send_job, task_id, ticket, next(self._order))
        except Exception as err:
            log.error(
                "job %d (user %d): the broker did not take it (%r); it stays queued", job.id, job.user_id, err
            )
            return False
        dispatch = _Dispatch(job, task_id, sent_at=time.monotonic())
        self._dispatches[job.id] = self._by_task[task_id] = dispatch
        log.info("%s: sent to the workers as task %s", dispatch, task_id)
        return True

    def _withdraw_tasks(self, task_ids: list[str]) -> bool:
        """Give up on these tasks for good: every worker stops them, or skips them when they arrive.
        ``False`` when all of them were told so moments ago (nothing sent)."""
        now = time.monotonic()
        if len(self._withdrawn) > 1000:
            self._withdrawn = {t: at for t, at in self._withdrawn.items() if now - at < WITHDRAWN_TTL}
        for task_id in task_ids:
            self._withdrawn.setdefault(task_id, now)
        return self._send_stops(task_ids, None)

    def _stop_copy(self, task_id: str, worker: str) -> None:
        """Stop one worker's copy of a task that runs, as it should, somewhere else."""
        self._send_stops([task_id], worker)

    def _send_stops(self, task_ids: list[str], worker: str | None) -> bool:
        """Publish a stop in the background, unless the same one went out within ``STOP_RESEND``."""
        now = time.monotonic()
        if len(self._stops_sent) > 1000:
            self._stops_sent = {k: at for k, at in self._stops_sent.items() if now - at < STOP_RESEND}
        fresh = [t for t in task_ids if now - self._stops_sent.get((t, worker), float("-inf")) >= STOP_RESEND]
        if not fresh:
            return False
        for task_id in fresh:
            self._stops_sent[(task_id, worker)] = now
        self._spawn(self._send_stop(fresh, worker))
        return True

    async def _send_stop(self, task_ids: list[str], worker: str | None) -> None:
        try:
            await asyncio.to_thread(self._broker.send_stop, task_ids, worker)
        except Exception as err:
            log.warning("celery queue: could not send a stop for %s: %r", ", ".join(task_ids), err)

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


__all__ = ["CeleryQueue", "WorkerSeen"]

"""The scale-out job queue: Celery workers on other machines, reached through Redis or RabbitMQ.

Chosen when ``QUEUE_URL`` is set; each GPU machine runs ``python -m engine worker`` (the names and
messages on the broker are in ``engine/workers/broker.py``). The Celery transport of
``dispatcher.Dispatcher``: workers never see the database.

*The workers cut the batches.* The bot hands the broker only as many tasks as the live workers paint at
once (each its batch size, from its heartbeats), plus one more batch so that a worker finishing finds the
next one waiting, picked with ``fair_order``. Still one task per job: a worker gathers the tasks it is
handed into batches itself, off the head of the order they came in, which is the fair order.

*Tickets by value.* Each dispatch gets a fresh task id (stored with ``set_external_id``) and carries the
job's ``wire.Ticket`` with its images (base64: a worker on another machine cannot read this disk); the
``done`` report brings the painting back the same way.

*The broker link* (``broker_link``). Workers report on a queue of their own, which a listener thread
consumes into the dispatcher's inbox. A job's messages count only from the task id it was last dispatched
as and from the worker that started it; anything else is ignored, and a task still running unwanted is
told to stop. Bot → workers goes on a fanout exchange
(``{"stop": [task ids]}``): a withdrawn task stops between engine steps, or is skipped when it arrives.

*Liveness by heartbeat.* A worker is alive while its heartbeats come; after ``LOST_BEATS`` missed ones it
is gone and its jobs are lost (retried while attempts are left), as are jobs silent for
``WORKER_STALL_SECONDS`` (a hang) or whose device broke. A job whose worker shut down under it
(``released``) is queued again with its attempt given back. Workers never run a task the broker hands out
a second time (they report ``redelivered``), so a job that kills its worker cannot go round the workers.

*Broker restarts.* A restarted Redis may lose the tasks waiting in it: when the listener's connection
comes back after a loss, every task dispatched but not started is sent again (RabbitMQ keeps its durable
queues). As a last resort, a task still waiting while some worker has been idle for ``redispatch_after``
seconds is sent again. Nobody can be heard while the broker is away, so no worker is judged by its
silence then, nor for ``RECONNECT_GRACE`` seconds after.

*Restarts of the bot.* ``start`` also stops the tasks the last run dispatched; their jobs are dispatched
again under new task ids.

*Trust.* Whoever can publish on the broker speaks for the workers, so the broker must be private. Even so,
a report is checked before it counts (``wire.ResultReport``; its task id and job id must match the
dispatch), and the painting is kept under a name the ledger makes from the job id.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from pathlib import Path

from bot.config import Settings
from bot.db import Database, JobRecord, JobState
from bot.queue.base import QueueStatus, accelerated, smallest_limits
from bot.queue.broker_link import BrokerSends, Event, Link, Listener
from bot.queue.dispatcher import STOP_TIMEOUT, Dispatcher, Held
from bot.queue.heartbeats import WorkerSeen, capacity, drop_silent, record_heartbeat
from bot.queue.ledger import who
from bot.queue.scheduling import fair_order
from engine.workers import broker as protocol
from engine.workers import wire

log = logging.getLogger(__name__)

RECONNECT_GRACE = 15.0  # after the broker connection comes back, workers get this long to be heard again


class CeleryQueue(Dispatcher):
    """Celery workers fed from the bot's database; see the module docstring."""

    backend = "celery"

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
        if not settings.queue_url:
            raise ValueError("the Celery queue needs QUEUE_URL")
        super().__init__(
            db,
            results_dir=results_dir,
            stall_seconds=settings.worker_stall_seconds if stall_seconds is None else stall_seconds,
            progress_write_interval=progress_write_interval,
        )
        self._settings = settings
        self.redispatch_after = redispatch_after
        self._broker = BrokerSends(self._settings)
        self._dispatches: dict[int, Held] = {}  # job id → its current task
        # Each task's place in the order of dispatch (the fair order), for the worker that gathers batches;
        # counted from the clock so a restarted bot's tasks come after the last run's.
        self._order = itertools.count(time.time_ns())
        self._workers: dict[str, WorkerSeen] = {}
        self._listener: Listener | None = None
        self._connected = False
        self._link_lost = False  # the connection broke since it was last up
        self._quiet_until = 0.0  # no worker counts as gone, no job as hung, before this (a broker outage)

    # ----- the transport's part of the Dispatcher -----

    async def _begin(self) -> None:
        log.info(
            "celery queue: broker %s, names %s.*",
            protocol.safe_url(self._settings),
            self._settings.queue_name,
        )
        if self._db.dialect_name == "sqlite":
            log.warning("celery queue: the database is SQLite; scaled out, PostgreSQL is the one to use")
        await self._recover()
        self._listener = Listener(self._settings, self._tell)
        self._listener.start()

    async def _end(self) -> None:
        if self._listener is not None:
            await asyncio.to_thread(self._listener.close)
        in_flight = list(self._dispatches.values())
        if in_flight:  # the next start dispatches them again
            log.info("celery queue: stopping %d task(s) in flight", len(in_flight))
            self._broker.withdraw([d.task_id for d in in_flight])
        await self._release(in_flight)
        await self._broker.close(STOP_TIMEOUT)

    def _held_ids(self) -> set[int]:
        return set(self._dispatches)

    async def _stop_running(self, held: Held) -> None:
        self._withdraw(held)

    def _ended(self, held: Held) -> None:
        self._forget(held)

    async def _device_failed(self, held: Held, message: str) -> None:
        await self._lose(held, f"the device failed ({message})")

    def status(self) -> QueueStatus:
        return QueueStatus(
            backend="celery",
            workers=len(self._workers),
            busy=len({d.worker for d in self._dispatches.values() if d.worker is not None}),
            healthy=self._connected and bool(self._workers) and not self._stopping,
            batch_limits=smallest_limits(w.batch_limits for w in self._workers.values()),
            accelerated=accelerated(w.device for w in self._workers.values()),
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
            self._broker.withdraw(stale)

    async def _handle(self, item: Event | Link) -> None:
        if isinstance(item, Link):
            self._on_link(item)
        else:
            await self._on_event(item)

    async def _on_event(self, event: Event) -> None:
        if event.kind == protocol.HEARTBEAT:
            self._on_heartbeat(event)
            return
        if event.kind == protocol.BYE:
            if self._workers.pop(event.worker, None) is not None:
                log.info("worker %s: stopped", event.worker)
                self._dispatch_wanted = True
            return
        dispatch = None if event.job_id is None else self._dispatches.get(event.job_id)
        if dispatch is None or dispatch.task_id != event.task_id:
            self._on_stale(event)
            return
        report = event.report
        if isinstance(report, wire.Started) and dispatch.worker is None:
            await self._on_report(dispatch, report, event.worker)  # claims the row
        elif event.kind == protocol.REDELIVERED:
            await self._redelivered(dispatch, event)
        elif event.kind == protocol.RELEASED and dispatch.worker is None:
            self._send_again([dispatch], str(event.fields.get("reason")))
        elif dispatch.worker != event.worker:  # only the worker that started it speaks for the job
            log.warning(
                "%s: ignored %r from %s, it runs on %s", dispatch, event.kind, event.worker, dispatch.worker
            )
            self._broker.stop_copy(dispatch.task_id, event.worker)
        elif isinstance(report, wire.Started | wire.Hello):
            return  # said twice
        elif report is not None:
            if isinstance(report, wire.Progressed):  # its engine is alive: its batch's jobs are waiting
                self._heard(d for d in self._dispatches.values() if d.worker == dispatch.worker)
            await self._on_report(dispatch, report, event.worker)
        elif event.kind == protocol.RELEASED:
            self._withdraw(dispatch)
            reason = str(event.fields.get("reason") or f"its worker {event.worker} stopped")
            log.info("%s on %s: released: %s", dispatch, dispatch.worker, reason)
            await self.ledger.release(dispatch.id, reason)
        else:
            log.warning("celery queue: unknown message %r from %s", event.kind, event.worker)

    def _on_stale(self, event: Event) -> None:
        """A message about a task the bot no longer holds; one still running is told to stop."""
        task = f"job {event.job_id}: task {event.task_id} on {event.worker}"
        if event.kind in (protocol.STARTED, protocol.PROGRESS) and event.task_id:
            if self._broker.withdraw([event.task_id]):
                log.info("%s is no longer wanted; told it to stop", task)
        else:
            log.info("%s: ignored a late %r", task, event.kind)

    async def _redelivered(self, dispatch: Held, event: Event) -> None:
        """The broker handed the task out again (its worker lost the connection, or died); the worker that
        got it did not run it. Not started yet: send it again. Running: the worker's heartbeats decide."""
        if dispatch.worker is None:
            self._send_again([dispatch], "its task came back from the broker before it started")
        elif dispatch.worker in self._workers:
            log.info(
                "%s: its task was handed out again; %s is judged by its heartbeats", dispatch, dispatch.worker
            )
        else:
            await self._lose(
                dispatch, f"its worker {dispatch.worker} is gone (the broker handed the task out again)"
            )

    def _on_heartbeat(self, event: Event) -> None:
        if record_heartbeat(self._workers, event.worker, event.fields):
            self._dispatch_wanted = True  # a new worker, or new batch limits: more room in the broker
        worker = self._workers[event.worker]
        stale = [task_id for task_id in worker.task_ids if task_id in self._broker.withdrawn]
        if stale:
            self._broker.withdraw(stale)  # still running tasks the bot gave up on: tell it again
        now, after = time.monotonic(), self.redispatch_after
        if worker.idle_since is not None and now - worker.idle_since >= after:  # tasks waiting were lost
            lost = [d for d in self._dispatches.values() if d.worker is None and now - d.sent_at >= after]
            self._send_again(lost, f"not picked up in {after:.0f} s while {worker.name} was idle")

    # ----- the broker connection, cancel, clocks -----

    def _on_link(self, link: Link) -> None:
        if not link.up:
            if self._connected or not self._link_lost:
                log.warning("celery queue: no connection to the broker (%s)", link.reason)
            self._connected, self._link_lost = False, True
            return
        lost, self._connected, self._link_lost = self._link_lost, True, False
        log.info("celery queue: connected to the broker%s", " again" if lost else "")
        if lost:  # nobody could be heard meanwhile: give the workers time to reconnect before judging them
            self._quiet_until = time.monotonic() + RECONNECT_GRACE
        if lost and not self._settings.keeps_tasks:
            waiting = [d for d in self._dispatches.values() if d.worker is None]
            self._send_again(waiting, "the restarted broker may have lost its task")
        self._dispatch_wanted = True

    async def _on_cancel(self, job_id: int) -> None:
        dispatch = self._dispatches.get(job_id)
        if dispatch is None:
            log.info("job %d: cancelled while not dispatched; nothing to stop", job_id)
        else:
            where = f"on {dispatch.worker}" if dispatch.worker else "waiting in the broker"
            log.info("%s %s: cancelled; stopping task %s", dispatch, where, dispatch.task_id)
            self._withdraw(dispatch)

    async def _check_clocks(self, now: float) -> None:
        """Workers whose heartbeats stopped are gone, with their jobs; a job silent too long is hung."""
        if not self._connected or now < self._quiet_until:
            self._heard_from_everyone(now)
            return
        names = drop_silent(self._workers, now)
        for dispatch in list(self._dispatches.values()):
            if dispatch.worker is None:
                continue
            if dispatch.worker in names:
                await self._lose(dispatch, f"its worker {dispatch.worker} stopped sending heartbeats")
            elif now - dispatch.last_heard > self.stall_seconds:
                await self._lose(dispatch, self._stall_reason())
        if names:
            self._dispatch_wanted = True

    def _heard_from_everyone(self, now: float) -> None:
        """While the broker is out of reach silence proves nothing: the clocks start again when it is back."""
        for worker in self._workers.values():
            worker.last_seen = now
        self._heard(self._dispatches.values())

    # ----- job bookkeeping -----

    def _forget(self, dispatch: Held) -> None:
        """The task ended: its place goes to the next job."""
        if self._dispatches.get(dispatch.id) is dispatch:
            del self._dispatches[dispatch.id]
        self._dispatch_wanted = True

    def _send_again(self, dispatches: list[Held], why: str) -> None:
        """Tasks lost on the way, or given back before they started: withdrawn, so that the next dispatch
        sends their jobs again under new task ids."""
        for dispatch in dispatches:
            log.warning("%s: task %s %s; sending it again", dispatch, dispatch.task_id, why)
            self._withdraw(dispatch)

    def _withdraw(self, dispatch: Held) -> None:
        """Give up on the task (stop it wherever it is); the row, if still queued, is dispatched again."""
        self._forget(dispatch)
        self._broker.withdraw([dispatch.task_id])
        self.ledger.queue_changed()

    async def _lose(self, held: Held, reason: str) -> None:
        """The job's worker is gone (or hung, or broke): stop its task, retry or fail the job."""
        self._withdraw(held)
        await super()._lose(held, reason)

    # ----- dispatching -----

    async def _dispatch(self) -> None:
        """Hand the fairest queued jobs to the broker, up to ``heartbeats.capacity``.

        Dispatched jobs count as running for ``fair_order`` (they are on their way to a worker), so the
        next user in the round robin is the one who has nothing running or on its way.
        """
        if self._stopping or not self._connected or len(self._dispatches) >= capacity(self._workers.values()):
            return
        queued, running = await self._active(self._dispatches)
        order = fair_order(queued, running)
        free = capacity(self._workers.values(), order[0]) - len(self._dispatches) if order else 0
        for job in order[: max(0, free)]:
            if not await self._send(job):
                break

    async def _send(self, job: JobRecord) -> bool:
        """Dispatch one job under a new task id; ``False`` when the broker refused it (it stays queued)."""
        ticket = await self._ticket(job, by_reference=False)
        if ticket is None:  # failed: its inputs are gone
            return True
        task_id = str(uuid.uuid4())
        await self._db.set_external_id(job.id, task_id)
        try:
            await asyncio.to_thread(self._broker.send_job, task_id, ticket, next(self._order))
        except Exception as err:
            log.error("%s: the broker did not take it (%r); it stays queued", who(job), err)
            return False
        dispatch = Held(job, task_id=task_id, sent_at=time.monotonic())
        self._dispatches[job.id] = dispatch
        log.info("%s: sent to the workers as task %s", dispatch, task_id)
        return True


__all__ = ["CeleryQueue", "WorkerSeen"]

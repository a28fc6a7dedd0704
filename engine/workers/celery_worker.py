"""One Celery worker process of ``python -m engine worker`` (started by ``supervisor``).

A worker process loads the engine once, works out its batch size (``ENGINE_BATCH_SIZE``, per tier:
``engine.workers.batching``), then runs a Celery worker with late acknowledgement. Nothing in a worker
touches the bot's database; it only talks to the broker (the names are in ``engine.workers.broker``):

* the task ``stylize(ticket_dict)`` is one job (its ticket by value: this machine may not see the bot's
  disk). The task hands its job to the process's engine thread (``_Engine``) and waits until the job has
  ended; only then does Celery acknowledge its message. The engine thread runs ``runner.run_assignment``,
  the same code as the embedded queue's workers, whose reports go to the events queue instead of a pipe
  (``_Reporter``);
* *batches.* With a batch size of N > 1 the worker runs Celery's ``threads`` pool with N threads and
  prefetch N, so up to N tasks are in the process at once, each still its own message acknowledged late:
  a worker that dies loses nothing, the broker hands every task of its batch out again. The engine thread
  gathers what has come in: once a job arrives it waits up to ``GATHER_SECONDS`` for the jobs behind it
  (the bot sends a batch's tasks back to back), then takes the first job and the ones right behind it
  that can share its batch (``engine.protocol.leading_batch``), up to the first job's tier's limit. The
  tasks arrive in the order the bot sent them, its fair order, so no job starts before one ahead of it
  that this worker holds unless both are in the batch. (A batch-aware consumer would need Celery's
  internals or a second consumer on the jobs queue; many late-acknowledged tasks and one thread that
  paints is plain Celery.) At batch size 1 the pool is ``solo`` with prefetch 1, as it always was;
* a background thread (``_Sidecar``) consumes the control exchange (the bot's ``stop`` messages land in a
  thread-safe ``_StopList`` that ``should_cancel`` reads between engine steps), sends a heartbeat every
  ``QUEUE_HEARTBEAT_SECONDS`` (the jobs it runs, how long it has been idle, its batch limits), ends the
  process if a stopped job does not stop within ``--cancel-grace`` seconds (a hang), and shuts the worker
  down when its supervisor disappears.

*Redelivered tasks are never run.* A task the broker hands out a second time (its first worker died, or
lost its connection, or ran past Redis's visibility timeout) is acknowledged and reported as
``redelivered``; the bot, which notices lost workers by their heartbeats, retries the job under a new
task id. So a job that kills every worker it lands on cannot go round the workers forever, and a task
runs at most once even when a slow job outlives the visibility timeout.

*Shutdown.* SIGTERM starts Celery's warm shutdown: no new task is taken, the running jobs stop at their
next step and are reported ``released`` (the bot queues them again at once), their tasks are
acknowledged and the process exits. A task Celery still hands over meanwhile, or one still waiting for a
batch, is released without being started.
"""

from __future__ import annotations

import bisect
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery, signals

from engine.errors import Cancelled
from engine.protocol import Progress, batch_group, leading_batch, settings_from_dict
from engine.workers import broker as protocol
from engine.workers import wire
from engine.workers.celery_link import TICK, Outbox, Sidecar
from engine.workers.process import Expiring, setup_logging
from engine.workers.runner import WorkerEngine, build_engine, run_assignment, worker_batch_limits
from engine.workers.settings import QueueSettings
from engine.workers.supervisor import WorkerSpec
from engine.workers.wire import BadReportError, ResultReport, Ticket

log = logging.getLogger(__name__)

STOP_LIST_TTL = 3600.0  # a withdrawn task id is remembered this long (its message may still come)
PROGRESS_PAUSE = 5.0  # after a progress report could not be sent, skip reports for this long
GATHER_SECONDS = 0.5  # how long the engine waits for the rest of a batch after its first job came

BOT = "bot"  # why a job was stopped
SHUTDOWN = "shutdown"


def run_worker(spec: WorkerSpec) -> None:
    """A worker process: pin the GPU, load the engine once, serve Celery tasks until told to stop."""
    if spec.cuda_visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = spec.cuda_visible  # before anything imports torch
    name = f"{spec.options.name}.{os.getpid()}@{socket.gethostname()}"
    setup_logging(name, spec.options.log_level)
    settings = QueueSettings(**spec.queue)
    try:
        engine = build_engine(spec.options)
        engine.load_model()
        limits = worker_batch_limits(spec.options, engine)
    except Exception:
        log.exception("could not start the engine on %s", spec.options.device)
        sys.exit(wire.EXIT_START_FAILED)
    runtime = WorkerRuntime(name, engine, settings, cancel_grace=spec.cancel_grace, batch_limits=limits)
    app = protocol.make_app(settings)
    register_task(app, runtime)
    signals.worker_shutting_down.connect(runtime.on_shutdown, weak=False)
    signals.worker_ready.connect(_ignore_hangups, weak=False)
    runtime.start()
    size = runtime.batch_size
    log.info("ready on %s, batches %s", engine.device_name, limits)
    celery_worker = app.Worker(
        hostname=name,
        queues=[settings.names.jobs],
        quiet=True,
        without_gossip=True,
        without_mingle=True,
        without_heartbeat=True,
        loglevel=spec.options.log_level,
        # A thread per task of a batch (each waits for its job while the engine thread paints), and as
        # many prefetched: see the module docstring.
        pool="solo" if size == 1 else "threads",
        concurrency=size,
        prefetch_multiplier=1,
    )
    try:
        celery_worker.start()
    finally:
        runtime.close()
    sys.exit(runtime.exit_code or celery_worker.exitcode or 0)


def _ignore_hangups(**_: Any) -> None:
    """Celery restarts a worker on SIGHUP by re-running its command line, which in a process started by
    the supervisor is the supervisor's own: hang-ups are ignored (the supervisor restarts workers)."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def register_task(app: Celery, runtime: WorkerRuntime) -> None:
    """The one task: run a job. Late acknowledgement: its message goes when the job has ended."""

    @app.task(name=protocol.TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True)
    def stylize(task: Any, ticket: dict[str, Any], order: int = 0) -> None:
        delivery = task.request.delivery_info or {}
        runtime.run(task.request.id, ticket, redelivered=bool(delivery.get("redelivered")), order=order)


@dataclass
class _Run:
    """A job this process holds: waiting for a batch, then running."""

    task_id: str
    ticket: Ticket
    order: int = 0  # its place in the bot's order of dispatch
    stop_reason: str | None = None  # BOT or SHUTDOWN, once asked to stop
    stop_asked_at: float | None = None
    ended: threading.Event = field(default_factory=threading.Event)  # its task may return

    @property
    def job_id(self) -> int:
        return self.ticket.job_id

    def ask_to_stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason, self.stop_asked_at = reason, time.monotonic()

    def __str__(self) -> str:
        return f"job {self.job_id} (task {self.task_id})"


class WorkerRuntime:
    """What a worker process keeps between tasks: the engine and its thread, its name, the stop list, the
    jobs it runs, the sidecar thread and the connection the jobs' events go out on."""

    def __init__(
        self,
        name: str,
        engine: WorkerEngine,
        settings: QueueSettings,
        *,
        cancel_grace: float,
        batch_limits: dict[str, int] | None = None,
    ) -> None:
        self.name = name
        self.engine = engine
        self.settings = settings
        self.cancel_grace = cancel_grace
        self.batch_limits = dict(batch_limits or {})
        self.stops: Expiring[str] = Expiring(STOP_LIST_TTL)  # task ids the bot withdrew
        self.current: dict[str, _Run] = {}  # task id → the run, for the jobs the engine works on now
        self.idle_since = time.monotonic()
        self.shutting_down = False
        self.exit_code = 0
        self._outbox = Outbox(settings)
        self._engine = _Engine(self)
        self._sidecar = Sidecar(self, parent_pid=os.getppid())

    @property
    def batch_size(self) -> int:
        """The most jobs it paints at once, whatever their tier."""
        return max(self.batch_limits.values(), default=1)

    def start(self) -> None:
        self._engine.start()
        self._sidecar.start()

    def close(self) -> None:
        self._engine.close()
        self._sidecar.close()
        self._outbox.close()

    def running(self) -> list[_Run]:
        return list(self.current.values())

    # ----- one task -----

    def run(self, task_id: str, ticket_dict: dict[str, Any], *, redelivered: bool, order: int = 0) -> None:
        """The task's body: hand the job to the engine thread and wait until it has ended, unless the
        broker handed it out before, the bot withdrew it, or this worker is shutting down."""
        try:
            ticket = Ticket.from_dict(ticket_dict)
        except (KeyError, TypeError, ValueError, BadReportError) as err:
            log.error("task %s: not a job ticket (%r); dropped", task_id, err)
            return
        job_id = ticket.job_id
        if not ticket.carries_its_images:  # a task naming files of this machine: not from our bot
            log.error("job %d (task %s): the ticket names files instead of carrying images", job_id, task_id)
            lost = wire.Failed(job_id, wire.INPUT_LOST, "a task must carry its images")
            self.publish(protocol.report_event(lost, self.name, task_id))
            return
        if redelivered:
            log.warning(
                "job %d (task %s): handed out a second time; not run, the bot decides what happens to it",
                job_id,
                task_id,
            )
            self.publish(protocol.event(protocol.REDELIVERED, self.name, task_id=task_id, job_id=job_id))
            return
        run = _Run(task_id, ticket, order=_order(order))
        if self._skipped(run):
            return
        self._engine.submit(run)
        while not run.ended.wait(TICK):  # a timeout: the main thread (solo pool) still handles signals
            pass

    def _skipped(self, run: _Run) -> bool:
        """A job withdrawn by the bot, or arriving while this worker shuts down, is not started."""
        if run.task_id in self.stops:
            log.info("%s: withdrawn by the bot; skipped", run)
            return True
        if self.shutting_down:  # Celery may hand out one more task after a warm shutdown began
            log.info("%s: not started, this worker is shutting down", run)
            reason = f"its worker {self.name} shut down before starting it"
            self.publish(
                protocol.event(
                    protocol.RELEASED, self.name, task_id=run.task_id, job_id=run.job_id, reason=reason
                )
            )
            return True
        return False

    def run_batch(self, runs: list[_Run]) -> None:
        """In the engine thread: paint the jobs (one, or a batch) and end every run."""
        live = [run for run in runs if not self._skipped(run)]
        self.current = {run.task_id: run for run in live}
        try:
            healthy = not live or run_assignment(
                self.engine, [run.ticket for run in live], _Reporter(self, live), self._should_stop(live)
            )
        except Exception:  # the reports could not go out: the bot judges these jobs by their silence
            log.exception("jobs %s: could not be run", ", ".join(str(run.job_id) for run in live))
            healthy = True
        finally:
            self.current, self.idle_since = {}, time.monotonic()
            for run in runs:
                run.ended.set()
        if not healthy:
            self._restart(f"the device failed while running {', '.join(map(str, live))}")

    def publish(self, body: dict[str, Any], *, final: bool = True) -> bool:
        return self._outbox.publish(body, final=final)

    # ----- stopping -----

    def on_stop_message(self, task_ids: list[str]) -> None:
        """From the sidecar: the bot withdrew these tasks."""
        self.stops.add(task_ids)
        for run in self.running():
            if run.task_id in task_ids:
                log.info("%s: the bot asked to stop it", run)
                run.ask_to_stop(BOT)

    def on_shutdown(self, **_: Any) -> None:
        """Celery's ``worker_shutting_down`` (SIGTERM): release the running jobs so other workers take
        them; the waiting ones are released without starting."""
        self.shutting_down = True
        for run in self.running():
            log.info("%s: shutting down; the job is released", run)
            run.ask_to_stop(SHUTDOWN)
        self._engine.wake()

    def ended(self, run: _Run) -> None:
        """Its end was reported (the others of its batch may still run)."""
        self.current.pop(run.task_id, None)

    def _restart(self, reason: str) -> None:
        """A CUDA context does not recover: finish this task, exit, and let the supervisor start afresh."""
        log.error("%s; this worker process restarts", reason)
        self.exit_code = wire.EXIT_DEVICE_ERROR
        os.kill(os.getpid(), signal.SIGTERM)

    def _should_stop(self, runs: list[_Run]) -> Callable[[int], bool]:
        """The jobs' ``should_cancel``: the bot withdrew the task, or this worker shuts down."""
        by_job = {run.job_id: run for run in runs}

        def should_stop(job_id: int) -> bool:
            run = by_job[job_id]
            if run.stop_reason is None and run.task_id in self.stops:
                run.ask_to_stop(BOT)  # the stop came just before the job was made current
            if run.stop_reason is None and self.shutting_down:
                run.ask_to_stop(SHUTDOWN)
            return run.stop_reason is not None

        return should_stop


class _Engine(threading.Thread):
    """The one thread that paints: takes the jobs the tasks hand in, a batch at a time (see the module
    docstring), and runs them with ``WorkerRuntime.run_batch``."""

    def __init__(self, runtime: WorkerRuntime) -> None:
        super().__init__(name="stylebot-engine", daemon=True)
        self._runtime = runtime
        self._waiting: list[_Run] = []  # handed in, in the order the bot dispatched them
        self._changed = threading.Condition()
        self._closing = False

    def submit(self, run: _Run) -> None:
        """Queue a job behind those the bot dispatched before it: the tasks' threads may hand them in out
        of the order Celery received them in."""
        with self._changed:
            bisect.insort(self._waiting, run, key=lambda waiting: waiting.order)
            self._changed.notify_all()

    def wake(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._closing = True
            self._changed.notify_all()
        self.join(5.0)

    def run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._runtime.run_batch(batch)

    def _next_batch(self) -> list[_Run] | None:
        """The next batch: the first job waiting and the compatible ones right behind it, gathered for up
        to ``GATHER_SECONDS``; ``None`` at close."""
        with self._changed:
            while not self._waiting:
                if self._closing:
                    return None
                self._changed.wait()
            limit = self._limit(self._waiting[0])
            deadline = time.monotonic() + (GATHER_SECONDS if limit > 1 else 0.0)
            while True:
                batch = leading_batch(self._waiting, _group, limit)
                left = deadline - time.monotonic()
                complete = len(batch) >= limit or len(batch) < len(self._waiting)  # full, or blocked
                if complete or left <= 0 or self._closing or self._runtime.shutting_down:
                    break
                self._changed.wait(left)
            del self._waiting[: len(batch)]
            return batch

    def _limit(self, run: _Run) -> int:
        quality = str(run.ticket.settings.get("quality", "normal"))
        return max(1, self._runtime.batch_limits.get(quality, 1))


def _order(value: object) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return 0


def _group(run: _Run) -> object:
    """A job's batch group, from its ticket's settings; a retry, or one whose settings do not parse, goes
    alone, and so does a clip (see ``bot.queue.scheduling.job_group``)."""
    if run.ticket.alone or run.ticket.clip is not None:
        return ("alone", run.task_id)
    try:
        return batch_group(settings_from_dict(run.ticket.settings))
    except (TypeError, ValueError):
        return ("alone", run.task_id)


class _Reporter:
    """``runner.Reports`` for the jobs of a batch: the same reports as on the pipe (``wire``), as events on
    the broker.

    A job stopped by the bot ends quietly (the bot no longer wants to hear of it); one stopped because
    this worker shuts down is reported ``released``, so the bot queues it again at once.
    """

    def __init__(self, runtime: WorkerRuntime, runs: list[_Run]) -> None:
        self._runtime = runtime
        self._runs = {run.job_id: run for run in runs}
        self._quiet_until = 0.0  # progress reports are skipped until then (the broker did not answer)

    def started(self, job_id: int) -> None:
        self._send(wire.Started(job_id, self._runtime.engine.device_name))

    def progress(self, job_id: int, progress: Progress) -> None:
        if time.monotonic() < self._quiet_until:
            return
        if not self._send(wire.Progressed(job_id, progress), final=False):
            self._quiet_until = time.monotonic() + PROGRESS_PAUSE

    def done(self, job_id: int, report: ResultReport) -> None:
        self._send(wire.Done(job_id, report.to_dict()))
        self._runtime.ended(self._runs[job_id])

    def failed(self, job_id: int, code: str, message: str) -> None:
        run = self._runs[job_id]
        reason = run.stop_reason if code == Cancelled.code else None
        if reason == BOT:
            log.info("%s: stopped as the bot asked", run)
        elif reason == SHUTDOWN:
            body = protocol.event(
                protocol.RELEASED,
                self._runtime.name,
                task_id=run.task_id,
                job_id=job_id,
                reason=f"its worker {self._runtime.name} shut down",
            )
            self._runtime.publish(body)
        else:
            self._send(wire.Failed(job_id, code, message))
        self._runtime.ended(run)

    def _send(self, report: wire.JobReport, *, final: bool = True) -> bool:
        body = protocol.report_event(report, self._runtime.name, self._runs[report.job_id].task_id)
        return self._runtime.publish(body, final=final)


__all__ = ["WorkerRuntime", "register_task", "run_worker"]

"""``python -m engine worker``: Celery workers for the scale-out queue (see ``bot/queue/celery_queue.py``).

One command per machine. It starts one worker process per visible GPU (pinned to it with
``CUDA_VISIBLE_DEVICES``), or one on the CPU, times ``--concurrency-per-gpu``, and stays as their
supervisor: it restarts a process that dies (a crash, a broken CUDA context) after a pause that doubles
while restarts keep failing, and on SIGTERM (or Ctrl+C) stops them all and exits.

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

import argparse
import bisect
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from celery import Celery, signals
from kombu import Queue
from kombu.exceptions import OperationalError

from engine import style_store
from engine.errors import Cancelled
from engine.protocol import Progress, batch_group, leading_batch, settings_from_dict
from engine.settings import EngineSettings
from engine.workers import broker as protocol
from engine.workers import wire
from engine.workers.broker import BrokerUnreachableError
from engine.workers.runner import (
    WorkerEngine,
    WorkerOptions,
    build_engine,
    run_assignment,
    worker_batch_limits,
)
from engine.workers.settings import QueueSettings
from engine.workers.wire import BadReportError, ResultReport, Ticket

log = logging.getLogger(__name__)

DEFAULT_FACTORY = "engine.api:Engine.from_settings"
CANCEL_GRACE = 30.0  # a job asked to stop that is still running after this long means a hung engine
RECONNECT_DELAY = 1.0  # the sidecar's pause between attempts to reach the broker again
TICK = 0.25  # how often the sidecar looks at its connection, the job and its parent
STOP_LIST_TTL = 3600.0  # a withdrawn task id is remembered this long (its message may still come)
STABLE_SECONDS = 60.0  # a worker process that lived this long and died is restarted at once
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
GPU_PROBE_TIMEOUT = 120.0
# How long a job's start or end is pushed at a broker that is down (a broker restart); a progress report is
# not worth holding up the engine for.
FINAL_PATIENCE = 120.0
PROGRESS_PAUSE = 5.0  # after a progress report could not be sent, skip reports for this long
GATHER_SECONDS = 0.5  # how long the engine waits for the rest of a batch after its first job came

BOT = "bot"  # why a job was stopped
SHUTDOWN = "shutdown"


# ----- the command -----


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m engine worker",
        description="Run Stylebot's Celery workers on this machine: one process per GPU (or one on the "
        "CPU), fed through the broker at QUEUE_URL. Engine settings come from the environment.",
    )
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: ENGINE_DEVICE, else auto)")
    p.add_argument(
        "--concurrency-per-gpu",
        type=int,
        default=1,
        metavar="N",
        help="worker processes per GPU (or on the CPU); each loads its own model (default 1)",
    )
    p.add_argument("--queue-url", help="the broker, redis://... or amqp://... (default: QUEUE_URL)")
    p.add_argument(
        "--engine-factory",
        default=DEFAULT_FACTORY,
        metavar="MODULE:ATTR",
        help=f"what builds the engine (default {DEFAULT_FACTORY}; tests use a fake)",
    )
    p.add_argument(
        "--cancel-grace",
        type=float,
        default=CANCEL_GRACE,
        metavar="SECONDS",
        help=f"a job asked to stop that runs on this long ends its process (default {CANCEL_GRACE:g})",
    )
    p.add_argument("--log-level", default=None, help="default: LOG_LEVEL, else INFO")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.concurrency_per_gpu < 1:
        print("error: --concurrency-per-gpu must be at least 1", file=sys.stderr)
        return 2
    level = (args.log_level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    _setup_logging("supervisor", level)
    try:
        engine_settings = EngineSettings()
        queue = QueueSettings(**({"queue_url": args.queue_url} if args.queue_url else {}))
        protocol.check_broker(queue)
        devices = plan_devices(args.device or engine_settings.engine_device, _visible_gpus)
    except (BrokerUnreachableError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    specs = [
        WorkerSpec(
            options=WorkerOptions(
                name=name,
                device=device,
                engine_factory=args.engine_factory,
                engine_settings=engine_settings.model_dump(mode="json"),
                threads=engine_settings.engine_threads,
                log_level=level,
            ),
            queue=queue.model_dump(),
            cuda_visible=cuda_visible,
            cancel_grace=args.cancel_grace,
        )
        for label, device, cuda_visible in devices
        for name in _slot_names(label, args.concurrency_per_gpu)
    ]
    style_store.start_prefetch(engine_settings)  # this machine's paintings, in the background
    return Supervisor(specs).run()


def plan_devices(device: str, visible_gpus: Callable[[], list[str]]) -> list[tuple[str, str, str | None]]:
    """(label, device, CUDA_VISIBLE_DEVICES) per worker process to start, before concurrency.

    ``auto`` and ``cuda`` mean every visible GPU (``auto`` falls back to the engine's own choice, the
    CPU or Apple's MPS, when there is none); ``cuda:N`` the N-th visible GPU only. A GPU worker sees only
    its own GPU, as ``cuda:0``.
    """
    if device in ("auto", "cuda") or device.startswith("cuda:"):
        gpus = visible_gpus()
        if device.startswith("cuda:"):
            index = int(device.partition(":")[2])
            if index >= len(gpus):
                raise ValueError(f"there is no {device}; this machine shows {len(gpus)} CUDA device(s)")
            return [(f"gpu{index}", "cuda:0", gpus[index])]
        if gpus:
            return [(f"gpu{index}", "cuda:0", gpu) for index, gpu in enumerate(gpus)]
        if device == "cuda":
            raise ValueError("CUDA was asked for but no CUDA GPU is visible")
        return [("auto", "auto", None)]
    return [(device.replace(":", ""), device, None)]


def _slot_names(label: str, concurrency: int) -> list[str]:
    return [label] if concurrency == 1 else [f"{label}-{k}" for k in range(concurrency)]


def _visible_gpus() -> list[str]:
    """The GPUs this machine shows (as ``CUDA_VISIBLE_DEVICES`` names them, else their indices).

    Counted by torch in a short-lived child process: the supervisor itself never imports torch or
    touches CUDA.
    """
    code = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=GPU_PROBE_TIMEOUT
        )
        count = int(done.stdout.strip() or 0) if done.returncode == 0 else 0
    except (OSError, ValueError, subprocess.TimeoutExpired):
        count = 0
    listed = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    names = listed if listed else [str(index) for index in range(count)]
    return names[:count]


# ----- the supervisor -----


@dataclass(frozen=True)
class WorkerSpec:
    """How to start one worker process; pickled into it, so plain values only."""

    options: WorkerOptions  # name (the slot), device, engine factory and settings, log level
    queue: dict[str, Any]  # QueueSettings, as a dict
    cuda_visible: str | None = None  # the GPU it is pinned to, or None to leave the variable alone
    cancel_grace: float = CANCEL_GRACE


@dataclass
class _Child:
    spec: WorkerSpec
    process: BaseProcess | None = None
    started_at: float = 0.0
    failures: int = 0  # deaths in a row soon after starting
    start_at: float = 0.0  # when to start the next process

    @property
    def name(self) -> str:
        return self.spec.options.name


class Supervisor:
    """Starts the worker processes, restarts the ones that die, stops them all on SIGTERM or SIGINT."""

    def __init__(self, specs: list[WorkerSpec]) -> None:
        self._children = [_Child(spec) for spec in specs]
        self._context = multiprocessing.get_context("spawn")  # CUDA does not survive fork
        self._stopping = threading.Event()

    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        log.info("starting %d worker process(es): %s", len(self._children), self._describe())
        try:
            while not self._stopping.is_set():
                for child in self._children:
                    self._look_after(child)
                self._stopping.wait(0.5)
        finally:
            self._stop_all()
        log.info("all worker processes stopped")
        return 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stopping.is_set():
            log.info("%s: stopping the workers", signal.Signals(signum).name)
        self._stopping.set()

    def _describe(self) -> str:
        parts = []
        for child in self._children:
            pinned = f", CUDA_VISIBLE_DEVICES={child.spec.cuda_visible}" if child.spec.cuda_visible else ""
            parts.append(f"{child.name} ({child.spec.options.device}{pinned})")
        return ", ".join(parts)

    def _look_after(self, child: _Child) -> None:
        now = time.monotonic()
        process = child.process
        if process is not None and not process.is_alive():
            process.join()
            lived = now - child.started_at
            child.failures = 0 if lived >= STABLE_SECONDS else child.failures + 1
            delay = 0.0 if not child.failures else min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (child.failures - 1))
            log.error(
                "%s: worker process %d ended (%s) after %.0f s; starting another in %.0f s",
                child.name,
                process.pid,
                _describe_exit(process.exitcode),
                lived,
                delay,
            )
            process.close()
            child.process, child.start_at = None, now + delay
        if child.process is None and now >= child.start_at:
            self._start(child)

    def _start(self, child: _Child) -> None:
        process = self._context.Process(
            target=run_worker, args=(child.spec,), name=f"stylebot-{child.name}", daemon=False
        )
        process.start()
        child.process, child.started_at = process, time.monotonic()
        log.info("%s: started worker process %d", child.name, process.pid)

    def _stop_all(self) -> None:
        """SIGTERM to every worker (each releases its job), then SIGKILL after the grace period."""
        running = [c.process for c in self._children if c.process is not None and c.process.is_alive()]
        for process in running:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
        grace = max(c.spec.cancel_grace for c in self._children) + 10.0 if self._children else 0.0
        deadline = time.monotonic() + grace
        for process in running:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                log.error("worker process %d did not stop within %.0f s; killing it", process.pid, grace)
                process.kill()
                process.join(5.0)


def _describe_exit(code: int | None) -> str:
    if code is None:
        return "still running"
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


# ----- a worker process -----


def run_worker(spec: WorkerSpec) -> None:
    """A worker process: pin the GPU, load the engine once, serve Celery tasks until told to stop."""
    if spec.cuda_visible is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = spec.cuda_visible  # before anything imports torch
    name = f"{spec.options.name}.{os.getpid()}@{socket.gethostname()}"
    _setup_logging(name, spec.options.log_level)
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


class _StopList:
    """Task ids the bot withdrew, kept ``STOP_LIST_TTL`` seconds; shared by the sidecar and the job."""

    def __init__(self) -> None:
        self._ids: dict[str, float] = {}
        self._lock = threading.Lock()

    def add(self, task_ids: list[str]) -> None:
        now = time.monotonic()
        with self._lock:
            for task_id in task_ids:
                self._ids[task_id] = now
            if len(self._ids) > 1000:
                self._ids = {t: at for t, at in self._ids.items() if now - at < STOP_LIST_TTL}

    def __contains__(self, task_id: object) -> bool:
        with self._lock:
            return task_id in self._ids


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
        self.stops = _StopList()
        self.current: dict[str, _Run] = {}  # task id → the run, for the jobs the engine works on now
        self.idle_since = time.monotonic()
        self.shutting_down = False
        self.exit_code = 0
        self._outbox = _Outbox(settings)
        self._engine = _Engine(self)
        self._sidecar = _Sidecar(self, parent_pid=os.getppid())

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
            body = protocol.event(
                protocol.FAILED, self.name, task_id=task_id, job_id=job_id, code=wire.INPUT_LOST,
                message="a task must carry its images",
            )  # fmt: skip
            self.publish(body)
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
    alone (see ``bot.queue.scheduling.job_group``)."""
    if run.ticket.alone:
        return ("alone", run.task_id)
    try:
        return batch_group(settings_from_dict(run.ticket.settings))
    except (TypeError, ValueError):
        return ("alone", run.task_id)


class _Reporter:
    """``runner.Reports`` for the jobs of a batch: events on the broker instead of tuples on a pipe.

    A job stopped by the bot ends quietly (the bot no longer wants to hear of it); one stopped because
    this worker shuts down is reported ``released``, so the bot queues it again at once.
    """

    def __init__(self, runtime: WorkerRuntime, runs: list[_Run]) -> None:
        self._runtime = runtime
        self._runs = {run.job_id: run for run in runs}
        self._quiet_until = 0.0  # progress reports are skipped until then (the broker did not answer)

    def started(self, job_id: int) -> None:
        self._publish(job_id, protocol.STARTED, device=self._runtime.engine.device_name)

    def progress(self, job_id: int, progress: Progress) -> None:
        if time.monotonic() < self._quiet_until:
            return
        if not self._publish(job_id, protocol.PROGRESS, final=False, progress=progress.to_dict()):
            self._quiet_until = time.monotonic() + PROGRESS_PAUSE

    def done(self, job_id: int, report: ResultReport) -> None:
        self._publish(job_id, protocol.DONE, result=report.to_dict())
        self._runtime.ended(self._runs[job_id])

    def failed(self, job_id: int, code: str, message: str) -> None:
        run = self._runs[job_id]
        reason = run.stop_reason if code == Cancelled.code else None
        if reason == BOT:
            log.info("%s: stopped as the bot asked", run)
        elif reason == SHUTDOWN:
            self._publish(job_id, protocol.RELEASED, reason=f"its worker {self._runtime.name} shut down")
        else:
            self._publish(job_id, protocol.FAILED, code=code, message=message)
        self._runtime.ended(run)

    def _publish(self, job_id: int, kind: str, *, final: bool = True, **fields: Any) -> bool:
        run = self._runs[job_id]
        body = protocol.event(kind, self._runtime.name, task_id=run.task_id, job_id=job_id, **fields)
        return self._runtime.publish(body, final=final)


class _Outbox:
    """Publishes a job's events from the thread that runs jobs, on a connection of its own (kombu
    connections are not shared between threads)."""

    def __init__(self, settings: QueueSettings) -> None:
        self._settings = settings
        self._queue = protocol.events_queue(settings.names)
        self._connection = protocol.connect(settings)
        self._lock = threading.Lock()  # the engine thread and the tasks' threads share the connection
        self._errors = (
            OperationalError,  # what kombu raises once its retries are spent
            *self._connection.connection_errors,
            *self._connection.channel_errors,
            OSError,
        )

    def publish(self, body: dict[str, Any], *, final: bool) -> bool:
        """Send one event; ``False`` if the broker could not be reached. A ``final`` one (started, done,
        failed...) is tried again every second for ``FINAL_PATIENCE`` seconds (a broker restart); a
        progress report is tried once."""
        with self._lock:
            return self._publish_patiently(body, final=final)

    def _publish_patiently(self, body: dict[str, Any], *, final: bool) -> bool:
        deadline = time.monotonic() + (FINAL_PATIENCE if final else 0.0)
        attempts = 0
        while True:
            attempts += 1
            try:
                self._publish_once(body)
                if attempts > 1:
                    log.info(
                        "sent %s of job %s after %d attempts", body["kind"], body.get("job_id"), attempts
                    )
                return True
            except self._errors as err:
                if time.monotonic() >= deadline:
                    level = logging.ERROR if final else logging.WARNING
                    log.log(level, "could not send %s of job %s: %r", body["kind"], body.get("job_id"), err)
                    return False
                if attempts == 1:
                    log.warning("the broker is out of reach (%r); trying again every second", err)
            time.sleep(1.0)

    def _publish_once(self, body: dict[str, Any]) -> None:
        producer = self._connection.Producer(serializer="json")
        producer.publish(
            body,
            exchange="",
            routing_key=self._queue.name,
            declare=[self._queue],
            delivery_mode=2,
            retry=True,
            retry_policy={"max_retries": 1},
        )

    def close(self) -> None:
        with self._lock:
            self._connection.release()


class _Sidecar(threading.Thread):
    """The worker's background thread: stop messages in, heartbeats out, and two watchdogs."""

    def __init__(self, runtime: WorkerRuntime, *, parent_pid: int) -> None:
        super().__init__(name="stylebot-sidecar", daemon=True)
        self._runtime = runtime
        self._settings = runtime.settings
        self._parent_pid = parent_pid
        self._closing = threading.Event()
        self._next_beat = 0.0
        self._orphaned = False
        self._failures = 0  # attempts in a row to reach the broker that failed

    def close(self) -> None:
        """Say goodbye to the bot and end the thread."""
        self._closing.set()
        self.join(5.0)
        self._runtime.publish(protocol.event(protocol.BYE, self._runtime.name), final=False)

    def run(self) -> None:
        """Serve until closed, reconnecting every second: the bot counts a worker it cannot hear from
        for a few heartbeats as gone, so the heartbeats must come back soon after the broker does."""
        while not self._closing.is_set():
            try:
                self._serve()
            except Exception as err:  # a lost connection, most likely: keep the watchdogs going
                self._failures += 1
                if self._failures == 1 or self._failures % 30 == 0:
                    log.warning("control channel: %r; reconnecting every %.0f s", err, RECONNECT_DELAY)
                deadline = time.monotonic() + RECONNECT_DELAY
                while not self._closing.is_set() and time.monotonic() < deadline:
                    self._watch()
                    self._closing.wait(TICK)

    def _serve(self) -> None:
        names = self._settings.names
        with protocol.connect(self._settings, heartbeat=protocol.KOMBU_HEARTBEAT) as connection:
            connection.ensure_connection(max_retries=1)
            own = f"{names.control}.{self._runtime.name}"
            queue = Queue(
                own, protocol.control_exchange(names), exclusive=True, auto_delete=True, durable=False
            )
            producer = connection.Producer(serializer="json")
            with connection.Consumer([queue], callbacks=[self._on_message], accept=["json"], no_ack=True):
                log.info("control channel: connected")
                self._failures = 0
                while not self._closing.is_set():
                    self._watch()
                    self._beat(producer)
                    try:
                        connection.drain_events(timeout=TICK)
                    except TimeoutError:
                        connection.heartbeat_check()

    def _on_message(self, body: dict[str, Any], _message: Any) -> None:
        target = body.get("worker")
        task_ids = body.get("stop") or []
        if task_ids and target in (None, self._runtime.name):
            self._runtime.on_stop_message([str(t) for t in task_ids])

    def _beat(self, producer: Any) -> None:
        now = time.monotonic()
        if now < self._next_beat:
            return
        interval = self._settings.queue_heartbeat_seconds
        self._next_beat = now + interval
        runs = self._runtime.running()
        body = protocol.event(
            protocol.HEARTBEAT,
            self._runtime.name,
            pid=os.getpid(),
            device=self._runtime.engine.device_name,
            interval=interval,
            task_ids=[run.task_id for run in runs],
            job_ids=[run.job_id for run in runs],
            idle_seconds=0.0 if runs else now - self._runtime.idle_since,
            batch_limits=self._runtime.batch_limits,
        )
        names = self._settings.names
        producer.publish(
            body,
            exchange="",
            routing_key=names.events,
            declare=[protocol.events_queue(names)],
            delivery_mode=1,
            expiration=3 * interval,  # RabbitMQ drops heartbeats nobody read in time
        )

    def _watch(self) -> None:
        """A stopped job that will not stop, or a supervisor that is gone: this process must end."""
        now = time.monotonic()
        for run in self._runtime.running():
            asked = run.stop_asked_at
            if asked is not None and now - asked > self._runtime.cancel_grace:
                log.critical(
                    "%s: still running %.0f s after it was asked to stop; ending this process",
                    run,
                    self._runtime.cancel_grace,
                )
                logging.shutdown()
                os._exit(wire.EXIT_HUNG)
        if not self._orphaned and os.getppid() != self._parent_pid:
            self._orphaned = True
            log.error("the supervisor is gone; shutting down")
            os.kill(os.getpid(), signal.SIGTERM)


def _setup_logging(name: str, level: str) -> None:
    """Each line names the process (``supervisor`` or the worker), as several share one stderr."""
    name = name.replace("%", "%%")
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s",
        force=True,
    )


__all__ = ["Supervisor", "WorkerRuntime", "WorkerSpec", "main", "plan_devices", "register_task", "run_worker"]

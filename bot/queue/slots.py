"""A slot of the embedded queue: one local worker process (``engine.workers.pipe``), its pipe and its
reader thread; changed only by the queue's loop (``embedded.EmbeddedQueue``).

*Reading pipes.* One reader thread per process blocks in ``conn.recv()`` and posts each message to the
queue's inbox; it ends by itself at the end of the pipe, which is also how a dead worker is noticed. Sends
run in ``asyncio.to_thread``: a worker that stopped reading must not block the bot's event loop.

*Ending a process.* Asked (``None``) with a grace period when it is listening, then SIGTERM, then SIGKILL;
always reaped, its reader thread joined before its pipe is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any

from bot.db import JobRecord
from bot.queue.dispatcher import Held
from engine.workers import pipe, wire
from engine.workers.batching import parse_limits
from engine.workers.process import describe_exit
from engine.workers.runner import WorkerOptions

log = logging.getLogger(__name__)

KILL_TIMEOUT = 5.0  # how long a terminated (then killed) process gets to go


def auto_devices(requested: str, description: str, gpus: int) -> list[str]:
    """The devices an auto-sized queue runs on, given its first worker's hello (see ``embedded``).

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
    state: str  # "starting", "idle", "busy" or "stopped"
    pid: int | None
    job_ids: tuple[int, ...]  # the jobs it holds
    description: str | None  # from the hello, e.g. "cuda:0 (NVIDIA H100 80GB HBM3)"
    starts: int  # processes started in this slot so far


class State(enum.Enum):
    STARTING = "starting"  # no usable process: waiting for its hello (until ``deadline``), or pausing
    IDLE = "idle"
    BUSY = "busy"
    STOPPED = "stopped"


@dataclass(frozen=True)
class FromWorker:
    slot: Slot
    generation: int  # which process of the slot sent it: messages of a replaced process are ignored
    message: dict[str, Any] | None  # an encoded report (``wire.decode``); None: the pipe ended


@dataclass
class Slot:
    index: int
    name: str
    device: str
    state: State = State.STARTING
    deadline: float = 0.0  # STARTING: with a process, the hello is due by then; without, start one then
    generation: int = 0
    process: BaseProcess | None = None
    conn: Connection | None = None
    reader: threading.Thread | None = None
    jobs: dict[int, Held] = field(default_factory=dict)  # job id → the job; an assignment's jobs
    last_jobs: list[JobRecord] = field(default_factory=list)  # what an idle worker ran last
    description: str | None = None
    gpus: int = 0
    batch_limits: dict[str, int] = field(default_factory=dict)  # per tier, from the hello
    starts: int = 0
    failures: int = 0  # starts in a row that did not lead to a working worker

    def info(self) -> WorkerInfo:
        pid = self.process.pid if self.process is not None else None
        jobs = tuple(sorted(self.jobs))
        return WorkerInfo(self.name, self.device, self.state.value, pid, jobs, self.description, self.starts)

    def greeted(self, hello: wire.Hello) -> None:
        """The worker is ready: its device and batch limits noted."""
        self.description, self.gpus = hello.device, hello.gpus
        self.batch_limits = parse_limits(hello.batch_limits)
        log.info("%s: ready on %s, batches %s", self.name, hello.device, self.batch_limits)

    async def spawn(
        self, context: SpawnContext, options: WorkerOptions, post: Callable[[FromWorker], None]
    ) -> bool:
        """Start a fresh process (a new generation) and its reader thread; ``False`` if it did not start."""
        self.generation += 1
        self.starts += 1
        parent, child = context.Pipe(duplex=True)
        process = context.Process(
            target=pipe.run,
            args=(child, options.replace(name=self.name, device=self.device)),
            name=f"stylebot-{self.name}",
            daemon=True,  # never outlives the bot, even if stop() is never reached
        )
        try:
            await asyncio.to_thread(process.start)
        except Exception:
            log.exception("%s: could not start a worker process", self.name)
            parent.close()
            return False
        finally:
            child.close()  # the child has its own copy; ours would hide the end of the pipe
        self.process, self.conn = process, parent
        self.reader = threading.Thread(
            target=read_pipe,
            args=(parent, post, self, self.generation),
            name=f"stylebot-{self.name}-reader",
            daemon=True,
        )
        self.reader.start()
        log.info("%s: started worker process %d on %s", self.name, process.pid, self.device)
        return True

    async def send(self, message: tuple[Any, ...], *, within: float) -> str | None:
        """A message to the worker, off the event loop; else why the worker, not taking it, is lost."""
        if self.conn is None:
            return "the worker has no pipe"
        try:
            async with asyncio.timeout(within):
                await asyncio.to_thread(self.conn.send, message)
        except (OSError, TimeoutError) as err:
            return f"a message could not be handed to the worker ({err!r})"
        return None

    async def end_process(self, *, grace: float) -> None:
        """End the process: with ``grace``, ask it (``None``) and wait that long; then SIGTERM, then
        SIGKILL. Reaps it, waits for its reader thread and closes the pipe."""
        process, conn, reader = self.process, self.conn, self.reader
        self.process = self.conn = self.reader = None
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
            log.error("%s: process %d survived SIGKILL", self.name, process.pid)
            return
        log.info("%s: worker process %d ended (%s)", self.name, process.pid, describe_exit(process.exitcode))
        if reader is not None:
            await asyncio.to_thread(reader.join, KILL_TIMEOUT)
        if conn is not None and (reader is None or not reader.is_alive()):
            conn.close()  # never under a thread still reading it
        process.close()

    async def exit_code(self) -> int | None:
        """The exit code of a process whose pipe just ended (it may take a moment to be reaped)."""
        process = self.process
        if process is None:
            return None
        await asyncio.to_thread(process.join, 1.0)
        return process.exitcode


def read_pipe(conn: Connection, post: Callable[[FromWorker], None], slot: Slot, generation: int) -> None:
    """A reader thread: hand every message, then the end of the pipe, to the queue's inbox."""
    while True:
        message: dict[str, Any] | None
        try:
            message = conn.recv()
        except (EOFError, OSError):
            message = None
        except Exception:  # a garbled message: the worker is not to be trusted any more
            log.exception("unreadable message from a worker")
            message = None
        try:
            post(FromWorker(slot, generation, message))
        except RuntimeError:  # the event loop is closed: nobody is listening
            return
        if message is None:
            return

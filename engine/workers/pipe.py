"""A worker process of the embedded queue: one engine, fed over a pipe (see ``bot/queue/embedded.py``).

The bot starts ``run`` with the ``spawn`` method, so the child begins with a fresh interpreter: CUDA cannot
survive a ``fork``, and the bot's event loop, threads and sockets must not be copied. This module imports no
torch itself; the engine is built inside the child by ``runner.build_engine``.

Its lifecycle belongs to the bot. The child leaves the bot's session and process group at once
(``os.setsid``), so the SIGTERM a service manager sends to the whole group, or a terminal's Ctrl+C, reaches
only the bot, which then stops its workers itself and puts their jobs back in the queue. A child whose
bot is gone sees its pipe end and exits.

Messages are small plain data (see ``wire``); images stay on the shared disk (tickets by reference):

bot → worker
    ``("assign", [ticket_dict, ...])`` run these jobs; ``("cancel", [job_id, ...])`` stop these jobs (read
    by a thread while the engine computes, so it takes effect at the engine's next step); ``None`` exit.
worker → bot
    ``wire.encode`` of the reports (dicts, as on the broker): ``Hello`` once, after the model loaded (its
    ``batch_limits``: the most jobs of each quality tier it takes in one assignment, ``batching``); then
    ``Started``, ``Progressed``..., and ``Done`` or ``Failed`` per job.

Exit codes are ``wire.EXIT_*``: 0 when asked, ``EXIT_START_FAILED``, ``EXIT_DEVICE_ERROR`` (a CUDA context
does not recover; the bot starts a fresh process).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from engine.workers import wire
from engine.workers.process import setup_logging
from engine.workers.runner import (
    WorkerEngine,
    WorkerOptions,
    build_engine,
    run_assignment,
    visible_gpus,
    worker_batch_limits,
)
from engine.workers.wire import Ticket

log = logging.getLogger(__name__)

# Workers run below the bot's priority: on a machine where the engine keeps every core busy, the bot's
# event loop still answers users at once (the engine loses only what the bot actually uses).
NICENESS = 10


class Inbox:
    """The bot's messages, read by a thread of their own: assignments wait in a queue for the main
    thread, cancels land in a set the running jobs look at between engine steps."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self.assignments: queue.Queue[list[Ticket] | None] = queue.Queue()
        self._cancelled: set[int] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._read, name="stylebot-worker-inbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancelled(self, job_id: int) -> bool:
        with self._lock:
            return job_id in self._cancelled

    def forget(self, job_ids: list[int]) -> None:
        with self._lock:
            self._cancelled.difference_update(job_ids)

    def _read(self) -> None:
        while True:
            try:
                message: Any = self._conn.recv()
            except (EOFError, OSError):
                log.warning("the queue closed the pipe; exiting")
                message = None
            if message is None:
                self.assignments.put(None)
                return
            kind, items = message
            if kind == wire.ASSIGN:
                self.assignments.put([Ticket.from_dict(item) for item in items])
            elif kind == wire.CANCEL:
                with self._lock:
                    self._cancelled.update(int(job_id) for job_id in items)


def run(conn: Connection, options: WorkerOptions) -> None:
    """The child process's target: start the engine, say hello, then serve jobs until told to stop."""
    _leave_the_bots_process_group()
    setup_logging(options.name, options.log_level)
    _lower_priority()
    try:
        engine = build_engine(options)
        engine.load_model()
        description = engine.device_name
        limits = worker_batch_limits(options, engine)
        hello = wire.encode(wire.Hello(description, visible_gpus(description), limits))
    except Exception:
        log.exception("could not start the engine on %s", options.device)
        sys.exit(wire.EXIT_START_FAILED)
    try:
        conn.send(hello)
        log.info("ready on %s", description)
        serve(conn, engine)
    except (BrokenPipeError, ConnectionResetError):
        log.warning("the queue went away; exiting")


def serve(conn: Connection, engine: WorkerEngine) -> None:
    """Run assignments one after the other until ``None`` or the end of the pipe."""
    inbox = Inbox(conn)
    inbox.start()
    reports = wire.ReportSender(lambda report: conn.send(wire.encode(report)))
    while (tickets := inbox.assignments.get()) is not None:
        healthy = run_assignment(engine, tickets, reports, inbox.cancelled)
        inbox.forget([ticket.job_id for ticket in tickets])
        if not healthy:
            sys.exit(wire.EXIT_DEVICE_ERROR)
    log.info("asked to exit")


def _leave_the_bots_process_group() -> None:
    """A session of its own: signals meant for the bot's process group do not reach this worker."""
    with contextlib.suppress(AttributeError, OSError):  # no setsid on Windows; already a group leader
        os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl+C, should the session be shared


def _lower_priority() -> None:
    try:
        os.nice(NICENESS)
    except (AttributeError, OSError) as err:  # no nice() on Windows; a sandbox may refuse it
        log.info("could not lower this worker's priority: %s", err)

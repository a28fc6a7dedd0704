"""The supervisor of ``python -m engine worker``: starts one Celery worker process per slot (a GPU, or the
CPU, times ``--concurrency-per-gpu``), restarts a process that dies after a pause that doubles while
restarts keep failing, and on SIGTERM (or Ctrl+C) stops them all and exits.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import signal
import threading
import time
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from engine.workers.process import backoff, describe_exit
from engine.workers.runner import WorkerOptions

log = logging.getLogger(__name__)

CANCEL_GRACE = 30.0  # a job asked to stop that is still running after this long means a hung engine
STABLE_SECONDS = 60.0  # a worker process that lived this long and died is restarted at once
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0


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
            delay = backoff(child.failures, BACKOFF_FIRST, BACKOFF_MAX)
            log.error(
                "%s: worker process %d ended (%s) after %.0f s; starting another in %.0f s",
                child.name,
                process.pid,
                describe_exit(process.exitcode),
                lived,
                delay,
            )
            process.close()
            child.process, child.start_at = None, now + delay
        if child.process is None and now >= child.start_at:
            self._start(child)

    def _start(self, child: _Child) -> None:
        from engine.workers.celery_worker import run_worker  # Celery, in the worker processes only

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


__all__ = ["CANCEL_GRACE", "Supervisor", "WorkerSpec"]

"""Liveness by heartbeat, for the Celery transport: the workers as their heartbeats describe them.

Each worker process sends a heartbeat every ``QUEUE_HEARTBEAT_SECONDS`` (the tasks it runs, how long it has
been idle, its batch limits); after ``LOST_BEATS`` missed ones it counts as gone, with its jobs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bot.db import JobRecord
from bot.queue.scheduling import batch_limit
from engine.workers.batching import parse_limits

log = logging.getLogger(__name__)

LOST_BEATS = 3  # heartbeats a worker may miss before it counts as gone


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


def record_heartbeat(workers: dict[str, WorkerSeen], name: str, data: Mapping[str, Any]) -> bool:
    """Note a heartbeat of worker ``name``; ``True`` when the workers can take more (a new worker, or new
    batch limits)."""
    now = time.monotonic()
    task_ids = tuple(str(t) for t in data.get("task_ids") or ())
    idle = None if task_ids else now - float(data.get("idle_seconds") or 0.0)
    limits = parse_limits(data.get("batch_limits"))
    worker = workers.get(name)
    changed = worker is None or limits != worker.batch_limits
    if worker is None:
        worker = workers[name] = WorkerSeen(
            name=name,
            device=str(data.get("device")),
            pid=data.get("pid"),
            interval=float(data.get("interval") or 1.0),
            last_seen=now,
            task_ids=task_ids,
            idle_since=idle,
        )
        log.info("worker %s: up on %s, batches %s", name, worker.device, limits)
    worker.batch_limits, worker.last_seen, worker.task_ids, worker.idle_since = limits, now, task_ids, idle
    return changed


def drop_silent(workers: dict[str, WorkerSeen], now: float) -> set[str]:
    """Forget the workers whose heartbeats stopped; their names (their jobs are lost)."""
    gone = [w for w in workers.values() if now - w.last_seen > LOST_BEATS * w.interval]
    for worker in gone:
        del workers[worker.name]
        log.warning(
            "worker %s: no heartbeat for %.1f s; counted as gone", worker.name, now - worker.last_seen
        )
    return {worker.name for worker in gone}


def capacity(workers: Iterable[WorkerSeen], head: JobRecord | None = None) -> int:
    """Tasks the broker may hold, running or waiting: a batch per live worker, plus one batch waiting
    (without batching: one per worker, plus one), batches being the size of ``head``'s tier (the job at
    the head of the fair order; without it, the largest tier's, an upper bound). More would promise jobs to
    the broker early, where a user arriving later could no longer go ahead of them in the round robin."""
    sizes = [w.batch_size if head is None else batch_limit(w.batch_limits, head) for w in workers]
    return sum(sizes) + max(sizes, default=1)

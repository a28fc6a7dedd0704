"""What the bot asks of a job queue, and what a queue tells the bot back.

The bot never runs the engine itself. A handler stores a job row (state ``queued``) and calls
``JobQueue.submit``; from then on the queue's ``ledger.Ledger`` alone moves the row through its states and
reports each step to ``JobEvents``, which the bot implements to talk to the user. ``JobQueue.cancel``
marks the row ``cancelled`` and stops its work. Whichever back end runs, the bot sees only this module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from bot.db import SKETCH_WORKER, JobRecord
from engine.protocol import Progress
from engine.workers.clips import is_accelerated
from engine.workers.wire import ResultReport

if TYPE_CHECKING:
    from bot.queue.ledger import Ledger

RESTART_REASON = "the bot restarted"  # the ``job_retrying`` reason for jobs found running at start-up


@dataclass(frozen=True)
class JobResult:
    """A finished painting, already safe on disk at ``path`` (the queue's results folder)."""

    path: Path
    format: str  # "png" or "jpeg"
    width: int
    height: int
    seconds: float
    notes: tuple[str, ...] = ()  # things the user should hear, e.g. "retried at 768 px: out of memory"
    animation: Path | None = None  # the "forming" figure's GIF, kept beside the painting


class JobEvents(Protocol):
    """Called by the queue on the bot's event loop. Implementations must not raise."""

    async def job_started(self, job_id: int) -> None:
        """The job left the queue and a worker began (its row is ``running``)."""

    async def job_progress(self, job_id: int, progress: Progress) -> None:
        """A progress report from the engine (already throttled by the engine to a few per second)."""

    async def job_finished(self, job_id: int, result: JobResult) -> None:
        """The job is ``done`` and its painting stored; deliver it."""

    async def job_failed(self, job_id: int, code: str, message: str) -> None:
        """The job is ``failed``; ``code`` is an ``engine.errors`` code or a queue code (``worker_lost``)."""

    async def job_retrying(self, job_id: int, reason: str) -> None:
        """A worker died or hung under the job, or the bot restarted (``reason == RESTART_REASON``);
        the job is ``queued`` again."""

    async def queue_changed(self) -> None:
        """Jobs moved (one started or ended): queued jobs' positions may have changed."""


@dataclass(frozen=True)
class QueueStatus:
    backend: str  # "embedded" or "celery"
    workers: int  # worker processes the back end knows of
    busy: int  # of those, running a job now
    healthy: bool  # False when no worker can take a job (all dead, broker unreachable)
    # Per quality tier, the most jobs one worker paints at once (the smallest among the workers); see
    # ``batch_size``.
    batch_limits: Mapping[str, int] = field(default_factory=dict)
    # Every worker that said what it paints on (its hello or heartbeat) is on a GPU, and one at least
    # did: ``accelerated`` below. Clips take longer painted ones then (``bot.services.clips``).
    accelerated: bool = False

    def batch_size(self, quality: str) -> int:
        """Jobs of this tier a worker paints together (``ENGINE_BATCH_SIZE``); 1 when nobody said."""
        return max(1, self.batch_limits.get(quality, 1))


def accelerated(devices: Iterable[str]) -> bool:
    """Whether these workers' devices (as each reported it, e.g. "cuda:0 (NVIDIA H100)") are all GPUs;
    False for none: until a worker says, the bot assumes the slower CPU (a job a CPU worker would refuse
    is never accepted)."""
    every = list(devices)
    return bool(every) and all(is_accelerated(device) for device in every)


def smallest_limits(workers: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Per tier, the smallest batch limit among the workers' (a tier one of them did not name: 1)."""
    every = list(workers)
    tiers = {tier for limits in every for tier in limits}
    return {tier: min(limits.get(tier, 1) for limits in every) for tier in tiers}


class JobQueue(ABC):
    """A job queue back end. One instance per bot process, started once and stopped once."""

    def __init__(self) -> None:
        # Jobs the bot's sketch process holds now (from ``claim`` to ``settle``, ``unclaim`` or ``fail``).
        # Each back end counts them as held when it reconciles, as it counts its workers' jobs: an instant
        # sketch that takes long is not "lost" (and handed to a worker) while it is being made.
        self.sketch_claims: set[int] = set()

    @abstractmethod
    async def start(self, events: JobEvents) -> None:
        """Start the workers and pick up where the last run stopped: jobs left ``running`` by a crash are
        queued again (or failed after their last attempt, with ``job_failed``); queued ones run."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop taking jobs and stop the workers; running jobs go back to ``queued`` without using up an
        attempt (a stop is nobody's fault), to run at the next start."""

    @abstractmethod
    async def submit(self, job_id: int) -> None:
        """The job's row is stored and ``queued``: schedule it."""

    @abstractmethod
    async def cancel(self, job_id: int) -> JobRecord | None:
        """Cancel the job (its row becomes ``cancelled``) and stop its work within seconds, freeing its
        worker; ``None`` when it had already ended."""

    @abstractmethod
    def status(self) -> QueueStatus:
        """For /healthz and /metrics."""

    @property
    def ledger(self) -> Ledger:
        """The back end's ledger, once started: the only writer of job states."""
        raise NotImplementedError

    # ----- jobs settled without a worker: the sketch as the result (``bot.services.sketches``) -----

    async def claim(self, job_id: int) -> JobRecord | None:
        """queued → running for the bot's own sketch process; ``None`` when a worker (or a cancel) got
        there first. A worker handed the job meanwhile finds it taken when it reports ``started`` and
        drops it, as it drops a job cancelled meanwhile."""
        self.sketch_claims.add(job_id)  # held from before the row says running: reconcile never races it
        record = None
        try:
            record = await self.ledger.start(job_id, SKETCH_WORKER)
        finally:
            if record is None:
                self.sketch_claims.discard(job_id)
        return record

    async def settle(
        self,
        job_id: int,
        image: bytes,
        *,
        width: int,
        height: int,
        seconds: float,
        claimed: bool = False,
        notes: tuple[str, ...] = (),
    ) -> bool:
        """The job ends ``done`` with ``image`` (a JPEG) as its painting, through the ledger like any
        result, so delivery is the ordinary ``job_finished``. ``claimed``: ``claim`` already took it.
        ``False`` when the job was no longer queued (or running for the sketch): nothing changed."""
        if not claimed and await self.claim(job_id) is None:
            return False
        report = ResultReport(
            format="jpeg",
            width=width,
            height=height,
            seconds=seconds,
            steps=0,
            device=SKETCH_WORKER,
            losses={},
            notes=notes,
            image=image,
        )
        try:
            return await self.ledger.finish(job_id, report, worker=SKETCH_WORKER)
        finally:
            self.sketch_claims.discard(job_id)

    async def unclaim(self, job_id: int, reason: str) -> None:
        """A claimed job whose sketch could not be made goes to the workers after all (only while the
        sketch process still holds it: never a job a worker took meanwhile)."""
        try:
            given_back = await self.ledger.give_back(job_id, reason)
        finally:
            self.sketch_claims.discard(job_id)
        if given_back:
            await self.submit(job_id)

    async def fail(self, job_id: int, code: str, message: str) -> bool:
        """queued or running → failed, for a reason the job itself gave (a photo that cannot be decoded)."""
        try:
            return await self.ledger.fail(job_id, code, message)
        finally:
            self.sketch_claims.discard(job_id)

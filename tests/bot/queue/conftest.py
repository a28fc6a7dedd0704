"""Fixtures for the queue tests: a migrated SQLite database, recorded events, jobs, and queues that are
always stopped (no worker process outlives a test, even a failing one).

The workers are real spawned processes running ``tests.fakes.engine`` (no torch), so a test pays for a
process start (a fraction of a second) and a few fake steps of 20 ms.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.db import Database, JobRecord
from bot.queue.base import JobResult
from bot.queue.embedded import EmbeddedQueue
from engine.protocol import Progress
from engine.workers.runner import WorkerOptions
from tests.conftest import copy_sqlite
from tests.fakes.images import pattern

WAIT = 15.0  # seconds any single expectation may take before the test fails (never hangs)
FAKE = "tests.fakes.engine:fake_engine"


async def eventually(condition: Callable[[], bool], within: float = WAIT) -> None:
    """For states no event announces (workers coming up or restarting): look every 50 ms."""
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - nothing announces these states
            await asyncio.sleep(0.05)


@dataclass(frozen=True)
class Call:
    name: str  # "started", "progress", "finished", "failed", "retrying", "queue_changed"
    job_id: int | None
    args: tuple[Any, ...] = ()


class RecordingEvents:
    """A ``JobEvents`` that records every call and lets a test await the one it expects."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._changed = asyncio.Condition()

    async def _record(self, name: str, job_id: int | None, *args: Any) -> None:
        async with self._changed:
            self.calls.append(Call(name, job_id, args))
            self._changed.notify_all()

    async def job_started(self, job_id: int) -> None:
        await self._record("started", job_id)

    async def job_progress(self, job_id: int, progress: Progress) -> None:
        await self._record("progress", job_id, progress)

    async def job_finished(self, job_id: int, result: JobResult) -> None:
        await self._record("finished", job_id, result)

    async def job_failed(self, job_id: int, code: str, message: str) -> None:
        await self._record("failed", job_id, code, message)

    async def job_retrying(self, job_id: int, reason: str) -> None:
        await self._record("retrying", job_id, reason)

    async def queue_changed(self) -> None:
        await self._record("queue_changed", None)

    # ----- for the tests -----

    def of(self, job_id: int, name: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.job_id == job_id and (name is None or c.name == name)]

    def names(self, job_id: int) -> list[str]:
        """The job's events in order, progress reports left out."""
        return [c.name for c in self.of(job_id) if c.name != "progress"]

    def started_order(self) -> list[int]:
        return [c.job_id for c in self.calls if c.name == "started" and c.job_id is not None]

    async def wait_until(self, predicate: Callable[[], bool], within: float = WAIT) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(predicate)

    async def wait_for(self, job_id: int, name: str, count: int = 1, within: float = WAIT) -> Call:
        """The ``count``-th ``name`` event of the job, once it happened."""
        await self.wait_until(lambda: len(self.of(job_id, name)) >= count, within)
        return self.of(job_id, name)[count - 1]

    async def finished(self, job_id: int, within: float = WAIT) -> JobResult:
        return (await self.wait_for(job_id, "finished", within=within)).args[0]

    async def painted(self, job_id: int, within: float = WAIT) -> bytes:
        """The finished job's painting, as the queue kept it."""
        return (await self.finished(job_id, within)).path.read_bytes()

    async def failed(self, job_id: int, within: float = WAIT) -> tuple[str, str]:
        code, message = (await self.wait_for(job_id, "failed", within=within)).args
        return code, message

    async def retrying(self, job_id: int, within: float = WAIT) -> str:
        return (await self.wait_for(job_id, "retrying", within=within)).args[0]

    async def ended(self, job_id: int, within: float = WAIT) -> Call:
        """The job's finished or failed event, whichever came."""
        await self.wait_until(lambda: any(c.name in ("finished", "failed") for c in self.of(job_id)), within)
        return next(c for c in self.of(job_id) if c.name in ("finished", "failed"))


class Jobs:
    """Stores jobs the way the bot does: the photo as a file, the row ``queued``."""

    def __init__(self, db: Database, directory: Path) -> None:
        self.db = db
        self.directory = directory
        self.photo = pattern(40, 30, fmt="PNG")

    def flag(self) -> Path:
        """A path for ``marked(..., once=...)``: the first run creates it, later runs see it."""
        return self.directory / f"flag-{uuid.uuid4().hex}"

    async def add(
        self,
        content: bytes | None = None,
        *,
        user_id: int = 1,
        steps: int | None = None,
        max_attempts: int = 2,
        content_path: str | None = None,
        quality: str = "draft",
    ) -> JobRecord:
        if content_path is None:
            path = self.directory / f"content-{uuid.uuid4().hex}.bin"
            path.write_bytes(self.photo if content is None else content)
            content_path = str(path)
        settings: dict[str, Any] = {"quality": quality}
        if steps is not None:
            settings["steps"] = steps
        return await self.db.create_job(
            platform="telegram",
            user_id=user_id,
            chat_id=user_id,
            chat_type="private",
            language_code="en",
            source_message_id=1,
            styles=[{"preset": "starry_night", "weight": 1.0}],
            style_label="The Starry Night",
            settings=settings,
            content_path=content_path,
            max_attempts=max_attempts,
        )


@pytest.fixture
async def db(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Database]:
    database = Database(copy_sqlite(sqlite_template, tmp_path / "stylebot.db"))  # migrated already
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def jobs(db: Database, tmp_path: Path) -> Jobs:
    directory = tmp_path / "jobs"
    directory.mkdir()
    return Jobs(db, directory)


StartQueue = Callable[..., Awaitable[tuple[EmbeddedQueue, RecordingEvents]]]


def fake_options(factory: str = FAKE, **changes: Any) -> WorkerOptions:
    return WorkerOptions(name="w", device="cpu", engine_factory=factory, **changes)


@pytest.fixture
def results_dir(tmp_path: Path) -> Path:
    return tmp_path / "results"


@pytest.fixture
async def start_queue(db: Database, results_dir: Path) -> AsyncIterator[StartQueue]:
    """``await start_queue(workers=1, factory=..., events=..., batch_size=None, **EmbeddedQueue options)`` →
    (queue, events); ``batch_size`` is the workers' ``ENGINE_BATCH_SIZE`` (default: auto, 1 on the CPU).
    Every queue made here is stopped when the test ends, whatever happened."""
    queues: list[EmbeddedQueue] = []

    async def start(
        *,
        workers: int | None = 1,
        factory: str = FAKE,
        events: RecordingEvents | None = None,
        batch_size: int | None = None,
        **options: Any,
    ) -> tuple[EmbeddedQueue, RecordingEvents]:
        engine = {} if batch_size is None else {"engine_batch_size": batch_size}
        worker_options = fake_options(factory, engine_settings=engine)
        queue = EmbeddedQueue(
            db, worker_options=worker_options, results_dir=results_dir, workers=workers, **options
        )
        queues.append(queue)
        events = events or RecordingEvents()
        await queue.start(events)
        return queue, events

    try:
        yield start
    finally:
        for queue in queues:
            await queue.stop()

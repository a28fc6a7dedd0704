"""The dispatcher's rules, once for both transports, without worker processes: a transport that only
records what the dispatcher asks of it, fed the reports a worker would send."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db import Database, JobState
from bot.queue.base import QueueStatus
from bot.queue.dispatcher import Dispatcher, Held
from bot.queue.ledger import BAD_RESULT
from engine.errors import Cancelled
from engine.workers import wire
from tests.bot.queue.conftest import Jobs, RecordingEvents, eventually
from tests.fakes.engine import invert

pytestmark = pytest.mark.timeout(30)


class RecordingTransport(Dispatcher):
    """Holds what it is given and records each hook the dispatcher calls."""

    backend = "test"

    def __init__(self, db: Database, results_dir: Path) -> None:
        super().__init__(db, results_dir=results_dir, stall_seconds=5.0, progress_write_interval=0.0)
        self.held: dict[int, Held] = {}
        self.calls: list[tuple[str, object]] = []

    def status(self) -> QueueStatus:
        return QueueStatus(backend="test", workers=1, busy=len(self.held), healthy=True)

    async def _begin(self) -> None:
        await self.ledger.recover()

    async def _end(self) -> None:
        await self._release(list(self.held.values()))

    async def _handle(self, item: object) -> None:
        self.calls.append(("handle", item))

    async def _on_cancel(self, job_id: int) -> None:
        self.calls.append(("on_cancel", job_id))

    async def _check_clocks(self, now: float) -> None:
        pass

    def _held_ids(self) -> set[int]:
        return set(self.held)

    async def _dispatch(self) -> None:
        pass

    async def _stop_running(self, held: Held) -> None:
        self.calls.append(("stop_running", held.id))

    def _ended(self, held: Held) -> None:
        del self.held[held.id]
        self.calls.append(("ended", held.id))

    async def _device_failed(self, held: Held, message: str) -> None:
        self.calls.append(("device_failed", message))

    async def hand_out(self, job_id: int) -> Held:
        record = await self._db.get_job(job_id)
        assert record is not None
        held = self.held[job_id] = Held(record, await self._ticket(record, by_reference=False))
        return held


Transport = tuple[RecordingTransport, RecordingEvents]


@pytest.fixture
async def transport(db: Database, results_dir: Path) -> AsyncIterator[Transport]:
    queue, events = RecordingTransport(db, results_dir), RecordingEvents()
    await queue.start(events)
    try:
        yield queue, events
    finally:
        await queue.stop()


async def state_of(db: Database, job_id: int) -> tuple[JobState, int]:
    record = await db.get_job(job_id)
    assert record is not None
    return record.state, record.attempts


async def test_reports_take_a_job_from_started_to_done(
    transport: Transport, jobs: Jobs, db: Database
) -> None:
    queue, events = transport
    held = await queue.hand_out((await jobs.add()).id)
    assert held.ticket is not None
    assert held.ticket.carries_its_images  # by value, as asked

    await queue._on_report(held, wire.Started(held.id), "w1")
    assert (held.worker, await state_of(db, held.id)) == ("w1", (JobState.RUNNING, 1))
    painting = invert(jobs.photo)
    result = {
        "format": "png", "width": 40, "height": 30, "seconds": 0.1, "steps": 5, "device": "cpu",
        "losses": {}, "image": base64.b64encode(painting).decode(),
    }  # fmt: skip
    await queue._on_report(held, wire.Done(held.id, result), "w1")

    assert (await events.finished(held.id)).path.read_bytes() == painting
    assert ("ended", held.id) in queue.calls
    assert (await state_of(db, held.id))[0] is JobState.DONE


async def test_a_cancelled_report_nobody_asked_for_retries_the_job(
    transport: Transport, jobs: Jobs, db: Database
) -> None:
    """The rule both transports follow (each has its end-to-end twin): the job was lost, not failed."""
    queue, events = transport
    held = await queue.hand_out((await jobs.add()).id)
    await queue._on_report(held, wire.Started(held.id), "w1")

    await queue._on_report(held, wire.Failed(held.id, Cancelled.code, "stopped"), "w1")

    assert "its worker w1 stopped the job by itself" in await events.retrying(held.id)
    assert await state_of(db, held.id) == (JobState.QUEUED, 1)  # the attempt it used counts


async def test_a_cancelled_report_after_a_cancel_changes_nothing(
    transport: Transport, jobs: Jobs, db: Database
) -> None:
    queue, events = transport
    held = await queue.hand_out((await jobs.add()).id)
    await queue._on_report(held, wire.Started(held.id), "w1")
    assert await queue.cancel(held.id) is not None
    held.cancel_at = time.monotonic()

    await queue._on_report(held, wire.Failed(held.id, Cancelled.code, "stopped"), "w1")

    await eventually(lambda: ("on_cancel", held.id) in queue.calls)  # on the queue's loop
    assert (await state_of(db, held.id))[0] is JobState.CANCELLED
    assert events.names(held.id) == ["started"]


async def test_a_job_cancelled_before_its_worker_started_it_is_stopped(
    transport: Transport, jobs: Jobs, db: Database
) -> None:
    queue, _ = transport
    held = await queue.hand_out((await jobs.add()).id)
    await queue.cancel(held.id)

    await queue._on_report(held, wire.Started(held.id), "w1")

    assert ("stop_running", held.id) in queue.calls
    assert not held.started


async def test_a_device_error_is_the_transports_and_a_bad_result_fails_the_job(
    transport: Transport, jobs: Jobs, db: Database
) -> None:
    queue, events = transport
    broken, forged = [await queue.hand_out((await jobs.add()).id) for _ in range(2)]
    for held in (broken, forged):
        await queue._on_report(held, wire.Started(held.id), "w1")

    await queue._on_report(broken, wire.Failed(broken.id, wire.DEVICE_ERROR, "CUDA error"), "w1")
    await queue._on_report(forged, wire.Done(forged.id, {"format": "exe"}), "w1")

    assert ("device_failed", "CUDA error") in queue.calls
    assert (await state_of(db, broken.id))[0] is JobState.RUNNING  # the transport decides: worker lost
    assert (await events.failed(forged.id))[0] == BAD_RESULT


async def test_stop_releases_the_started_jobs_with_their_attempt(
    db: Database, results_dir: Path, jobs: Jobs
) -> None:
    queue, events = RecordingTransport(db, results_dir), RecordingEvents()
    await queue.start(events)
    held = await queue.hand_out((await jobs.add()).id)
    await queue._on_report(held, wire.Started(held.id), "w1")

    await queue.stop()

    assert await state_of(db, held.id) == (JobState.QUEUED, 0)


async def test_what_arrived_before_stop_is_handled_before_the_workers_stop(
    db: Database, results_dir: Path
) -> None:
    """One inbox for both transports: an item a thread posted just before stop() (a result on its way)
    is handled, by the loop or by stop() itself, before ``_end`` stops the workers and releases jobs."""
    queue = RecordingTransport(db, results_dir)
    await queue.start(RecordingEvents())
    end = queue._end

    async def ending() -> None:
        queue.calls.append(("end", None))
        await end()

    queue._end = ending  # type: ignore[method-assign]
    queue._tell("a late report")
    await queue.stop()

    assert queue.calls[-2:] == [("handle", "a late report"), ("end", None)]

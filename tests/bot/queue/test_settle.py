"""A job settled with its sketch as the result (``JobQueue.settle``): through the ledger, like a worker's
result, on the embedded queue with a real worker process beside it."""

from __future__ import annotations

import pytest

from bot.db import Database, JobState
from bot.queue.base import SKETCH_WORKER
from tests.bot.queue.conftest import Jobs, StartQueue
from tests.fakes import images
from tests.fakes.engine import invert, marked

pytestmark = pytest.mark.timeout(120)

SKETCH = images.jpeg(40, 30)


async def test_a_queued_job_is_settled_with_its_sketch(
    start_queue: StartQueue, jobs: Jobs, db: Database
) -> None:
    queue, events = await start_queue()
    busy = await jobs.add(marked("SLOW", jobs.photo), user_id=2)  # the only worker is taken
    await queue.submit(busy.id)
    await events.wait_for(busy.id, "started")
    job = await jobs.add()
    await queue.submit(job.id)

    assert await queue.settle(job.id, SKETCH, width=40, height=30, seconds=0.2)
    result = await events.finished(job.id)
    assert (result.path.name, result.path.read_bytes(), result.format) == (f"{job.id}.jpg", SKETCH, "jpeg")
    record = await db.get_job(job.id)
    assert record is not None
    assert (record.state, record.worker) == (JobState.DONE, SKETCH_WORKER)
    assert events.names(job.id) == ["started", "finished"]

    assert not await queue.settle(job.id, SKETCH, width=40, height=30, seconds=0.2)  # done: nothing changes
    assert not await queue.settle(busy.id, SKETCH, width=40, height=30, seconds=0.2)  # being painted
    assert (await db.get_job(busy.id)).state is JobState.RUNNING  # type: ignore[union-attr]
    await queue.cancel(busy.id)


async def test_a_worker_handed_the_job_meanwhile_drops_it(
    start_queue: StartQueue, jobs: Jobs, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sketch is kept between the worker's assignment and its ``started``: the worker's claim finds the
    job taken, the worker stops it, and is free for the next job."""
    queue, events = await start_queue()
    job = await jobs.add(marked("SLOW", jobs.photo))
    claim = queue.ledger.start

    async def start(job_id: int, worker: str):
        if job_id == job.id and worker != SKETCH_WORKER:
            assert await queue.settle(job.id, SKETCH, width=40, height=30, seconds=0.2)
        return await claim(job_id, worker)

    monkeypatch.setattr(queue.ledger, "start", start)
    await queue.submit(job.id)
    assert (await events.finished(job.id)).path.read_bytes() == SKETCH
    record = await db.get_job(job.id)
    assert record is not None
    assert (record.state, record.worker) == (JobState.DONE, SKETCH_WORKER)

    after = await jobs.add(user_id=3)  # the worker dropped the slow job and paints the next one
    await queue.submit(after.id)
    assert await events.painted(after.id) == invert(jobs.photo)
    assert events.names(job.id) == ["started", "finished"]  # one start (the sketch's), one result


async def test_a_claimed_job_goes_to_the_workers_when_no_sketch_can_be_made(
    start_queue: StartQueue, jobs: Jobs, db: Database
) -> None:
    queue, events = await start_queue()
    job = await jobs.add(quality="instant")
    assert await queue.claim(job.id) is not None
    assert await queue.claim(job.id) is None  # taken: once
    await queue.unclaim(job.id, "no sketch here")
    assert await events.painted(job.id) == invert(jobs.photo)  # the worker painted it after all
    record = await db.get_job(job.id)
    assert record is not None
    assert record.attempts == 1
    assert "retrying" not in events.names(job.id)  # nothing the user needs to hear about

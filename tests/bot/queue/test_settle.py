"""A job settled with its sketch as the result (``JobQueue.settle``): through the ledger, like a worker's
result, on the embedded queue with a real worker process beside it."""

from __future__ import annotations

import pytest

from bot.db import Database, JobState
from bot.queue import ledger as ledger_module
from bot.queue.base import SKETCH_WORKER
from tests.bot.queue.conftest import Jobs, StartQueue, eventually
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


async def test_a_job_the_sketch_process_holds_is_never_reconciled_away(
    start_queue: StartQueue, jobs: Jobs, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instant sketch that takes longer than ``RECONCILE_GRACE`` is held, like a worker's job: not lost
    (no attempt used, no retry notice), not handed to a worker."""
    monkeypatch.setattr(ledger_module, "RECONCILE_GRACE", 0.0)  # every running row is old enough
    queue, events = await start_queue()
    seen: list[set[int]] = []
    reconcile = queue.ledger.reconcile

    async def recording(held, *, grace=None):
        seen.append(set(held))
        return await reconcile(held, grace=grace)

    monkeypatch.setattr(queue.ledger, "reconcile", recording)
    job = await jobs.add(quality="instant")
    assert await queue.claim(job.id) is not None
    seen.clear()
    await queue.submit(job.id)  # wakes the dispatcher, which reconciles after dispatching
    await eventually(lambda: len(seen) >= 2)
    assert all(job.id in held for held in seen)
    record = await db.get_job(job.id)
    assert record is not None
    assert (record.state, record.worker, record.attempts) == (JobState.RUNNING, SKETCH_WORKER, 1)
    assert "retrying" not in events.names(job.id)

    assert await queue.settle(job.id, SKETCH, width=40, height=30, seconds=0.2, claimed=True)
    assert (await events.finished(job.id)).path.read_bytes() == SKETCH
    assert job.id not in queue.sketch_claims  # settled: nothing held any more


async def test_the_sketch_process_leaves_a_job_a_worker_took_alone(
    start_queue: StartQueue, jobs: Jobs, db: Database
) -> None:
    """Its claim was lost meanwhile (a restart, a reconcile) and a worker holds the job now: neither giving
    it back nor settling it touches the worker's job."""
    queue, events = await start_queue()
    busy = await jobs.add(marked("SLOW", jobs.photo), user_id=2)  # the only worker is taken
    await queue.submit(busy.id)
    await events.wait_for(busy.id, "started")
    job = await jobs.add(quality="instant")
    assert await queue.claim(job.id) is not None
    assert await db.requeue_job(job.id, "lost") is not None  # as ``reconcile`` did before the fix
    assert await db.claim_job(job.id, "worker-x") is not None  # ... and a worker took it

    await queue.unclaim(job.id, "no sketch here")
    assert not await queue.settle(job.id, SKETCH, width=40, height=30, seconds=0.2, claimed=True)
    record = await db.get_job(job.id)
    assert record is not None
    assert (record.state, record.worker, record.attempts) == (JobState.RUNNING, "worker-x", 2)
    assert not (queue.ledger.results_dir / f"{job.id}.jpg").exists()
    assert "finished" not in events.names(job.id)
    await queue.cancel(job.id)
    await queue.cancel(busy.id)

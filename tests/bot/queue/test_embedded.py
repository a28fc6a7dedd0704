"""The embedded queue end to end: real spawned workers (the fake engine), a real SQLite database.

Every wait is bounded (``conftest.WAIT``, and the module's pytest timeout), and every queue is stopped by
the ``start_queue`` fixture, so a failing test neither hangs the suite nor leaves processes behind.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.db import Database, JobState
from bot.queue import dispatcher, embedded
from bot.queue import ledger as ledger_module
from bot.queue.base import JobResult
from bot.queue.embedded import EmbeddedQueue, auto_devices
from bot.queue.slots import Slot
from engine.workers import pipe, wire
from engine.workers.runner import WorkerOptions
from tests.bot.queue.conftest import Jobs, RecordingEvents, StartQueue, eventually
from tests.engine.samples import encode, painting, photo
from tests.fakes.engine import invert, marked

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[3]


async def state_of(db: Database, job_id: int) -> JobState:
    record = await db.get_job(job_id)
    assert record is not None
    return record.state


def test_bot_queue_and_worker_modules_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import bot.queue.embedded, bot.queue.scheduling, bot.queue.ledger, bot.queue.dispatcher\n"
        "import engine.workers.pipe, engine.workers.runner, engine.workers.wire, engine.workers.process\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_auto_devices() -> None:
    assert auto_devices("auto", "cpu (2 threads)", 0) == ["auto"]
    assert auto_devices("auto", "cuda (NVIDIA H100)", 1) == ["auto"]
    assert auto_devices("auto", "cuda (NVIDIA H100)", 3) == ["cuda:0", "cuda:1", "cuda:2"]
    assert auto_devices("cuda", "cuda (NVIDIA H100)", 2) == ["cuda:0", "cuda:1"]
    assert auto_devices("cuda:1", "cuda:1 (NVIDIA H100)", 2) == ["cuda:1"]  # one GPU was named
    assert auto_devices("mps", "mps", 0) == ["mps"]


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="workers"):
        EmbeddedQueue(None, worker_options=WorkerOptions(), results_dir=Path(), workers=0)  # type: ignore[arg-type]


async def test_a_job_runs_and_its_result_comes_back(
    start_queue: StartQueue, jobs: Jobs, db: Database, results_dir: Path
) -> None:
    queue, events = await start_queue()
    job = await jobs.add()
    await queue.submit(job.id)

    result = await events.finished(job.id)
    assert result.path == results_dir / f"{job.id}.png"
    assert result.path.read_bytes() == invert(jobs.photo)  # the fake engine's answer, kept by the bot
    assert (result.width, result.height, result.format) == (40, 30, "png")
    assert events.names(job.id) == ["started", "finished"]
    assert any(c.name == "queue_changed" for c in events.calls)
    record = await db.get_job(job.id)
    assert record is not None
    assert record.state is JobState.DONE
    assert (record.result_width, record.result_height, record.attempts, record.worker) == (40, 30, 1, "w-0")
    assert record.engine_seconds is not None
    assert record.engine_seconds > 0
    status = queue.status()  # the worker was freed before the result was announced
    assert (status.backend, status.workers, status.busy, status.healthy) == ("embedded", 1, 0, True)
    [info] = queue.worker_info()
    assert (info.state, info.starts, info.description) == ("idle", 1, "cpu (fake)")


async def test_images_cross_the_pipe_by_reference_not_by_value(
    start_queue: StartQueue, jobs: Jobs, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker shares the bot's disk: the ticket names the photo's file and the file to paint into,
    and the worker's report carries no image; the bot then keeps the painting it finds there."""
    crossed: list[tuple[Any, ...]] = []
    send, on_message = Slot.send, EmbeddedQueue._on_message

    async def sent(self: Slot, message: tuple[Any, ...], *, within: float) -> str | None:
        crossed.append(("to worker", *message))
        return await send(self, message, within=within)

    async def received(self: EmbeddedQueue, slot: Any, message: dict[str, Any]) -> None:
        crossed.append(("from worker", message))
        await on_message(self, slot, message)

    monkeypatch.setattr(Slot, "send", sent)
    monkeypatch.setattr(EmbeddedQueue, "_on_message", received)
    queue, events = await start_queue()
    job = await jobs.add()
    await queue.submit(job.id)
    assert await events.painted(job.id) == invert(jobs.photo)

    [(_, _, [ticket])] = [m for m in crossed if m[:2] == ("to worker", wire.ASSIGN)]
    assert ticket["job_id"] == job.id
    assert ticket["content"] == {"path": job.content_path}
    assert ticket["result_path"] is not None
    assert not await asyncio.to_thread(os.path.exists, ticket["result_path"])  # moved into the results
    [(_, done)] = [m for m in crossed if m[0] == "from worker" and m[1]["kind"] == wire.DONE]
    assert wire.decode(done) == wire.Done(job.id, done["result"])  # one report type, as on the broker
    assert done["result"]["image"] is None
    assert sum(len(repr(m)) for m in crossed) < len(jobs.photo) + 4000  # no image in any message


async def test_progress_crosses_the_process_boundary(
    start_queue: StartQueue, jobs: Jobs, db: Database
) -> None:
    queue, events = await start_queue(progress_write_interval=0.0)
    job = await jobs.add(steps=20)
    await queue.submit(job.id)

    third = (await events.wait_for(job.id, "progress", count=3)).args[0]
    assert third.total_steps == 20
    assert third.step >= 3
    record = await db.get_job(job.id)
    assert record is not None
    assert record.state is JobState.RUNNING
    assert record.progress is not None
    assert 0 < record.progress < 1
    assert record.heartbeat_at is not None

    await events.finished(job.id)
    steps = [c.args[0].step for c in events.of(job.id, "progress")]
    assert steps == sorted(steps)
    assert steps[-1] == 20
    assert events.names(job.id) == ["started", "finished"]


async def test_progress_writes_are_throttled(start_queue: StartQueue, jobs: Jobs, db: Database) -> None:
    queue, events = await start_queue(progress_write_interval=60.0)
    job = await jobs.add(steps=20)
    await queue.submit(job.id)
    await events.wait_for(job.id, "progress", count=8)
    record = await db.get_job(job.id)
    assert record is not None
    assert record.progress == pytest.approx(1 / 20)  # only the first report was stored
    await events.finished(job.id)


async def test_round_robin_between_users(start_queue: StartQueue, jobs: Jobs) -> None:
    queue, events = await start_queue(workers=1)
    heavy = [await jobs.add(user_id=1) for _ in range(5)]
    light = await jobs.add(user_id=2)
    for job in [*heavy, light]:
        await queue.submit(job.id)

    for job in [*heavy, light]:
        await events.finished(job.id)
    assert events.started_order() == [heavy[0].id, light.id, *(j.id for j in heavy[1:])]


async def test_two_workers_run_jobs_side_by_side(start_queue: StartQueue, jobs: Jobs) -> None:
    queue, events = await start_queue(workers=2)
    await eventually(lambda: [info.state for info in queue.worker_info()] == ["idle", "idle"])
    first, second = await jobs.add(user_id=1, steps=30), await jobs.add(user_id=2, steps=30)
    await queue.submit(first.id)
    await queue.submit(second.id)

    await events.wait_until(lambda: len(events.started_order()) == 2)
    assert not events.of(first.id, "finished")
    assert not events.of(second.id, "finished")
    assert queue.status().busy == 2
    await events.finished(first.id)
    await events.finished(second.id)
    assert {info.name for info in queue.worker_info()} == {"w-0", "w-1"}


async def test_cancelling_a_running_job_stops_it_and_frees_the_worker(
    start_queue: StartQueue, jobs: Jobs, db: Database
) -> None:
    queue, events = await start_queue()
    slow = await jobs.add(marked("SLOW", jobs.photo))
    after = await jobs.add()
    await queue.submit(slow.id)
    await queue.submit(after.id)
    await events.wait_for(slow.id, "progress")

    cancelled_at = time.monotonic()
    assert await queue.cancel(slow.id) is not None
    await events.wait_for(after.id, "started", within=2.0)
    assert time.monotonic() - cancelled_at < 1.5
    await events.finished(after.id)

    assert events.names(slow.id) == ["started"]  # neither finished nor failed
    assert await state_of(db, slow.id) is JobState.CANCELLED
    assert queue.worker_info()[0].starts == 1  # stopped by the engine, not by killing the worker


async def test_a_cancelled_queued_job_never_runs(start_queue: StartQueue, jobs: Jobs, db: Database) -> None:
    queue, events = await start_queue()
    slow = await jobs.add(marked("SLOW", jobs.photo))
    waiting = await jobs.add(user_id=2)
    await queue.submit(slow.id)
    await queue.submit(waiting.id)
    await events.wait_for(slow.id, "started")

    assert await queue.cancel(waiting.id) is not None
    assert await queue.cancel(slow.id) is not None
    assert await queue.cancel(slow.id) is None  # already cancelled
    last = await jobs.add(user_id=3)
    await queue.submit(last.id)
    await events.finished(last.id)

    assert events.names(waiting.id) == []
    record = await db.get_job(waiting.id)
    assert record is not None
    assert (record.state, record.attempts) == (JobState.CANCELLED, 0)


@pytest.mark.parametrize("write_interval", [0.0, 60.0], ids=["progress-refused", "result-refused"])
async def test_a_job_cancelled_behind_the_queues_back_is_not_resurrected(
    start_queue: StartQueue, jobs: Jobs, db: Database, write_interval: float
) -> None:
    """The row is cancelled but ``cancel()`` is never called. With frequent progress writes the refused
    write stops the work; without, the late result is refused. Either way the job stays cancelled."""
    queue, events = await start_queue(progress_write_interval=write_interval)
    job = await jobs.add(steps=20)
    after = await jobs.add(user_id=2)
    await queue.submit(job.id)
    await events.wait_for(job.id, "progress")
    await db.cancel_job(job.id)
    await queue.submit(after.id)

    await events.finished(after.id)
    assert events.names(job.id) == ["started"]
    assert await state_of(db, job.id) is JobState.CANCELLED
    assert queue.worker_info()[0].starts == 1


async def test_a_worker_that_dies_is_replaced_and_its_job_retried(
    start_queue: StartQueue, jobs: Jobs, db: Database
) -> None:
    queue, events = await start_queue()
    job = await jobs.add(marked("CRASH", jobs.photo, once=jobs.flag()))
    await queue.submit(job.id)

    assert await events.painted(job.id) == invert(jobs.photo)
    assert events.names(job.id) == ["started", "retrying", "started", "finished"]
    assert "exit code 3" in await events.retrying(job.id)
    record = await db.get_job(job.id)
    assert record is not None
    assert (record.state, record.attempts) == (JobState.DONE, 2)
    assert queue.worker_info()[0].starts == 2


async def test_a_job_that_kills_its_worker_twice_fails(
    start_queue: StartQueue, jobs: Jobs, db: Database
) -> None:
    queue, events = await start_queue()
    job = await jobs.add(marked("CRASH", jobs.photo))
    await queue.submit(job.id)

    code, message = await events.failed(job.id)
    assert code == "worker_lost"
    assert "exit code 3" in message
    assert events.names(job.id) == ["started", "retrying", "started", "failed"]
    record = await db.get_job(job.id)
    assert record is not None
    assert (record.state, record.error_code, record.attempts) == (JobState.FAILED, "worker_lost", 2)

    after = await jobs.add()  # the slot has a fresh worker again
    await queue.submit(after.id)
    await events.finished(after.id)
    assert queue.worker_info()[0].starts == 3


async def test_a_hung_worker_is_replaced_after_stall_seconds(
    start_queue: StartQueue, jobs: Jobs, db: Database
) -> None:
    queue, events = await start_queue(stall_seconds=1.0)
    job = await jobs.add(marked("HANG", jobs.photo, once=jobs.flag()))
    await queue.submit(job.id)

    reason = await events.retrying(job.id)
    assert "hung" in reason
    await events.finished(job.id)
    assert events.names(job.id) == ["started", "retrying", "started", "finished"]
    assert queue.worker_info()[0].starts == 2


async def test_a_worker_ignoring_a_cancel_is_replaced(
    start_queue: StartQueue, jobs: Jobs, db: Database
) -> None:
    queue, events = await start_queue(cancel_grace=0.5)
    job = await jobs.add(marked("HANG"))
    after = await jobs.add(user_id=2)
    await queue.submit(job.id)
    await queue.submit(after.id)
    await events.wait_for(job.id, "progress")

    await queue.cancel(job.id)
    await events.finished(after.id)
    assert events.names(job.id) == ["started"]
    assert await state_of(db, job.id) is JobState.CANCELLED
    assert queue.worker_info()[0].starts == 2


async def test_a_cuda_error_restarts_the_worker_and_retries_the_job(
    start_queue: StartQueue, jobs: Jobs, db: Database
) -> None:
    queue, events = await start_queue()
    job = await jobs.add(marked("CUDAERR", jobs.photo, once=jobs.flag()))
    await queue.submit(job.id)

    assert "CUDA error" in await events.retrying(job.id)
    await events.finished(job.id)
    assert events.names(job.id) == ["started", "retrying", "started", "finished"]
    assert queue.worker_info()[0].starts == 2


async def test_a_cancelled_report_nobody_asked_for_retries_the_job(
    start_queue: StartQueue, jobs: Jobs, db: Database
) -> None:
    """A worker that says "cancelled" for a job nobody cancelled lost the job (its engine stopped by
    itself): the job is retried, as on the Celery queue (``test_celery``'s twin), not failed; the worker
    goes on."""
    queue, events = await start_queue()
    job = await jobs.add(marked("QUIT", jobs.photo, once=jobs.flag()))
    await queue.submit(job.id)

    assert await events.painted(job.id) == invert(jobs.photo)
    assert events.names(job.id) == ["started", "retrying", "started", "finished"]
    assert "stopped the job by itself" in await events.retrying(job.id)
    record = await db.get_job(job.id)
    assert record is not None
    assert (record.state, record.attempts) == (JobState.DONE, 2)
    assert queue.worker_info()[0].starts == 1  # the worker itself is fine


async def test_a_bad_image_fails_the_job_but_not_the_worker(
    start_queue: StartQueue, jobs: Jobs, db: Database
) -> None:
    queue, events = await start_queue()
    job = await jobs.add(marked("BADIMG", jobs.photo))
    await queue.submit(job.id)
    pid = None

    code, _ = await events.failed(job.id)
    assert code == "corrupt_image"
    assert events.names(job.id) == ["started", "failed"]
    record = await db.get_job(job.id)
    assert record is not None
    assert (record.state, record.error_code, record.attempts) == (JobState.FAILED, "corrupt_image", 1)
    [info] = queue.worker_info()
    pid = info.pid
    after = await jobs.add()
    await queue.submit(after.id)
    await events.finished(after.id)
    [info] = queue.worker_info()
    assert (info.starts, info.pid) == (1, pid)


async def test_a_job_whose_photo_is_gone_fails_with_input_lost(
    start_queue: StartQueue, jobs: Jobs, db: Database, tmp_path: Path
) -> None:
    queue, events = await start_queue()
    job = await jobs.add(content_path=str(tmp_path / "deleted.jpg"))
    await queue.submit(job.id)

    code, message = await events.failed(job.id)
    assert code == "input_lost"
    assert "missing" in message
    assert await state_of(db, job.id) is JobState.FAILED
    after = await jobs.add()
    await queue.submit(after.id)
    await events.finished(after.id)


async def test_a_stop_puts_the_running_job_back_without_using_an_attempt(
    start_queue: StartQueue, jobs: Jobs, db: Database
) -> None:
    first, first_events = await start_queue()
    running = await jobs.add(user_id=1, steps=25)
    queued = await jobs.add(user_id=2)
    await first.submit(running.id)
    await first.submit(queued.id)
    await first_events.wait_for(running.id, "progress")
    await first.stop()
    record = await db.get_job(running.id)
    assert record is not None
    assert (record.state, record.attempts) == (JobState.QUEUED, 0)  # a stop is nobody's fault
    assert await state_of(db, queued.id) is JobState.QUEUED

    _, events = await start_queue()
    await events.finished(running.id)
    await events.finished(queued.id)
    assert await events.retrying(running.id) == "the bot restarted"  # its owner hears why it waited
    assert events.names(running.id) == ["retrying", "started", "finished"]
    record = await db.get_job(running.id)
    assert record is not None
    assert (record.state, record.attempts) == (JobState.DONE, 1)


async def test_a_restart_after_a_crash_retries_the_running_job(
    start_queue: StartQueue, jobs: Jobs, db: Database
) -> None:
    job = await jobs.add()
    assert await db.claim_job(job.id, "w-0") is not None  # running when the last bot died

    _, events = await start_queue()
    assert await events.retrying(job.id) == "the bot restarted"
    await events.finished(job.id)
    record = await db.get_job(job.id)
    assert record is not None
    assert (record.state, record.attempts) == (JobState.DONE, 2)


async def test_a_restart_fails_a_job_on_its_last_attempt(
    start_queue: StartQueue, jobs: Jobs, db: Database
) -> None:
    job = await jobs.add(max_attempts=1)
    assert await db.claim_job(job.id, "w-0") is not None  # running when the last bot died

    _, events = await start_queue()
    code, message = await events.failed(job.id)
    assert (code, message) == ("worker_lost", "the bot restarted")
    assert await state_of(db, job.id) is JobState.FAILED


async def test_workers_run_below_the_bots_priority(start_queue: StartQueue) -> None:
    """So that the bot answers users at once while the engine keeps every core busy."""
    queue, _ = await start_queue()
    await eventually(lambda: [info.state for info in queue.worker_info()] == ["idle"])
    (pid,) = [info.pid for info in queue.worker_info()]
    assert pid is not None
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    assert os.getpriority(os.PRIO_PROCESS, pid) == min(ours + pipe.NICENESS, 19)


async def test_stop_leaves_no_worker_process(start_queue: StartQueue, jobs: Jobs) -> None:
    queue, events = await start_queue(workers=2)
    busy = await jobs.add(marked("HANG"))
    await queue.submit(busy.id)
    await events.wait_for(busy.id, "progress")
    await eventually(lambda: all(info.state in ("idle", "busy") for info in queue.worker_info()))
    pids = [info.pid for info in queue.worker_info()]
    assert len(pids) == 2
    assert None not in pids

    stopped_at = time.monotonic()
    await queue.stop()
    assert time.monotonic() - stopped_at < 5
    assert not [p for p in multiprocessing.active_children() if p.pid in pids]
    for pid in pids:
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not queue.status().healthy
    await queue.stop()  # a second stop is harmless


def test_auto_worker_count_follows_the_gpus_the_first_worker_sees() -> None:
    """The wiring behind ``auto_devices`` (a machine with GPUs is not needed to check it)."""
    queue = EmbeddedQueue(None, worker_options=WorkerOptions(device="auto"), results_dir=Path())  # type: ignore[arg-type]
    added: list[str] = []
    queue._add_slot = added.append  # type: ignore[method-assign]
    first = Slot(index=0, name="worker-0", device="auto")
    first.description, first.gpus = "cuda (NVIDIA H100 80GB HBM3)", 3
    queue._ready(first)
    assert (first.device, added, first.state.value) == ("cuda:0", ["cuda:1", "cuda:2"], "idle")
    queue._ready(first)  # a restart of the first worker adds nothing
    assert added == ["cuda:1", "cuda:2"]


async def test_a_slow_bot_handler_does_not_hold_up_the_workers(start_queue: StartQueue, jobs: Jobs) -> None:
    """The bot may take seconds to deliver a result; meanwhile the worker goes on with the next job."""
    gate = asyncio.Event()

    class SlowDelivery(RecordingEvents):
        async def job_finished(self, job_id: int, result: JobResult) -> None:
            await super().job_finished(job_id, result)
            await gate.wait()

    queue, events = await start_queue(events=SlowDelivery())
    first, second = await jobs.add(user_id=1), await jobs.add(user_id=2)
    await queue.submit(first.id)
    await queue.submit(second.id)
    await events.finished(second.id)  # while the first result's delivery is still blocked
    assert events.names(first.id) == ["started", "finished"]
    gate.set()


async def test_auto_worker_count_on_the_cpu_is_one(start_queue: StartQueue, jobs: Jobs) -> None:
    queue, events = await start_queue(workers=None)
    job = await jobs.add()
    await queue.submit(job.id)
    await events.finished(job.id)
    assert queue.status().workers == 1


@pytest.mark.parametrize(
    ("factory", "options"),
    [
        ("tests.fakes.engine:broken_engine", {}),
        ("tests.fakes.engine:mute_engine", {"start_timeout": 0.5}),
    ],
    ids=["crashes-at-start", "never-says-hello"],
)
async def test_a_worker_that_cannot_start_is_retried_and_reported_unhealthy(
    start_queue: StartQueue,
    jobs: Jobs,
    db: Database,
    factory: str,
    options: dict[str, float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(embedded, "BACKOFF_FIRST", 0.2)
    queue, events = await start_queue(factory=factory, **options)
    job = await jobs.add()
    await queue.submit(job.id)

    await eventually(lambda: queue.worker_info()[0].starts >= 2)
    status = queue.status()
    assert (status.workers, status.healthy) == (1, False)
    assert await state_of(db, job.id) is JobState.QUEUED
    assert events.names(job.id) == []
    stopped_at = time.monotonic()
    await queue.stop()  # during a back-off pause or a start: no waiting for it
    assert time.monotonic() - stopped_at < 5


@pytest.mark.slow
async def test_the_real_engine_in_a_worker(db: Database, jobs: Jobs, tmp_path: Path) -> None:
    """One tiny job through torch and the VGG weights in a spawned worker, on the CPU."""
    style = tmp_path / "style.png"
    style.write_bytes(encode(painting(64, 64)))
    content = tmp_path / "photo.png"
    content.write_bytes(encode(photo(64, 48)))
    job = await db.create_job(
        platform="telegram",
        user_id=1,
        chat_id=1,
        chat_type="private",
        language_code="en",
        source_message_id=1,
        styles=[{"image": 0, "weight": 1.0}],
        style_label="my painting",
        settings={"quality": "draft", "steps": 3, "size": 64, "multiscale": False},
        content_path=str(content),
        style_paths=[str(style)],
    )
    options = WorkerOptions(
        name="real",
        device="cpu",
        engine_factory="engine.api:Engine.from_settings",
        engine_settings={"styles_dir": str(tmp_path / "styles"), "style_cache_dir": str(tmp_path / "stats")},
    )
    queue = EmbeddedQueue(db, worker_options=options, results_dir=tmp_path / "results", workers=1)
    events = RecordingEvents()
    try:
        await queue.start(events)
        await queue.submit(job.id)
        call = await events.ended(job.id, within=100)
        assert call.name == "finished", call.args
        result = call.args[0]
        assert (result.width, result.height, result.format) == (64, 48, "png")
        with Image.open(io.BytesIO(result.path.read_bytes())) as image:
            assert image.size == (64, 48)
        assert queue.worker_info()[0].description.startswith("cpu")
        assert await state_of(db, job.id) is JobState.DONE
    finally:
        await queue.stop()


async def test_a_job_whose_finish_failed_is_not_left_running(
    start_queue: StartQueue, jobs: Jobs, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database refused the ``done`` write once (a lock timeout, a dropped connection): the job, no
    longer held by any worker, is found by the ledger's reconcile and runs again, instead of staying
    ``running`` (its status at 100% with a live Cancel button) until the next restart."""
    monkeypatch.setattr(ledger_module, "RECONCILE_GRACE", 0.0)
    monkeypatch.setattr(dispatcher, "DISPATCH_TICK", 0.2)
    finish_job, failures = db.finish_job, []

    async def flaky_finish(job_id: int, **values: Any) -> Any:
        if not failures:
            failures.append(job_id)
            raise ConnectionError("the database went away")
        return await finish_job(job_id, **values)

    monkeypatch.setattr(db, "finish_job", flaky_finish)
    queue, events = await start_queue()
    job = await jobs.add()
    await queue.submit(job.id)

    result = await events.finished(job.id)
    assert failures == [job.id]
    assert result.path.read_bytes() == invert(jobs.photo)
    assert events.names(job.id) == ["started", "retrying", "started", "finished"]
    record = await db.get_job(job.id)
    assert record is not None
    assert (record.state, record.attempts) == (JobState.DONE, 2)

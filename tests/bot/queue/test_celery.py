"""The Celery queue end to end: the real Redis and RabbitMQ on this machine, real ``python -m engine worker``
processes (the fake engine), the bot's database on the local PostgreSQL.

Every wait is bounded (``WAIT`` and the module's pytest timeout). Each test has a namespace of its own on
the broker (see ``celery_helpers``), its worker processes are stopped when it ends, whatever happened, and
it fails if any survives. Without a reachable broker or PostgreSQL the tests are skipped, saying why.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import text

from bot.config import Settings
from bot.db import Database, JobState
from bot.queue.celery_queue import CeleryQueue
from engine.workers import broker as broker_app
from engine.workers.celery import plan_devices
from engine.workers.settings import QueueSettings
from tests.bot.db.conftest import POSTGRES_ADMIN_URL, TABLES, PostgresServer, alembic
from tests.bot.queue.celery_helpers import (
    ROOT,
    Broker,
    RabbitBroker,
    RedisBroker,
    WorkerProcesses,
    brought_back,
    namespace,
)
from tests.bot.queue.conftest import Jobs, RecordingEvents, eventually
from tests.fakes import images
from tests.fakes.engine import BATCH_LOG, fingerprint, invert, marked, read_batch_log

pytestmark = pytest.mark.timeout(120)

WAIT = 30.0  # seconds any single expectation may take (worker processes start in a second or two)
HEARTBEAT = 0.5  # QUEUE_HEARTBEAT_SECONDS in these tests: a killed worker is noticed within 1.5 s
VISIBILITY_TIMEOUT = 5.0  # QUEUE_VISIBILITY_TIMEOUT: Redis hands out an unacknowledged task after 5 s
STALL = 2.0  # WORKER_STALL_SECONDS

StartQueue = Callable[..., Awaitable[tuple[CeleryQueue, RecordingEvents]]]


# ----- without a broker -----


def test_the_bot_side_and_the_celery_app_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import bot.queue.celery_queue, engine.workers.broker, engine.workers.celery\n"
        "import engine.workers.supervisor, engine.workers.celery_worker, engine.workers.celery_link\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


@pytest.mark.parametrize(
    ("url", "message"),
    [("", "QUEUE_URL is empty"), ("redis://127.0.0.1:1/0", "is unreachable")],
    ids=["empty", "unreachable"],
)
def test_the_worker_command_says_in_one_line_what_is_wrong(url: str, message: str) -> None:
    env = {**os.environ, "QUEUE_URL": url}
    done = subprocess.run(
        [sys.executable, "-m", "engine", "worker", "--device", "cpu"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]


def test_one_worker_process_per_gpu_each_pinned_to_it() -> None:
    def gpus() -> list[str]:
        return ["0", "1", "2"]

    assert plan_devices("cpu", gpus) == [("cpu", "cpu", None)]
    assert plan_devices("auto", gpus) == [
        ("gpu0", "cuda:0", "0"),
        ("gpu1", "cuda:0", "1"),
        ("gpu2", "cuda:0", "2"),
    ]
    assert plan_devices("cuda", gpus) == plan_devices("auto", gpus)
    assert plan_devices("cuda:1", gpus) == [("gpu1", "cuda:0", "1")]
    assert plan_devices("auto", list) == [("auto", "auto", None)]  # no GPU: the engine's own choice
    with pytest.raises(ValueError, match="no CUDA GPU"):
        plan_devices("cuda", list)
    with pytest.raises(ValueError, match="there is no cuda:3"):
        plan_devices("cuda:3", gpus)


# ----- fixtures: brokers, PostgreSQL, workers, queues -----


@pytest.fixture(scope="module", params=["redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    server: Broker = RedisBroker() if request.param == "redis" else RabbitBroker()
    try:
        server.ping()
    except Exception as exc:
        pytest.skip(f"{server.name} is not reachable at {server.base_url} ({exc!r})")
    server.open_session()
    try:
        yield server
    finally:
        server.close_session()


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    server = PostgresServer(POSTGRES_ADMIN_URL)
    try:
        server.ping()
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({exc!r})")
    url = server.create_database()
    try:
        alembic("upgrade", url, "head")
        yield url
    finally:
        server.drop_all()


@pytest.fixture
async def db(postgres_url: str) -> AsyncIterator[Database]:
    """The bot's database on PostgreSQL (overrides the SQLite one of ``conftest``), emptied per test."""
    database = Database(postgres_url)
    async with database.session() as session:
        await session.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def queue_name(broker: Broker) -> Iterator[str]:
    name = namespace()
    yield name
    broker.clean(name)


@pytest.fixture
def queue_settings(broker: Broker, queue_name: str) -> QueueSettings:
    return QueueSettings(
        queue_url=broker.url(),
        queue_name=queue_name,
        queue_visibility_timeout=VISIBILITY_TIMEOUT,
        queue_heartbeat_seconds=HEARTBEAT,
    )


@pytest.fixture
def workers(queue_settings: QueueSettings, tmp_path: Path) -> Iterator[WorkerProcesses]:
    env = {
        "QUEUE_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT),
        "QUEUE_HEARTBEAT_SECONDS": str(HEARTBEAT),
        "LOG_LEVEL": "INFO",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    processes = WorkerProcesses(queue_settings.queue_url, queue_settings.queue_name, logs, env=env)
    try:
        yield processes
    finally:
        running = processes.group_pids()
        processes.stop()
        assert not processes.group_pids(), f"worker processes survived (of {running})"


@pytest.fixture
async def start_queue(
    db: Database, queue_settings: QueueSettings, results_dir: Path
) -> AsyncIterator[StartQueue]:
    """``await start_queue(**CeleryQueue options)`` → (queue, events); all stopped when the test ends."""
    queues: list[CeleryQueue] = []
    settings = Settings(telegram_bot_token="1:test", **queue_settings.model_dump())  # type: ignore[call-arg]

    async def start(
        *, events: RecordingEvents | None = None, **options: Any
    ) -> tuple[CeleryQueue, RecordingEvents]:
        options.setdefault("stall_seconds", STALL)
        options.setdefault("redispatch_after", 10.0)
        options.setdefault("progress_write_interval", 0.0)
        queue = CeleryQueue(db, settings, results_dir=results_dir, **options)
        queues.append(queue)
        events = events or RecordingEvents()
        await queue.start(events)
        return queue, events

    try:
        yield start
    finally:
        for queue in queues:
            await queue.stop()


async def workers_up(queue: CeleryQueue, count: int) -> None:
    await eventually(lambda: len(queue.workers()) == count, within=WAIT)


async def record_of(db: Database, job_id: int) -> Any:
    record = await db.get_job(job_id)
    assert record is not None
    return record


def pid_of(queue: CeleryQueue, worker: str) -> int:
    [seen] = [w for w in queue.workers() if w.name == worker]
    assert seen.pid is not None
    return seen.pid


# ----- with a broker -----


@pytest.mark.broker
@pytest.mark.postgres
async def test_jobs_complete_and_report_progress(
    start_queue: StartQueue, workers: WorkerProcesses, jobs: Jobs, db: Database
) -> None:
    workers.start()
    queue, events = await start_queue()
    await workers_up(queue, 1)
    first, second = await jobs.add(steps=20), await jobs.add(user_id=2)
    await queue.submit(first.id)
    await queue.submit(second.id)

    result = await events.finished(first.id, within=WAIT)
    assert result.path.read_bytes() == invert(jobs.photo)  # the fake engine's answer, through the broker
    assert (result.width, result.height, result.format) == (40, 30, "png")
    steps = [c.args[0].step for c in events.of(first.id, "progress")]
    assert steps == sorted(steps)
    assert steps[-1] == 20
    assert events.names(first.id) == ["started", "finished"]
    await events.finished(second.id, within=WAIT)
    record = await record_of(db, first.id)
    assert (record.state, record.attempts, record.progress) == (JobState.DONE, 1, 1.0)
    assert record.worker == queue.workers()[0].name
    assert record.external_id is not None
    status = queue.status()
    assert (status.backend, status.workers, status.busy, status.healthy) == ("celery", 1, 0, True)


@pytest.mark.broker
@pytest.mark.postgres
async def test_round_robin_between_users(
    start_queue: StartQueue, workers: WorkerProcesses, jobs: Jobs
) -> None:
    workers.start()
    queue, events = await start_queue()
    await workers_up(queue, 1)
    heavy = [await jobs.add(user_id=1) for _ in range(4)]
    light = await jobs.add(user_id=2)
    for job in [*heavy, light]:
        await queue.submit(job.id)

    for job in [*heavy, light]:
        await events.finished(job.id, within=WAIT)
    assert events.started_order() == [heavy[0].id, light.id, *(j.id for j in heavy[1:])]


@pytest.mark.broker
@pytest.mark.postgres
async def test_cancelling_a_running_job_stops_it_and_the_worker_goes_on(
    start_queue: StartQueue, workers: WorkerProcesses, jobs: Jobs, db: Database
) -> None:
    workers.start()
    queue, events = await start_queue()
    await workers_up(queue, 1)
    pid = queue.workers()[0].pid
    slow = await jobs.add(marked("SLOW", jobs.photo))
    after = await jobs.add()
    await queue.submit(slow.id)
    await queue.submit(after.id)
    await events.wait_for(slow.id, "progress", within=WAIT)

    cancelled_at = time.monotonic()
    assert await queue.cancel(slow.id) is not None
    await events.wait_for(after.id, "started", within=5.0)
    assert time.monotonic() - cancelled_at < 3.0
    await events.finished(after.id)

    assert events.names(slow.id) == ["started"]  # neither finished nor failed
    assert (await record_of(db, slow.id)).state is JobState.CANCELLED
    assert [w.pid for w in queue.workers()] == [pid]  # stopped by the engine, not by killing the worker
    assert "stopped as the bot asked" in workers.logs()


@pytest.mark.broker
@pytest.mark.postgres
async def test_a_job_whose_worker_is_killed_is_completed_by_another(
    start_queue: StartQueue, workers: WorkerProcesses, jobs: Jobs, db: Database
) -> None:
    workers.start(processes=2)
    queue, events = await start_queue()
    await workers_up(queue, 2)
    job = await jobs.add(steps=60)  # 1.2 s
    await queue.submit(job.id)
    await events.wait_for(job.id, "progress", within=WAIT)
    victim = (await record_of(db, job.id)).worker

    os.kill(pid_of(queue, victim), signal.SIGKILL)
    assert await events.painted(job.id, within=WAIT) == invert(jobs.photo)
    assert events.names(job.id) == ["started", "retrying", "started", "finished"]
    assert victim in await events.retrying(job.id)
    record = await record_of(db, job.id)
    assert (record.state, record.attempts) == (JobState.DONE, 2)
    assert record.worker != victim
    # The broker hands the dead worker's task out again (RabbitMQ at once, Redis after its visibility
    # timeout); the worker that gets it does not run it, and the job stays done.
    await eventually(lambda: "handed out a second time" in workers.logs(), within=VISIBILITY_TIMEOUT + 10)
    await asyncio.sleep(0.5)
    assert events.names(job.id) == ["started", "retrying", "started", "finished"]


@pytest.mark.broker
@pytest.mark.postgres
async def test_a_job_that_kills_every_worker_it_lands_on_fails(
    start_queue: StartQueue, workers: WorkerProcesses, jobs: Jobs, db: Database
) -> None:
    workers.start(processes=2)
    queue, events = await start_queue()
    await workers_up(queue, 2)
    job = await jobs.add(marked("CRASH", jobs.photo))
    await queue.submit(job.id)

    code, message = await events.failed(job.id, within=WAIT)
    assert code == "worker_lost"
    assert "heartbeats" in message
    assert events.names(job.id) == ["started", "retrying", "started", "failed"]
    record = await record_of(db, job.id)
    assert (record.state, record.error_code, record.attempts) == (JobState.FAILED, "worker_lost", 2)

    after = await jobs.add()  # the supervisors replaced the dead workers
    await queue.submit(after.id)
    await events.finished(after.id, within=WAIT)


@pytest.mark.broker
@pytest.mark.postgres
async def test_a_job_whose_photo_is_gone_fails_with_input_lost(
    start_queue: StartQueue, jobs: Jobs, db: Database, tmp_path: Path
) -> None:
    queue, events = await start_queue()  # no worker needed: the bot fails it before sending it
    job = await jobs.add(content_path=str(tmp_path / "deleted.jpg"))
    await queue.submit(job.id)

    code, message = await events.failed(job.id, within=WAIT)
    assert code == "input_lost"
    assert "missing" in message
    assert (await record_of(db, job.id)).state is JobState.FAILED


@pytest.mark.broker
@pytest.mark.postgres
async def test_a_hung_job_is_retried_after_the_stall_time(
    start_queue: StartQueue, workers: WorkerProcesses, jobs: Jobs, db: Database
) -> None:
    workers.start(processes=2)
    queue, events = await start_queue()
    await workers_up(queue, 2)
    job = await jobs.add(marked("HANG", jobs.photo, once=jobs.flag()))
    await queue.submit(job.id)

    assert "hung" in await events.retrying(job.id, within=WAIT)
    await events.finished(job.id, within=WAIT)
    assert events.names(job.id) == ["started", "retrying", "started", "finished"]
    # The hung worker ignored its stop: it ended itself after --cancel-grace, and was replaced.
    await eventually(lambda: "asked to stop; ending this process" in workers.logs(), within=WAIT)


@pytest.mark.broker
@pytest.mark.postgres
async def test_a_cancelled_report_nobody_asked_for_retries_the_job(
    start_queue: StartQueue, workers: WorkerProcesses, jobs: Jobs, db: Database
) -> None:
    """As on the embedded queue (``test_embedded``'s twin): retried, not failed, by the same worker."""
    workers.start()
    queue, events = await start_queue()
    await workers_up(queue, 1)
    pid = queue.workers()[0].pid
    job = await jobs.add(marked("QUIT", jobs.photo, once=jobs.flag()))
    await queue.submit(job.id)

    assert await events.painted(job.id, within=WAIT) == invert(jobs.photo)
    assert events.names(job.id) == ["started", "retrying", "started", "finished"]
    assert "stopped the job by itself" in await events.retrying(job.id)
    record = await record_of(db, job.id)
    assert (record.state, record.attempts) == (JobState.DONE, 2)
    assert [w.pid for w in queue.workers()] == [pid]  # the worker itself is fine


@pytest.mark.broker
@pytest.mark.postgres
async def test_a_broker_restart_loses_no_job(
    broker: Broker, start_queue: StartQueue, workers: WorkerProcesses, jobs: Jobs, db: Database
) -> None:
    workers.start()
    queue, events = await start_queue()
    await workers_up(queue, 1)
    running = await jobs.add(user_id=1, steps=100)  # 2 s
    waiting = [await jobs.add(user_id=user) for user in (2, 3, 4)]  # one in the broker, two in the database
    for job in [running, *waiting]:
        await queue.submit(job.id)
    await events.wait_for(running.id, "progress", within=WAIT)

    with brought_back(broker):
        await asyncio.to_thread(broker.restart)
    for job in [running, *waiting]:
        await events.finished(job.id, within=60.0)

    for job in [running, *waiting]:
        assert events.names(job.id) == ["started", "finished"], job.id
        record = await record_of(db, job.id)
        assert (record.state, record.attempts) == (JobState.DONE, 1)


@pytest.mark.broker
@pytest.mark.postgres
async def test_a_bot_restart_dispatches_its_jobs_again(
    start_queue: StartQueue, workers: WorkerProcesses, jobs: Jobs, db: Database
) -> None:
    workers.start()
    first, first_events = await start_queue()
    await workers_up(first, 1)
    running = await jobs.add(user_id=1, steps=60)
    queued = await jobs.add(user_id=2)
    await first.submit(running.id)
    await first.submit(queued.id)
    await first_events.wait_for(running.id, "progress", within=WAIT)
    await first.stop()
    record = await record_of(db, running.id)
    assert (record.state, record.attempts) == (JobState.QUEUED, 0)  # a stop uses up no attempt
    assert (await record_of(db, queued.id)).state is JobState.QUEUED

    _, events = await start_queue()
    await events.finished(running.id, within=WAIT)
    await events.finished(queued.id, within=WAIT)
    record = await record_of(db, running.id)
    assert (record.state, record.attempts) == (JobState.DONE, 1)
    assert events.names(running.id) == ["retrying", "started", "finished"]
    assert events.names(queued.id) == ["started", "finished"]


@pytest.mark.broker
@pytest.mark.postgres
async def test_a_worker_stopped_mid_job_releases_it_and_leaves_no_process(
    start_queue: StartQueue, workers: WorkerProcesses, jobs: Jobs, db: Database
) -> None:
    workers.start()
    queue, events = await start_queue()
    await workers_up(queue, 1)
    job = await jobs.add(marked("SLOW", jobs.photo))
    await queue.submit(job.id)
    await events.wait_for(job.id, "progress", within=WAIT)
    assert len(workers.group_pids()) >= 2  # the supervisor and its worker (and multiprocessing helpers)

    stopped_at = time.monotonic()
    await asyncio.to_thread(workers.stop)
    assert time.monotonic() - stopped_at < 10
    assert not workers.group_pids()
    assert "shut down" in await events.retrying(job.id)
    await eventually(lambda: queue.status().workers == 0, within=WAIT)
    record = await record_of(db, job.id)
    assert (record.state, record.attempts) == (JobState.QUEUED, 0)  # for the next worker, no attempt used
    assert not queue.status().healthy


def publish_event(settings: QueueSettings, body: dict[str, Any]) -> None:
    """A message on the events queue, as anyone who can reach the broker could send it."""
    with broker_app.connect(settings) as connection:
        connection.Producer(serializer="json").publish(
            body,
            exchange="",
            routing_key=settings.names.events,
            declare=[broker_app.events_queue(settings.names)],
        )


@pytest.mark.broker
@pytest.mark.postgres
@pytest.mark.parametrize(
    ("result_format", "image"),
    [("/../../evil", images.png(8, 8)), ("png", b"#!/bin/sh\nrm -rf /\n")],
    ids=["path-in-format", "not-a-png"],
)
async def test_a_forged_result_is_refused_and_writes_nothing(
    start_queue: StartQueue,
    queue_settings: QueueSettings,
    jobs: Jobs,
    db: Database,
    results_dir: Path,
    tmp_path: Path,
    result_format: str,
    image: bytes,
) -> None:
    queue, events = await start_queue()  # no worker: the job's task waits in the broker
    job = await jobs.add()
    await queue.submit(job.id)
    task_id = None
    async with asyncio.timeout(WAIT):
        while task_id is None:
            task_id = (await record_of(db, job.id)).external_id
            await asyncio.sleep(0.05)

    said = {"task_id": task_id, "job_id": job.id}
    await asyncio.to_thread(publish_event, queue_settings, broker_app.event("started", "mallory", **said))
    await events.wait_for(job.id, "started", within=WAIT)
    result = {
        "format": result_format,
        "width": 8,
        "height": 8,
        "seconds": 1.0,
        "steps": 1,
        "device": "cpu",
        "losses": {},
        "notes": [],
        "image": base64.b64encode(image).decode(),
    }
    await asyncio.to_thread(
        publish_event, queue_settings, broker_app.event("done", "mallory", result=result, **said)
    )

    code, message = await events.failed(job.id, within=WAIT)
    assert code == "bad_result"
    assert "refused" in message
    record = await record_of(db, job.id)
    assert (record.state, record.error_code) == (JobState.FAILED, "bad_result")
    assert not events.of(job.id, "finished")
    assert not (tmp_path / "evil").exists()
    assert not await asyncio.to_thread(lambda: results_dir.exists() and list(results_dir.iterdir()))


# ----- batches (ENGINE_BATCH_SIZE) -----


def batching(workers: WorkerProcesses, tmp_path: Path, size: int) -> Path:
    """Workers started after this paint up to ``size`` jobs at once; the fake engine logs its batches in
    the file returned."""
    log = tmp_path / "batches.jsonl"
    workers.env.update({"ENGINE_BATCH_SIZE": str(size), BATCH_LOG: str(log)})
    return log


async def photo_jobs(jobs: Jobs, users: list[int], *, steps: int = 10) -> tuple[list[Any], list[bytes]]:
    """A job per entry of ``users``, each with a photo of its own (the batch log tells them apart)."""
    photos = [images.pattern(40 + i, 30, fmt="PNG") for i in range(len(users))]
    added = [await jobs.add(p, user_id=user, steps=steps) for p, user in zip(photos, users, strict=True)]
    return added, photos


def batches_of(log: Path, added: list[Any], photos: list[bytes]) -> list[list[int]]:
    by_print = {fingerprint(photo): job.id for job, photo in zip(added, photos, strict=True)}
    return [[by_print[p] for p in batch] for batch in read_batch_log(log)]


@pytest.mark.broker
@pytest.mark.postgres
async def test_several_users_jobs_are_painted_together_in_the_fair_order(
    start_queue: StartQueue, workers: WorkerProcesses, jobs: Jobs, db: Database, tmp_path: Path
) -> None:
    log = batching(workers, tmp_path, 3)
    workers.start()
    queue, events = await start_queue()
    await workers_up(queue, 1)
    assert queue.status().batch_size("draft") == 3
    added, photos = await photo_jobs(jobs, [1, 1, 1, 2, 3])
    a1, a2, a3, b1, c1 = added
    for job in added:
        await queue.submit(job.id)

    for job, photo in zip(added, photos, strict=True):
        assert await events.painted(job.id, within=WAIT) == invert(photo)  # each their own painting
        assert events.names(job.id) == ["started", "finished"]
        record = await record_of(db, job.id)
        assert (record.state, record.attempts) == (JobState.DONE, 1)
    assert batches_of(log, added, photos) == [[a1.id, b1.id, c1.id], [a2.id, a3.id]]
    assert set(events.started_order()[:3]) == {a1.id, b1.id, c1.id}  # one batch: they start together


@pytest.mark.broker
@pytest.mark.postgres
async def test_a_job_cancelled_mid_batch_stops_and_the_others_finish(
    start_queue: StartQueue, workers: WorkerProcesses, jobs: Jobs, db: Database, tmp_path: Path
) -> None:
    log = batching(workers, tmp_path, 3)
    workers.start()
    queue, events = await start_queue()
    await workers_up(queue, 1)
    pid = queue.workers()[0].pid
    photos = [images.pattern(40 + i, 30, fmt="PNG") for i in range(3)]
    slow = await jobs.add(marked("SLOW", photos[0]), user_id=1, steps=80)
    added = [slow, *[await jobs.add(photos[i], user_id=i + 1, steps=80) for i in (1, 2)]]  # 1.6 s
    for job in added:
        await queue.submit(job.id)
    await events.wait_for(slow.id, "progress", count=3, within=WAIT)

    assert await queue.cancel(slow.id) is not None
    for job, photo in zip(added[1:], photos[1:], strict=True):
        assert await events.painted(job.id, within=WAIT) == invert(photo)
    assert len(read_batch_log(log)) == 1  # the three in one batch
    assert events.names(slow.id) == ["started"]  # neither finished nor failed
    assert (await record_of(db, slow.id)).state is JobState.CANCELLED
    assert [w.pid for w in queue.workers()] == [pid]  # stopped by the engine, the worker kept
    assert "stopped as the bot asked" in workers.logs()


@pytest.mark.broker
@pytest.mark.postgres
async def test_a_broken_photo_fails_its_job_alone_in_a_batch(
    start_queue: StartQueue, workers: WorkerProcesses, jobs: Jobs, tmp_path: Path
) -> None:
    log = batching(workers, tmp_path, 3)
    workers.start()
    queue, events = await start_queue()
    await workers_up(queue, 1)
    added, photos = await photo_jobs(jobs, [1, 2])
    broken = await jobs.add(marked("BADIMG", images.pattern(20, 20, fmt="PNG")), user_id=3, steps=10)
    for job in [*added, broken]:
        await queue.submit(job.id)

    for job, photo in zip(added, photos, strict=True):
        assert await events.painted(job.id, within=WAIT) == invert(photo)
    assert (await events.failed(broken.id, within=WAIT))[0] == "corrupt_image"
    assert len(read_batch_log(log)) == 1


@pytest.mark.broker
@pytest.mark.postgres
async def test_a_worker_killed_mid_batch_has_every_job_retried(
    start_queue: StartQueue, workers: WorkerProcesses, jobs: Jobs, db: Database, tmp_path: Path
) -> None:
    log = batching(workers, tmp_path, 3)
    workers.start()  # one worker process; its supervisor starts another when it dies
    queue, events = await start_queue()
    await workers_up(queue, 1)
    added, photos = await photo_jobs(jobs, [1, 2, 3], steps=100)  # 2 s, together
    for job in added:
        await queue.submit(job.id)
    for job in added:
        await events.wait_for(job.id, "progress", within=WAIT)
    victim = (await record_of(db, added[0].id)).worker
    assert victim is not None

    os.kill(pid_of(queue, victim), signal.SIGKILL)
    for job, photo in zip(added, photos, strict=True):
        assert await events.painted(job.id, within=WAIT) == invert(photo)  # none lost, none swapped
        assert events.names(job.id) == ["started", "retrying", "started", "finished"]
        record = await record_of(db, job.id)
        assert (record.state, record.attempts) == (JobState.DONE, 2)  # one attempt each for the lost batch
        assert record.worker != victim
    assert [len(batch) for batch in read_batch_log(log)] == [3]  # the retries run alone (see job_group)
    # The broker hands the killed worker's tasks out again; the new worker does not run them.
    await eventually(lambda: "handed out a second time" in workers.logs(), within=VISIBILITY_TIMEOUT + 10)
    await asyncio.sleep(0.5)
    assert all(events.names(job.id) == ["started", "retrying", "started", "finished"] for job in added)

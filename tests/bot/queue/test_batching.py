"""Batches (``ENGINE_BATCH_SIZE``): who may share one, and the embedded queue running them with real worker
processes (the fake engine, which logs the batches it paints). The Celery queue's batches are tested in
``test_celery.py``.
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

import pytest

from bot.db import Database, JobRecord, JobState
from bot.queue.base import QueueStatus, smallest_limits
from bot.queue.scheduling import batch_limit, fair_order, next_batch
from engine.protocol import StyleSettings, batch_group, leading_batch
from engine.workers.batching import batch_limits, parse_limits
from tests.bot.queue.conftest import Jobs, StartQueue, eventually
from tests.bot.queue.test_scheduling import job as make_job
from tests.fakes.engine import BATCH_LOG, fingerprint, invert, marked, read_batch_log
from tests.fakes.images import pattern

pytestmark = pytest.mark.timeout(120)

LIMITS = {"normal": 3, "high": 2}


# ----- who shares a batch -----


def test_the_batch_size_per_tier() -> None:
    assert batch_limits(3, "cpu (2 threads)", output_max_side=1024) == {"draft": 3, "normal": 3, "high": 3}
    assert batch_limits("auto", "cpu (2 threads)", output_max_side=1024) == {
        "draft": 1,
        "normal": 1,
        "high": 1,
    }
    assert batch_limits("auto", "mps", output_max_side=1024)["normal"] == 1
    # CUDA: free memory * 0.6 / (3000 MiB per megapixel at the tier's side), at most 16.
    roomy = batch_limits("auto", "cuda:0 (H200)", output_max_side=1024, free_bytes=130 * 2**30)
    assert roomy == {"draft": 16, "normal": 16, "high": 16}
    small = batch_limits("auto", "cuda:0 (T4)", output_max_side=1024, free_bytes=4 * 2**30)
    # 256 px (draft): 197 MiB a picture -> 12; 1024 px (normal, high): 3146 MiB -> 1 (never 0)
    assert small == {"draft": 12, "normal": 1, "high": 1}
    capped = batch_limits("auto", "cuda:0 (T4)", output_max_side=512, free_bytes=4 * 2**30)
    assert capped["high"] == capped["normal"] == 3  # OUTPUT_MAX_SIDE caps the tier's side
    assert parse_limits({"draft": "4", "normal": 0, "high": "x"}) == {"draft": 4, "normal": 1}
    assert parse_limits(None) == {}


def test_the_queue_status_says_the_smallest_batch_of_its_workers() -> None:
    limits = smallest_limits([{"draft": 4, "normal": 2}, {"draft": 8}])
    assert limits == {"draft": 4, "normal": 1}
    status = QueueStatus("embedded", 2, 0, True, batch_limits=limits)
    assert (status.batch_size("draft"), status.batch_size("normal"), status.batch_size("high")) == (4, 1, 1)


def test_jobs_share_a_batch_when_their_schedules_match() -> None:
    normal = StyleSettings(quality="normal")
    # What may differ per image: the photo, strength, colours, start, seed, preview.
    same = normal.replace(
        strength=0.9, preserve_colors="luminance", init="noise", seed=3, preview_every=20,
        style_layers=("conv1_1",),
    )  # fmt: skip
    assert batch_group(same) == batch_group(normal)
    for other in (
        normal.replace(quality="draft"),
        normal.replace(optimizer="adam"),
        normal.replace(steps=30),
        normal.replace(size=300),
        normal.replace(multiscale=False),
        normal.replace(content_layers=("conv5_2",)),
    ):
        assert batch_group(other) != batch_group(normal), other


def test_a_batch_is_a_run_at_the_head_of_the_order() -> None:
    def group(item: str) -> str:
        return item[0]

    assert leading_batch(["a1", "a2", "b1", "a3"], group, 4) == ["a1", "a2"]  # stops at b1, never skips it
    assert leading_batch(["a1", "a2", "a3"], group, 2) == ["a1", "a2"]
    assert leading_batch(["b1", "a1"], group, 4) == ["b1"]
    assert leading_batch(["a1"], group, 0) == ["a1"]
    assert leading_batch([], group, 4) == []


def test_a_figure_shares_a_batch_with_nobody() -> None:
    """A strip is already a batch of its own panels, run through ``engine.figures``: never batched again."""
    strip = StyleSettings(quality="draft", figure="strength")
    assert batch_group(strip) is None
    plain = StyleSettings(quality="draft")
    order = [("strip1", strip), ("strip2", strip), ("plain", plain)]
    assert leading_batch(order, lambda item: batch_group(item[1]), 4) == [order[0]]
    assert leading_batch(order[2:] + order[:2], lambda item: batch_group(item[1]), 4) == [order[2]]


def record(job_id: int, user_id: int, quality: str, minute: int) -> JobRecord:
    return make_job(job_id, user_id, minute, settings={"quality": quality})


def test_batching_never_lets_a_job_start_before_one_ahead_of_it() -> None:
    """One worker taking batches of up to 3 off a queue of many users' jobs of two tiers: whenever a batch
    starts, every job that was ahead of one of its jobs in the fair order starts in it, or started before."""
    rng = random.Random(11)
    for _ in range(200):
        queued = [
            record(i, rng.randint(1, 4), rng.choice(("normal", "normal", "high")), rng.randint(0, 30))
            for i in range(1, rng.randint(2, 12))
        ]
        started: set[int] = set()
        while queued:
            order = fair_order(queued, [])
            batch = next_batch(order, lambda job: batch_limit(LIMITS, job))
            assert 1 <= len(batch) <= LIMITS[batch[0].settings["quality"]]
            assert len({job.settings["quality"] for job in batch}) == 1
            last = max(order.index(job) for job in batch)
            assert all(job in batch for job in order[: last + 1])  # no job ahead of one of them is left
            started |= {job.id for job in batch}
            queued = [job for job in queued if job.id not in started]


# ----- the embedded queue -----


@pytest.fixture
def batch_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where the fake engine in the worker processes (which inherit the environment) logs its batches."""
    path = tmp_path / "batches.jsonl"
    monkeypatch.setenv(BATCH_LOG, str(path))
    return path


async def add_photo_jobs(
    jobs: Jobs, users: list[int], *, steps: int = 10
) -> tuple[list[JobRecord], list[bytes]]:
    """A job per entry of ``users``, each with a photo of its own (the batch log tells them apart)."""
    photos = [pattern(40 + i, 30, fmt="PNG") for i in range(len(users))]
    added = [
        await jobs.add(photo, user_id=user, steps=steps) for photo, user in zip(photos, users, strict=True)
    ]
    return added, photos


async def test_several_users_jobs_are_painted_together_in_the_fair_order(
    start_queue: StartQueue, jobs: Jobs, db: Database, batch_log: Path
) -> None:
    # Queued before the worker is up, so its first batch is chosen among all of them.
    (a1, a2, a3, b1, c1), photos = await add_photo_jobs(jobs, [1, 1, 1, 2, 3])
    queue, events = await start_queue(batch_size=3)

    for job, photo in zip((a1, a2, a3, b1, c1), photos, strict=True):
        assert await events.painted(job.id) == invert(photo)  # each user gets their own painting
        assert events.names(job.id) == ["started", "finished"]
        got = await db.get_job(job.id)
        assert got is not None
        assert (got.state, got.attempts) == (JobState.DONE, 1)
    fair = [a1, b1, c1, a2, a3]  # round robin: everyone's first job, then user 1's others
    by_print = {fingerprint(photo): job.id for job, photo in zip((a1, a2, a3, b1, c1), photos, strict=True)}
    batches = [[by_print[p] for p in batch] for batch in read_batch_log(batch_log)]
    assert batches == [[a1.id, b1.id, c1.id], [a2.id, a3.id]]
    assert events.started_order() == [job.id for job in fair]
    assert queue.status().batch_size("draft") == 3
    assert queue.worker_info()[0].starts == 1


async def test_only_compatible_jobs_share_a_batch_and_nobody_jumps_the_line(
    start_queue: StartQueue, jobs: Jobs, batch_log: Path
) -> None:
    photos = [pattern(40 + i, 30, fmt="PNG") for i in range(4)]
    a = await jobs.add(photos[0], user_id=1)
    b = await jobs.add(photos[1], user_id=2, quality="normal")  # another tier: its own batch
    c = await jobs.add(photos[2], user_id=3)
    d = await jobs.add(photos[3], user_id=4)
    _, events = await start_queue(batch_size=4)

    for job in (a, b, c, d):
        await events.finished(job.id)
    by_print = {fingerprint(photo): job.id for job, photo in zip((a, b, c, d), photos, strict=True)}
    batches = [[by_print[p] for p in batch] for batch in read_batch_log(batch_log)]
    assert batches == [[c.id, d.id]]  # a and b each alone (Engine.stylize: not logged); c, d not ahead of b
    assert events.started_order() == [a.id, b.id, c.id, d.id]


async def test_a_job_cancelled_mid_batch_stops_and_the_others_finish(
    start_queue: StartQueue, jobs: Jobs, db: Database, batch_log: Path
) -> None:
    photos = [pattern(40 + i, 30, fmt="PNG") for i in range(3)]
    slow = await jobs.add(marked("SLOW", photos[0]), user_id=1, steps=80)
    others = [
        await jobs.add(photo, user_id=user, steps=80) for photo, user in zip(photos[1:], (2, 3), strict=True)
    ]
    queue, events = await start_queue(batch_size=3, cancel_grace=3.0)
    await events.wait_for(slow.id, "progress", count=3)
    pid = queue.worker_info()[0].pid

    assert await queue.cancel(slow.id) is not None
    for job, photo in zip(others, photos[1:], strict=True):
        assert await events.painted(job.id) == invert(photo)
    assert len(read_batch_log(batch_log)) == 1  # all three in one batch
    assert events.names(slow.id) == ["started"]  # neither finished nor failed
    got = await db.get_job(slow.id)
    assert got is not None
    assert got.state is JobState.CANCELLED
    info = queue.worker_info()[0]
    assert (info.pid, info.starts) == (pid, 1)  # stopped by the engine, the worker kept
    after = await jobs.add(user_id=4)
    await queue.submit(after.id)
    await events.finished(after.id)


async def test_a_broken_input_fails_its_job_alone(
    start_queue: StartQueue, jobs: Jobs, db: Database, batch_log: Path
) -> None:
    photos = [pattern(40 + i, 30, fmt="PNG") for i in range(2)]
    good = [await jobs.add(photo, user_id=user) for photo, user in zip(photos, (1, 2), strict=True)]
    broken = await jobs.add(marked("BADIMG", pattern(20, 20, fmt="PNG")), user_id=3)
    gone = await jobs.add(pattern(21, 20, fmt="PNG"), user_id=4)
    os.unlink(gone.content_path)  # read by the worker, which fails this job alone
    queue, events = await start_queue(batch_size=4)

    for job, photo in zip(good, photos, strict=True):
        assert await events.painted(job.id) == invert(photo)
    assert (await events.failed(broken.id))[0] == "corrupt_image"
    assert (await events.failed(gone.id))[0] == "input_lost"
    assert len(read_batch_log(batch_log)) == 1
    assert queue.worker_info()[0].starts == 1


async def test_a_worker_killed_mid_batch_has_every_job_retried(
    start_queue: StartQueue, jobs: Jobs, db: Database, batch_log: Path
) -> None:
    added, photos = await add_photo_jobs(jobs, [1, 2, 3], steps=100)  # 2 s each, together
    queue, events = await start_queue(batch_size=3)
    for job in added:
        await events.wait_for(job.id, "progress")
    pid = queue.worker_info()[0].pid
    assert pid is not None

    os.kill(pid, signal.SIGKILL)
    for job, photo in zip(added, photos, strict=True):
        assert await events.painted(job.id) == invert(photo)  # nobody lost, nobody got another's
        assert events.names(job.id) == ["started", "retrying", "started", "finished"]
        got = await db.get_job(job.id)
        assert got is not None
        assert (got.state, got.attempts) == (JobState.DONE, 2)  # one attempt each for the lost batch
    # The retries run alone: the job that killed the worker might be any one of them, and the others must
    # not lose their last attempt with it.
    assert [len(batch) for batch in read_batch_log(batch_log)] == [3]
    assert queue.worker_info()[0].starts == 2


async def test_batch_size_one_runs_one_job_at_a_time_in_the_fair_order(
    start_queue: StartQueue, jobs: Jobs, batch_log: Path
) -> None:
    (a1, a2, b1), photos = await add_photo_jobs(jobs, [1, 1, 2])
    queue, events = await start_queue(batch_size=1)
    for job, photo in zip((a1, a2, b1), photos, strict=True):
        assert await events.painted(job.id) == invert(photo)
    assert read_batch_log(batch_log) == []  # every job alone, through Engine.stylize as before
    assert events.started_order() == [a1.id, b1.id, a2.id]
    assert queue.status().batch_size("draft") == 1


async def test_auto_batch_size_on_the_cpu_is_one(start_queue: StartQueue) -> None:
    queue, _ = await start_queue()
    await eventually(lambda: queue.status().healthy)
    assert queue.status().batch_limits == {"draft": 1, "normal": 1, "high": 1}

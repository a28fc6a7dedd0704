"""Submitting jobs: limits hold however fast photos arrive."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db import Database
from bot.frontend import DISCORD, TELEGRAM
from bot.queue.base import QueueStatus
from bot.services import styles
from bot.services.access import Admins
from bot.services.jobs import JobService, LimitReachedError, Limits, NewJob, Placement
from engine.catalog import load_catalog
from engine.protocol import StyleSettings
from tests.conftest import copy_sqlite
from tests.fakes import images


class RecordingQueue:
    """Just enough of a queue: remembers what was submitted."""

    def __init__(self) -> None:
        self.submitted: list[int] = []

    async def submit(self, job_id: int) -> None:
        self.submitted.append(job_id)

    def status(self) -> QueueStatus:
        return QueueStatus("test", workers=1, busy=0, healthy=True)


@pytest.fixture
async def db(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Database]:
    database = Database(copy_sqlite(sqlite_template, tmp_path / "bot.db"))  # migrated already
    await database.upsert_user(7, "ada", "Ada", "en", platform="telegram")
    yield database
    await database.dispose()


def photo_job(n: int, *, user_id: int = 7, platform: str = "telegram") -> NewJob:
    return NewJob(
        user_id=user_id,
        chat_id=7,
        chat_type="private",
        language=None,
        source_message_id=n,
        content=images.jpeg(64, 48),
        style=styles.paintings(["udnie"], load_catalog()),
        style_images=(),
        settings=StyleSettings(),
        platform=platform,
    )


async def test_ten_photos_at_once_with_a_limit_of_three_make_three_jobs(db: Database, tmp_path: Path) -> None:
    queue = RecordingQueue()
    jobs = JobService(
        db,
        queue,  # type: ignore[arg-type]  # a stand-in queue
        jobs_dir=tmp_path / "jobs",
        limits=Limits(3, 30, 100),
        max_image_pixels=4_000_000,
    )
    outcomes = await asyncio.gather(*(jobs.submit(photo_job(n)) for n in range(10)), return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, LimitReachedError)]
    assert len(refused) == 7
    assert {(r.kind, r.count) for r in refused} == {("active", 3)}
    assert len(queue.submitted) == 3
    assert await db.count_active(7, platform="telegram") == 3
    assert len(list((tmp_path / "jobs").iterdir())) == 3  # the refused ones left no inputs behind


async def test_admins_are_exempt_on_their_own_platform_only(db: Database, tmp_path: Path) -> None:
    """The core decides the exemption from (platform, user id): a Discord admin is not limited on
    Discord's /paint, and the same number on the other platform is somebody else."""
    jobs = JobService(
        db,
        RecordingQueue(),  # type: ignore[arg-type]  # a stand-in queue
        jobs_dir=tmp_path / "jobs",
        limits=Limits(1, 1, 100),
        max_image_pixels=4_000_000,
        admins=Admins({TELEGRAM: frozenset({7}), DISCORD: frozenset({42})}),
    )
    for n in range(3):
        await jobs.submit(photo_job(n, user_id=42, platform=DISCORD))  # a Discord admin
        await jobs.submit(photo_job(n, user_id=7, platform=TELEGRAM))  # a Telegram admin
    await jobs.submit(photo_job(5, user_id=7, platform=DISCORD))
    with pytest.raises(LimitReachedError):  # Discord's user 7 is not Telegram's admin 7
        await jobs.submit(photo_job(6, user_id=7, platform=DISCORD))
    await jobs.submit(photo_job(7, user_id=42, platform=TELEGRAM))
    with pytest.raises(LimitReachedError):  # nor is Telegram's user 42 Discord's admin 42
        await jobs.submit(photo_job(8, user_id=42, platform=TELEGRAM))


async def test_a_worker_painting_batches_gives_shorter_waits(db: Database, tmp_path: Path) -> None:
    """Four queued jobs, one idle worker: batches of 2 are two places that free up together."""

    class BatchingQueue(RecordingQueue):
        def __init__(self, batch: int) -> None:
            super().__init__()
            self.batch = batch

        def status(self) -> QueueStatus:
            return QueueStatus("test", 1, 0, True, batch_limits={"normal": self.batch})

    queue = BatchingQueue(1)
    jobs = JobService(
        db,
        queue,  # type: ignore[arg-type]  # a stand-in queue
        jobs_dir=tmp_path / "jobs",
        limits=Limits(9, 30, 100),
        max_image_pixels=4_000_000,
    )
    for n in range(4):
        await jobs.submit(photo_job(n))
    single = [p.eta_seconds for p in (await jobs.placements()).values()]
    queue.batch = 2
    batched = [p.eta_seconds for p in (await jobs.placements()).values()]
    typical = single[1]
    assert typical is not None
    assert typical > 0
    assert single == [0.0, typical, 2 * typical, 3 * typical]
    assert batched == [0.0, 0.0, typical, typical]  # each pair starts (and ends) together


async def test_queue_overview_shows_a_user_only_their_own_platforms_jobs(
    db: Database, tmp_path: Path
) -> None:
    """User 7 on Telegram and user 7 on Discord are two people: /queue never mixes their jobs."""
    await db.upsert_user(7, "bob", "Bob", "en", platform="discord")
    jobs = JobService(
        db,
        RecordingQueue(),  # type: ignore[arg-type]  # a stand-in queue
        jobs_dir=tmp_path / "jobs",
        limits=Limits(3, 30, 100),
        max_image_pixels=4_000_000,
    )
    mine, _ = await jobs.submit(photo_job(1))
    theirs, _ = await jobs.submit(dataclasses.replace(photo_job(2), platform="discord"))
    telegram = await jobs.overview(7, platform="telegram")
    discord = await jobs.overview(7, platform="discord")
    assert (telegram.waiting, telegram.running) == (2, 0)
    assert [job.id for job, _ in telegram.mine] == [mine.id]
    assert [job.id for job, _ in discord.mine] == [theirs.id]
    placement = telegram.mine[0][1]
    assert placement is not None
    assert placement == Placement(1, placement.eta_seconds)

"""The retention sweep: old results and unused job inputs go, nothing a live job needs."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.db import Database
from bot.services.retention import Retention, RetentionPolicy
from tests.conftest import copy_sqlite

DAY = 86400.0


def aged(path: Path, seconds: float, data: bytes = b"x") -> Path:
    """A file (or, for a name without suffix under jobs/, a folder with a file) last changed long ago."""
    if path.suffix:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    else:
        path.mkdir(parents=True, exist_ok=True)
        (path / "content").write_bytes(data)
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))
    return path


@pytest.fixture
async def db(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Database]:
    database = Database(copy_sqlite(sqlite_template, tmp_path / "bot.db"))  # migrated already
    await database.upsert_user(7, None, "Ada", None, platform="telegram")
    yield database
    await database.dispose()


async def add_job(db: Database, folder: Path) -> int:
    job = await db.create_job(
        user_id=7, chat_id=7, chat_type="private", language_code=None, source_message_id=1,
        styles=[{"preset": "udnie", "weight": 1.0}], style_label="Udnie", settings={},
        content_path=str(folder / "content"), platform="telegram",
    )  # fmt: skip
    return job.id


def retention(db: Database, tmp_path: Path, every: float = 3600.0) -> Retention:
    policy = RetentionPolicy(
        results=timedelta(days=7), orphans=timedelta(hours=1), every=timedelta(seconds=every)
    )
    return Retention(db, results_dir=tmp_path / "results", jobs_dir=tmp_path / "jobs", policy=policy)


async def test_what_goes_and_what_stays(db: Database, tmp_path: Path) -> None:
    results, jobs = tmp_path / "results", tmp_path / "jobs"
    old_result = aged(results / "1.png", 8 * DAY)
    recent_result = aged(results / "2.png", 6 * DAY)
    crash_leftover = aged(results / "3.png.tmp", 2 * 3600)
    running = aged(jobs / "running", 3 * DAY)  # a long wait in the queue: still needed
    await add_job(db, running)
    ended = aged(jobs / "ended", 2 * 3600)
    await db.cancel_job(await add_job(db, ended))
    abandoned = aged(jobs / "abandoned", 2 * 3600)  # no row at all: a submission that crashed midway
    in_progress = aged(jobs / "in_progress", 60)  # no row yet: being submitted right now
    swept = await retention(db, tmp_path).sweep()
    assert (swept.results, swept.inputs) == (2, 2)
    assert not old_result.exists()
    assert not crash_leftover.exists()
    assert recent_result.exists()
    assert running.exists()
    assert in_progress.exists()
    assert not ended.exists()
    assert not abandoned.exists()


async def test_missing_folders_are_fine(db: Database, tmp_path: Path) -> None:
    swept = await retention(db, tmp_path).sweep()
    assert (swept.results, swept.inputs) == (0, 0)


async def test_it_sweeps_again_while_running(db: Database, tmp_path: Path) -> None:
    keeper = retention(db, tmp_path, every=0.05)
    await keeper.start()
    try:
        later = aged(tmp_path / "jobs" / "later", 2 * 3600)  # appears after the start-up sweep
        for _ in range(100):
            if not later.exists():
                break
            await asyncio.sleep(0.05)
        assert not later.exists()
    finally:
        await keeper.stop()


async def test_a_failing_sweep_never_keeps_the_bot_from_starting(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "results").write_bytes(b"a file where the results folder should be")
    keeper = retention(db, tmp_path)
    await keeper.start()  # logs the failure instead of raising it into the bot's start-up
    await keeper.stop()
    assert "retention sweep failed" in caplog.text


async def test_a_finished_jobs_photo_stays_for_the_retention_time(db: Database, tmp_path: Path) -> None:
    """ "Another style" and the figures paint a finished job's photo again: the sweep keeps it as long as
    the result, then lets it go."""
    from sqlalchemy import update

    from bot.db.models import Job
    from bot.db.models import utcnow as now

    jobs = tmp_path / "jobs"
    recent, old = aged(jobs / "recent", 2 * 3600), aged(jobs / "old", 2 * 3600)
    for folder, finished_days_ago in ((recent, 6), (old, 8)):
        job_id = await add_job(db, folder)
        await db.claim_job(job_id, "w")
        await db.finish_job(job_id)
        async with db.session() as session:  # as if it had finished that long ago
            stmt = (
                update(Job)
                .where(Job.id == job_id)
                .values(finished_at=now() - timedelta(days=finished_days_ago))
            )
            await session.execute(stmt)
    swept = await retention(db, tmp_path).sweep()
    assert swept.inputs == 1
    assert recent.exists()
    assert not old.exists()

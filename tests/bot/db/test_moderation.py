"""Blocked people, switched-off chats and the statistics' counts, on both back ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from bot.db import SKETCH_WORKER, Database
from bot.db.models import Job

from .test_jobs import new_job


async def test_block_and_unblock_say_whether_they_changed_anything(database: Database) -> None:
    assert not await database.is_blocked("telegram", 5)
    assert await database.block_user("telegram", 5, by=1)
    assert not await database.block_user("telegram", 5, by=2)  # already blocked
    assert await database.is_blocked("telegram", 5)
    assert not await database.is_blocked("discord", 5)  # the same number elsewhere is someone else
    assert await database.count_blocked() == 1
    assert await database.unblock_user("telegram", 5)
    assert not await database.unblock_user("telegram", 5)
    assert not await database.is_blocked("telegram", 5)
    assert await database.count_blocked() == 0


async def test_a_chat_is_switched_off_and_on_per_platform(database: Database) -> None:
    assert await database.is_chat_enabled("discord", -7)
    assert await database.set_chat_enabled("discord", -7, False, by=3)
    assert not await database.set_chat_enabled("discord", -7, False, by=3)
    assert not await database.is_chat_enabled("discord", -7)
    assert await database.is_chat_enabled("telegram", -7)
    assert await database.set_chat_enabled("discord", -7, True, by=3)
    assert not await database.set_chat_enabled("discord", -7, True, by=3)
    assert await database.is_chat_enabled("discord", -7)


async def _set(db: Database, job_id: int, **values: object) -> None:
    async with db.session() as session:
        await session.execute(update(Job).where(Job.id == job_id).values(**values))


async def test_statistics_counts(database: Database, user: int) -> None:
    now = datetime.now(UTC)
    since = now - timedelta(hours=1)
    assert await database.job_outcomes(since) == {}
    assert await database.median_wait_seconds(since) is None
    waits = [10.0, 40.0, 20.0, 30.0]  # the median of four is the mean of the middle two: 25
    for wait in waits:
        job = await new_job(database, user)
        started = now - timedelta(minutes=5)
        await _set(database, job.id, created_at=started - timedelta(seconds=wait), started_at=started)
        await _set(database, job.id, state="done", started_at=started, finished_at=now)
    sketched = await new_job(database, user)  # the sketch's own job starts at once: not a wait
    await _set(database, sketched.id, worker=SKETCH_WORKER, started_at=now, state="done")
    old = await new_job(database, user)  # before the window
    await _set(database, old.id, created_at=now - timedelta(days=2), started_at=now - timedelta(days=2))
    failed = await new_job(database, user)
    await database.fail_job(failed.id, "worker_lost")
    await new_job(database, user)  # still queued
    given_up = await new_job(database, user)
    await _set(database, given_up.id, state="done")
    assert await database.give_up_delivery(given_up.id, "blocked")

    assert await database.job_outcomes(since) == {"done": 6, "failed": 1, "queued": 1}
    assert await database.job_outcomes(now - timedelta(days=3)) == {"done": 6, "failed": 1, "queued": 2}
    median = await database.median_wait_seconds(since)
    assert median == pytest.approx(25.0, abs=0.01)
    await _set(database, old.id, started_at=now)  # five waits now: the middle one
    median = await database.median_wait_seconds(since)
    assert median == pytest.approx(30.0, abs=0.01)
    assert await database.count_given_up(since) == 1
    assert await database.count_given_up(now + timedelta(minutes=1)) == 0


async def test_a_deleted_result_is_offered_nowhere_again(database: Database, user: int) -> None:
    since = datetime.now(UTC) - timedelta(hours=1)
    kept, deleted, active = [await new_job(database, user) for _ in range(3)]
    for job in (kept, deleted):
        await database.claim_job(job.id, "w")
        await database.finish_job(job.id)
        await database.record_result_file(job.id, f"file-{job.id}")
    assert not await database.mark_result_removed(active.id)  # only a finished job has a result
    assert await database.mark_result_removed(deleted.id)
    assert not await database.mark_result_removed(deleted.id)  # once
    record = await database.get_job(deleted.id)
    assert record is not None
    assert record.result_removed_at is not None
    offered = await database.delivered_jobs(user, platform="telegram", since=since, limit=10)
    assert [job.id for job in offered] == [kept.id]

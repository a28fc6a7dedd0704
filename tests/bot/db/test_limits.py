"""Input from buttons and limits that must hold under concurrency, on both back ends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from bot.db import Database, JobLimits, LimitExceededError

from .test_jobs import new_job
from .test_users_presets_chats import OWN, STARRY


async def test_job_ids_beyond_the_column_are_simply_unknown(database: Database, user: int) -> None:
    """A forged button can carry any number; the id column is 32-bit on PostgreSQL, 64 on SQLite."""
    job = await new_job(database)
    assert (await database.get_job(job.id)) is not None
    for forged in (2**31, 2**63, 10**30, 0, -1):
        assert await database.get_job(forged) is None


async def _at_once(n: int, make) -> tuple[list, list[LimitExceededError]]:
    """Start ``n`` calls together; the created records and the refusals."""
    outcomes = await asyncio.gather(*(make(i) for i in range(n)), return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, LimitExceededError)]
    unexpected = [o for o in outcomes if isinstance(o, BaseException) and o not in refused]
    assert not unexpected, unexpected
    return [o for o in outcomes if not isinstance(o, BaseException)], refused


async def _second_connection(database: Database) -> Database:
    """Another Database on the same data, as a second bot process sharing it would have."""
    return Database(database.url)


async def test_ten_at_once_with_an_active_limit_of_three_make_three(database: Database, user: int) -> None:
    other = await _second_connection(database)
    limits = JobLimits(max_active=3, max_per_hour=100, max_queued=100)
    try:
        created, refused = await _at_once(
            10, lambda i: new_job(database if i % 2 else other, limits=limits, source_message_id=i)
        )
    finally:
        await other.dispose()
    assert len(created) == 3
    assert {r.kind for r in refused} == {"active"}
    assert {r.count for r in refused} == {3}
    assert await database.count_active(user, platform="telegram") == 3


async def test_a_heavy_job_counts_its_own_weight(database: Database, user: int) -> None:
    """A strip weighing 5 gets in alone (it could never run otherwise) but cannot join two jobs past a
    limit of 3: the limits count the new job's weight too."""
    limits = JobLimits(max_active=3, max_per_hour=100, max_queued=100)
    strip = await new_job(database, limits=limits, weight=5.0)
    await database.cancel_job(strip.id)
    for n in range(2):
        await new_job(database, limits=limits, source_message_id=n)
    with pytest.raises(LimitExceededError) as refused:
        await new_job(database, limits=limits, weight=5.0)
    assert (refused.value.kind, refused.value.count) == ("active", 2)
    await new_job(database, limits=limits, source_message_id=3)  # one more ordinary job still fits


async def test_the_hourly_limit_holds_at_once(database: Database, user: int) -> None:
    limits = JobLimits(max_active=100, max_per_hour=5, max_queued=100)
    for _ in range(2):
        job = await new_job(database)
        await database.cancel_job(job.id)  # ended jobs still count for the hour
    created, refused = await _at_once(12, lambda i: new_job(database, limits=limits))
    assert len(created) == 3
    assert {r.kind for r in refused} == {"hourly"}
    assert all(r.oldest is not None and r.oldest <= datetime.now(UTC) for r in refused)


async def test_the_queue_length_holds_across_users(database: Database, user: int) -> None:
    for other in range(2, 6):
        await database.upsert_user(other, None, "x", None, platform="telegram")
    limits = JobLimits(max_active=3, max_per_hour=100, max_queued=4)
    created, refused = await _at_once(15, lambda i: new_job(database, user_id=2 + i % 4, limits=limits))
    assert len(created) == 4
    assert {r.kind for r in refused} <= {"queue_full", "active"}
    assert len(await database.queued_and_running()) == 4


async def test_without_limits_nothing_is_refused(database: Database, user: int) -> None:
    created, refused = await _at_once(6, lambda i: new_job(database))
    assert (len(created), refused) == (6, [])


async def test_the_preset_limit_holds_at_once(database: Database, user: int) -> None:
    await database.save_preset(user, "first", STARRY, {}, max_presets=3, platform="telegram")
    created, refused = await _at_once(
        8, lambda i: database.save_preset(user, f"p{i}", STARRY, {}, max_presets=3, platform="telegram")
    )
    assert len(created) == 2
    assert {(r.kind, r.count) for r in refused} == {("presets", 3)}
    assert await database.count_presets(user, platform="telegram") == 3
    await database.save_preset(
        user, "FIRST", OWN, {}, max_presets=3, platform="telegram"
    )  # overwriting is not a new one
    assert await database.count_presets(user, platform="telegram") == 3

"""Input from buttons and limits that must hold under concurrency, on both back ends."""

from __future__ import annotations

from bot.db import Database

from .test_jobs import new_job


async def test_job_ids_beyond_the_column_are_simply_unknown(database: Database, user: int) -> None:
    """A forged button can carry any number; the id column is 32-bit on PostgreSQL, 64 on SQLite."""
    job = await new_job(database)
    assert (await database.get_job(job.id)) is not None
    for forged in (2**31, 2**63, 10**30, 0, -1):
        assert await database.get_job(forged) is None

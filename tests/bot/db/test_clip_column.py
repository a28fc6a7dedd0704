"""``jobs.clip`` (issue 21): a photo's empty clip is SQL NULL on both back ends, not JSON ``null`` (on
PostgreSQL a JSONB ``'null'`` is a value: ``clip IS NULL`` would miss it), and a clip's order reads back."""

from __future__ import annotations

from sqlalchemy import text

from bot.db import Database

from .test_jobs import new_job


async def test_a_photo_s_clip_is_sql_null_and_a_clip_s_order_reads_back(
    database: Database, user: int
) -> None:
    photo = await new_job(database, user)
    order = {"quality": "instant", "format": "mp4"}
    clip = await new_job(database, user, clip=order)
    async with database.session() as session:
        nulls = await session.execute(text("SELECT id FROM jobs WHERE clip IS NULL ORDER BY id"))
        assert [row[0] for row in nulls] == [photo.id]
    assert (await database.get_job(photo.id)).clip is None  # type: ignore[union-attr]
    assert (await database.get_job(clip.id)).clip == order  # type: ignore[union-attr]

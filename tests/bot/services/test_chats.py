"""ChatService.moved: a chat's move is a normal event, logged once at INFO with a count of its jobs and
the ids of those still waiting or running (a busy group's history is no log line)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db import Database
from bot.services.chats import ChatService
from tests.bot.db.test_jobs import new_job
from tests.conftest import copy_sqlite

OLD, NEW = -4518810793, -1002471352452


@pytest.fixture
async def db(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Database]:
    database = Database(copy_sqlite(sqlite_template, tmp_path / "bot.db"))  # migrated already
    await database.upsert_user(7, None, "Ada", None, platform="telegram")
    yield database
    await database.dispose()


async def test_a_move_logs_a_count_and_the_active_jobs_at_info(
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(3):
        job = await new_job(db, 7, chat_id=OLD, chat_type="group")
        await db.claim_job(job.id, "w")
        await db.finish_job(job.id, width=8, height=8)
    waiting = await new_job(db, 7, chat_id=OLD, chat_type="group")

    with caplog.at_level(logging.INFO, logger="bot.services.chats"):
        move = await ChatService(db).moved("telegram", OLD, NEW)

    assert move.active == (waiting.id,)
    [record] = [r for r in caplog.records if r.name == "bot.services.chats"]
    assert record.levelno == logging.INFO
    assert (
        record.getMessage() == f"telegram chat {OLD} is now chat {NEW}: moved 4 jobs (active: {waiting.id})"
    )

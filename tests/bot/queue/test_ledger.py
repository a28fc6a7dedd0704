"""The ledger alone: every transition on a real SQLite database, no worker process."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db import Database, JobState
from bot.queue.ledger import Ledger, ticket_for
from engine.workers.wire import InputLostError, ResultReport
from tests.bot.queue.conftest import Jobs, RecordingEvents
from tests.fakes.images import pattern

PNG = pattern(8, 6, fmt="PNG")


def exists(path: Path) -> bool:
    return path.exists()


def empty(folder: Path) -> bool:
    return not folder.exists() or not os.listdir(folder)


def report(*, image: bytes | None = None, fmt: str = "png") -> ResultReport:
    return ResultReport(fmt, 8, 6, 1.5, 3, "cpu", {}, ("a note",), image)


@pytest.fixture
async def ledger(db: Database, results_dir: Path) -> AsyncIterator[tuple[Ledger, RecordingEvents]]:
    events = RecordingEvents()
    ledger = Ledger(db, events, results_dir=results_dir, progress_write_interval=0.0)
    try:
        yield ledger, events
    finally:
        await ledger.close(5.0)


async def test_a_painting_by_value_is_kept_before_the_job_is_done(
    ledger: tuple[Ledger, RecordingEvents], jobs: Jobs, db: Database, results_dir: Path
) -> None:
    books, events = ledger
    job = await jobs.add()
    assert await books.start(job.id, "w") is not None
    assert await books.finish(job.id, report(image=PNG))

    result = await events.finished(job.id)
    assert result.path == results_dir / f"{job.id}.png"
    assert result.path.read_bytes() == PNG
    assert (result.width, result.height, result.notes) == (8, 6, ("a note",))
    record = await db.get_job(job.id)
    assert record is not None
    assert (record.state, record.progress, record.result_file_id) == (JobState.DONE, 1.0, None)
    assert events.names(job.id) == ["started", "finished"]


async def test_a_painting_by_reference_is_moved_from_the_file_the_bot_chose(
    ledger: tuple[Ledger, RecordingEvents], jobs: Jobs, results_dir: Path
) -> None:
    books, events = ledger
    job = await jobs.add()
    ticket = ticket_for(job, by_reference=True)
    assert ticket.content.path == job.content_path  # the photo is not copied anywhere
    assert ticket.result_path is not None
    staged = Path(ticket.result_path)
    assert staged.parent == Path(job.content_path).parent
    Path.write_bytes(staged, PNG)  # as the worker does
    await books.start(job.id, "w")
    assert await books.finish(job.id, report(), staged=staged)
    assert (await events.finished(job.id)).path.read_bytes() == PNG
    assert not exists(staged)
    assert ticket_for(job, by_reference=False).result_path is None


async def test_a_painting_that_cannot_be_saved_fails_the_job_with_a_clear_code(
    ledger: tuple[Ledger, RecordingEvents], jobs: Jobs, db: Database, results_dir: Path
) -> None:
    """A full disk or an unwritable folder: here the results "folder" is a file, which no one can write
    into, root included. The job must not end ``done`` (at 100 %, with a live Cancel button)."""
    books, events = ledger
    Path.write_bytes(results_dir, b"not a folder")
    job = await jobs.add()
    await books.start(job.id, "w")
    assert not await books.finish(job.id, report(image=PNG))

    code, message = await events.failed(job.id)
    assert code == "result_unsaved"
    assert "could not be saved" in message
    record = await db.get_job(job.id)
    assert record is not None
    assert (record.state, record.error_code) == (JobState.FAILED, "result_unsaved")
    assert events.names(job.id) == ["started", "failed"]


async def test_a_painting_that_is_not_what_it_claims_fails_the_job(
    ledger: tuple[Ledger, RecordingEvents], jobs: Jobs, results_dir: Path
) -> None:
    books, events = ledger
    job = await jobs.add()
    await books.start(job.id, "w")
    assert not await books.finish(job.id, report(image=b"GIF89a....", fmt="png"))
    code, _ = await events.failed(job.id)
    assert code == "bad_result"
    other = await jobs.add()
    await books.start(other.id, "w")
    assert not await books.finish(other.id, report(), staged=results_dir / "never-written")
    assert (await events.failed(other.id))[0] == "bad_result"
    assert empty(results_dir)


async def test_a_late_result_of_a_cancelled_job_is_dropped(
    ledger: tuple[Ledger, RecordingEvents], jobs: Jobs, db: Database, tmp_path: Path, results_dir: Path
) -> None:
    books, _ = ledger
    job = await jobs.add()
    await books.start(job.id, "w")
    assert await books.cancel(job.id) is not None
    assert await books.cancel(job.id) is None
    staged = tmp_path / "staged"
    staged.write_bytes(PNG)
    assert not await books.finish(job.id, report(), staged=staged)
    assert not exists(staged)
    assert empty(results_dir)
    record = await db.get_job(job.id)
    assert record is not None
    assert record.state is JobState.CANCELLED


async def test_a_stop_gives_the_attempt_back_and_a_lost_worker_uses_it(
    ledger: tuple[Ledger, RecordingEvents], jobs: Jobs, db: Database
) -> None:
    books, events = ledger
    job = await jobs.add(max_attempts=2)
    for _ in range(3):  # stopped three times, more than its attempts: still queued, nothing used up
        assert await books.start(job.id, "w") is not None
        assert await books.release(job.id, "the bot restarted")
    record = await db.get_job(job.id)
    assert record is not None
    assert (record.state, record.attempts) == (JobState.QUEUED, 0)

    await books.start(job.id, "w")
    assert await books.lose(job.id, "the worker process ended")
    await books.start(job.id, "w")
    assert not await books.lose(job.id, "the worker process ended")
    code, message = await events.failed(job.id)
    assert (code, message) == ("worker_lost", "the worker process ended")
    assert not await books.release(job.id, "late")  # a failed job stays failed


async def test_a_job_left_running_by_a_crash_is_recovered_with_an_attempt_used(
    ledger: tuple[Ledger, RecordingEvents], jobs: Jobs, db: Database
) -> None:
    books, events = ledger
    job = await jobs.add()
    await db.claim_job(job.id, "w")
    [left] = await books.recover()
    assert left.id == job.id
    assert await events.retrying(job.id) == "the bot restarted"
    record = await db.get_job(job.id)
    assert record is not None
    assert (record.state, record.attempts) == (JobState.QUEUED, 1)


async def test_progress_of_a_job_cancelled_behind_the_queues_back_is_refused(
    ledger: tuple[Ledger, RecordingEvents], jobs: Jobs, db: Database
) -> None:
    from engine.protocol import Progress

    books, events = ledger
    job = await jobs.add()
    await books.start(job.id, "w")
    step = Progress(1, 10, 1, 1, 8, 6, {}, 0.1, 0.9)
    assert await books.progress(job.id, step)
    await db.cancel_job(job.id)
    assert not await books.progress(job.id, step)
    assert len(events.of(job.id, "progress")) <= 1


async def test_a_ticket_by_value_of_a_job_whose_photo_is_gone(jobs: Jobs, tmp_path: Path) -> None:
    job = await jobs.add(content_path=str(tmp_path / "gone"))
    assert ticket_for(job, by_reference=True).content.path == str(tmp_path / "gone")  # the worker finds out
    with pytest.raises(InputLostError, match="missing"):
        ticket_for(job, by_reference=False)


async def test_reconcile_loses_only_running_jobs_nobody_holds(
    ledger: tuple[Ledger, RecordingEvents], jobs: Jobs, db: Database
) -> None:
    books, events = ledger
    held, orphan, queued = await jobs.add(), await jobs.add(), await jobs.add()
    for job in (held, orphan):
        assert await books.start(job.id, "w") is not None
    assert await books.reconcile({held.id}) == []  # both started just now: within the grace
    assert await books.reconcile({held.id}, grace=0.0) == [orphan.id]
    record = await db.get_job(orphan.id)
    assert record is not None
    assert record.state is JobState.QUEUED  # lost like a dead worker's job: queued again, attempt used
    assert events.names(orphan.id)[-1] == "retrying"
    for job in (held, queued):
        got = await db.get_job(job.id)
        assert got is not None
        assert got.state is (JobState.RUNNING if job is held else JobState.QUEUED)

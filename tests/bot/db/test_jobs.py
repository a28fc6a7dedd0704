"""Jobs: creation, queries and the state machine's guards, on both back ends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from bot.db import SKETCH_WORKER, Database, JobLimits, JobRecord, JobState, RequestMadeError

from .test_users_presets_chats import OWN, STARRY, assert_aware_utc, assert_recent


async def new_job(db: Database, user_id: int = 1001, **overrides: Any) -> JobRecord:
    values: dict[str, Any] = {
        "platform": "telegram",
        "user_id": user_id,
        "chat_id": user_id,
        "chat_type": "private",
        "language_code": "en",
        "source_message_id": 10,
        "styles": STARRY,
        "style_label": "The Starry Night",
        "settings": {"quality": "draft"},
        "content_path": "data/jobs/1/content.jpg",
    }
    values.update(overrides)
    return await db.create_job(**values)


def test_job_state_values() -> None:
    assert [s.value for s in JobState] == ["queued", "running", "done", "failed", "cancelled"]
    assert JobState.ACTIVE == (JobState.QUEUED, JobState.RUNNING)
    assert JobState("running") is JobState.RUNNING
    assert JobState.QUEUED == "queued"


async def test_create_and_get(database: Database, user: int) -> None:
    job = await new_job(
        database,
        user,
        chat_id=-100123,
        chat_type="supergroup",
        styles=OWN,
        style_paths=["data/jobs/1/style0.jpg"],
        status_message_id=11,
        max_attempts=3,
    )
    assert job.id >= 1
    assert job.state is JobState.QUEUED
    assert job.is_active
    assert (job.user_id, job.chat_id, job.chat_type, job.language_code) == (user, -100123, "supergroup", "en")
    assert (job.source_message_id, job.status_message_id) == (10, 11)
    assert (job.styles, job.style_label, job.settings) == (OWN, "The Starry Night", {"quality": "draft"})
    assert (job.content_path, job.style_paths) == ("data/jobs/1/content.jpg", ["data/jobs/1/style0.jpg"])
    assert (job.attempts, job.max_attempts) == (0, 3)
    assert job.worker is job.external_id is job.progress is job.eta_seconds is None
    assert job.error_code is job.error_message is job.result_file_id is None
    assert job.started_at is job.finished_at is job.heartbeat_at is None
    assert_aware_utc(job.created_at)
    assert_recent(job.created_at)
    assert await database.get_job(job.id) == job
    assert await database.get_job(job.id + 1000) is None

    default = await new_job(database, user)
    assert (default.style_paths, default.max_attempts, default.status_message_id) == ([], 2, None)
    assert default.id > job.id


async def test_full_life_of_a_job(database: Database, user: int) -> None:
    job = await new_job(database, user)
    assert await database.set_status_message(job.id, 77)
    assert await database.set_external_id(job.id, "celery-task-1")

    running = await database.claim_job(job.id, "worker-1")
    assert running is not None
    assert running.state is JobState.RUNNING
    assert (running.worker, running.attempts, running.progress) == ("worker-1", 1, 0.0)
    assert (running.status_message_id, running.external_id) == (77, "celery-task-1")
    assert_aware_utc(running.started_at, running.heartbeat_at)

    await asyncio.sleep(0.01)
    assert await database.record_progress(job.id, 0.5, 12.5)
    halfway = await database.get_job(job.id)
    assert halfway is not None
    assert (halfway.progress, halfway.eta_seconds) == (0.5, 12.5)
    assert halfway.heartbeat_at is not None
    assert running.heartbeat_at is not None
    assert halfway.heartbeat_at > running.heartbeat_at
    assert await database.record_progress(job.id, 7.0, None)  # clamped
    assert (await database.get_job(job.id)).progress == 1.0  # type: ignore[union-attr]

    done = await database.finish_job(
        job.id, result_file_id="AgAD-result", width=1024, height=768, engine_seconds=41.5
    )
    assert done is not None
    assert done.state is JobState.DONE
    assert not done.is_active
    assert (done.result_file_id, done.result_width, done.result_height) == ("AgAD-result", 1024, 768)
    assert (done.engine_seconds, done.progress, done.eta_seconds) == (41.5, 1.0, None)
    assert_aware_utc(done.finished_at)
    assert done.started_at == running.started_at
    assert await database.get_job(job.id) == done


async def test_claim_only_once(database: Database, user: int) -> None:
    job = await new_job(database, user)
    assert await database.claim_job(job.id, "a") is not None
    assert await database.claim_job(job.id, "b") is None
    assert (await database.get_job(job.id)).worker == "a"  # type: ignore[union-attr]
    assert await database.claim_job(job.id + 1000, "a") is None


async def test_concurrent_claims_have_one_winner(database: Database, user: int) -> None:
    """Two claimers on separate engines (as two processes would be) race for each of ten jobs."""
    jobs = [await new_job(database, user) for _ in range(10)]
    other = Database(database.url)
    try:
        for job in jobs:
            results = await asyncio.gather(
                database.claim_job(job.id, "here"),
                other.claim_job(job.id, "there"),
                database.claim_job(job.id, "here-2"),
            )
            winners = [r for r in results if r is not None]
            assert len(winners) == 1
            stored = await database.get_job(job.id)
            assert stored is not None
            assert (stored.state, stored.attempts, stored.worker) == (JobState.RUNNING, 1, winners[0].worker)
    finally:
        await other.dispose()


async def test_late_result_cannot_resurrect_a_cancelled_job(database: Database, user: int) -> None:
    job = await new_job(database, user)
    await database.claim_job(job.id, "w")
    cancelled = await database.cancel_job(job.id)
    assert cancelled is not None
    assert cancelled.state is JobState.CANCELLED
    assert_aware_utc(cancelled.finished_at)

    assert await database.finish_job(job.id, result_file_id="late", width=1, height=1) is None
    assert await database.fail_job(job.id, "engine_error", "late failure") is None
    assert await database.record_progress(job.id, 0.9, 1.0) is False
    assert await database.requeue_job(job.id, "restart") is None
    assert await database.claim_job(job.id, "w2") is None
    assert await database.cancel_job(job.id) is None  # already ended
    assert await database.get_job(job.id) == cancelled


async def test_cancel_a_queued_job(database: Database, user: int) -> None:
    job = await new_job(database, user)
    cancelled = await database.cancel_job(job.id)
    assert cancelled is not None
    assert (cancelled.state, cancelled.attempts, cancelled.started_at) == (JobState.CANCELLED, 0, None)
    assert await database.claim_job(job.id, "w") is None
    assert await database.cancel_job(job.id + 1000) is None


async def test_finish_needs_a_running_job(database: Database, user: int) -> None:
    job = await new_job(database, user)
    assert await database.finish_job(job.id) is None
    assert (await database.get_job(job.id)).state is JobState.QUEUED  # type: ignore[union-attr]
    assert await database.record_progress(job.id, 0.1, None) is False


async def test_fail_from_queued_or_running_only(database: Database, user: int) -> None:
    queued = await new_job(database, user)
    failed = await database.fail_job(queued.id, "download_failed", "the photo is gone")
    assert failed is not None
    assert (failed.state, failed.error_code, failed.error_message) == (
        JobState.FAILED,
        "download_failed",
        "the photo is gone",
    )
    assert_aware_utc(failed.finished_at)

    running = await new_job(database, user)
    await database.claim_job(running.id, "w")
    assert (await database.fail_job(running.id, "out_of_memory", None)).state is JobState.FAILED  # type: ignore[union-attr]

    done = await new_job(database, user)
    await database.claim_job(done.id, "w")
    finished = await database.finish_job(done.id, result_file_id="r")
    assert await database.fail_job(done.id, "late", "x") is None
    assert await database.cancel_job(done.id) is None
    assert await database.get_job(done.id) == finished
    assert await database.finish_job(failed.id) is None


async def test_requeue_keeps_attempts(database: Database, user: int) -> None:
    job = await new_job(database, user)
    assert await database.requeue_job(job.id, "not running") is None  # only running jobs go back

    await database.claim_job(job.id, "w1")
    await database.set_external_id(job.id, "task-1")
    await database.record_progress(job.id, 0.4, 30.0)
    requeued = await database.requeue_job(job.id, "worker lost")
    assert requeued is not None
    assert (requeued.state, requeued.attempts, requeued.error_message) == (JobState.QUEUED, 1, "worker lost")
    assert requeued.worker is requeued.external_id is requeued.progress is requeued.heartbeat_at is None
    assert requeued.started_at is None

    again = await database.claim_job(job.id, "w2")
    assert again is not None
    assert (again.attempts, again.worker, again.progress) == (2, "w2", 0.0)


async def test_status_message_and_external_id(database: Database, user: int) -> None:
    job = await new_job(database, user)
    assert await database.set_status_message(job.id, 555)
    assert await database.set_external_id(job.id, "abc")
    stored = await database.get_job(job.id)
    assert stored is not None
    assert (stored.status_message_id, stored.external_id) == (555, "abc")
    await database.cancel_job(job.id)
    assert await database.set_status_message(job.id, 556)  # allowed after the end: the message is edited
    assert not await database.set_status_message(job.id + 1000, 1)
    assert not await database.set_external_id(job.id + 1000, "x")


async def test_queries(database: Database, user: int) -> None:
    other = 2002
    await database.upsert_user(other, "bob", "Bob", "en", platform="telegram")
    a = await new_job(database, user)
    b = await new_job(database, other)
    c = await new_job(database, user)
    d = await new_job(database, user)
    e = await new_job(database, other)
    await database.claim_job(c.id, "w")
    await database.claim_job(d.id, "w")
    await database.finish_job(d.id)
    await database.cancel_job(e.id)

    assert [j.id for j in await database.active_jobs(user, platform="telegram")] == [a.id, c.id]
    assert [j.id for j in await database.active_jobs(other, platform="telegram")] == [b.id]
    assert [j.id for j in await database.queued_and_running()] == [a.id, b.id, c.id]
    assert [j.id for j in await database.queued_and_running()] == [a.id, b.id, c.id]
    assert [j.id for j in await database.jobs_to_recover()] == [c.id]
    assert await database.count_active(user, platform="telegram") == 2
    assert await database.count_active(other, platform="telegram") == 1
    assert await database.count_active(404, platform="telegram") == 0

    assert [j.id for j in await database.recent_jobs(user, 2, platform="telegram")] == [d.id, c.id]
    assert [j.id for j in await database.recent_jobs(user, 10, platform="telegram")] == [d.id, c.id, a.id]
    assert await database.recent_jobs(404, 10, platform="telegram") == []


async def test_count_created_since(database: Database, user: int) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    for _ in range(3):
        await new_job(database, user)
    assert await database.count_created_since(user, before, platform="telegram") == 3
    assert (
        await database.count_created_since(
            user, datetime.now(UTC) + timedelta(minutes=1), platform="telegram"
        )
        == 0
    )
    # Any aware time zone works: it is converted to UTC before comparing (SQLite compares text).
    moscow = timezone(timedelta(hours=3))
    assert await database.count_created_since(user, before.astimezone(moscow), platform="telegram") == 3
    ahead = (datetime.now(UTC) + timedelta(seconds=30)).astimezone(timezone(timedelta(hours=-5)))
    assert await database.count_created_since(user, ahead, platform="telegram") == 0
    assert await database.count_created_since(404, before, platform="telegram") == 0


async def test_timestamps_are_aware_utc_after_a_fresh_read(database: Database, user: int) -> None:
    job = await new_job(database, user)
    await database.claim_job(job.id, "w")
    await database.record_progress(job.id, 0.2, 3.0)
    await database.finish_job(job.id)
    stored = await database.get_job(job.id)
    assert stored is not None
    assert_aware_utc(stored.created_at, stored.started_at, stored.heartbeat_at, stored.finished_at)
    assert stored.created_at <= stored.started_at <= stored.finished_at  # type: ignore[operator]


async def finished(db: Database, user: int, seconds: float) -> JobRecord:
    job = await new_job(db, user)
    await db.claim_job(job.id, "w")
    done = await db.finish_job(job.id, width=64, height=48, engine_seconds=seconds)
    assert done is not None
    return done


async def test_result_file_only_for_finished_jobs(database: Database, user: int) -> None:
    job = await finished(database, user, 3.0)
    queued = await new_job(database, user)
    assert await database.record_result_file(job.id, "AgAD-result")
    assert not await database.record_result_file(queued.id, "AgAD-nope")
    stored = [await database.get_job(j.id) for j in (job, queued)]
    assert [s.result_file_id if s else "missing" for s in stored] == ["AgAD-result", None]


async def test_undelivered_jobs_are_recent_done_ones_without_a_file(database: Database, user: int) -> None:
    delivered = await finished(database, user, 1.0)
    await database.record_result_file(delivered.id, "AgAD")
    undelivered = await finished(database, user, 2.0)
    await new_job(database, user)  # still queued: nothing to deliver
    since = datetime.now(UTC) - timedelta(hours=1)
    assert [j.id for j in await database.undelivered_jobs(since)] == [undelivered.id]
    assert await database.undelivered_jobs(datetime.now(UTC) + timedelta(hours=1)) == []


async def test_a_given_up_delivery_is_marked_once_and_not_redelivered(database: Database, user: int) -> None:
    given_up = await finished(database, user, 1.0)
    waiting = await finished(database, user, 2.0)
    delivered = await finished(database, user, 3.0)
    await database.record_result_file(delivered.id, "AgAD")
    queued = await new_job(database, user)
    reason = "Forbidden: bot was blocked by the user " + "x" * 300  # kept short in the row

    assert await database.give_up_delivery(given_up.id, reason)
    assert not await database.give_up_delivery(given_up.id, "again")  # once: counted and logged once
    assert not await database.give_up_delivery(delivered.id, "too late")  # it reached its owner
    assert not await database.give_up_delivery(queued.id, "not finished")
    since = datetime.now(UTC) - timedelta(hours=1)
    assert [j.id for j in await database.undelivered_jobs(since)] == [waiting.id]

    stored = await database.get_job(given_up.id)
    assert stored is not None
    assert stored.delivery_given_up_at is not None
    assert_recent(stored.delivery_given_up_at)
    assert stored.delivery_given_up_reason == reason[:255]
    for other in (waiting, delivered, queued):
        record = await database.get_job(other.id)
        assert record is not None
        assert record.delivery_given_up_at is record.delivery_given_up_reason is None


async def test_typical_job_seconds_is_a_recent_median(database: Database, user: int) -> None:
    assert await database.typical_job_seconds() is None
    for seconds in (10.0, 50.0, 20.0):
        await finished(database, user, seconds)
    failed = await new_job(database, user)
    await database.claim_job(failed.id, "w")
    await database.fail_job(failed.id, "internal", "boom")  # not counted: no engine time
    assert await database.typical_job_seconds() == 20.0
    assert await database.typical_job_seconds(limit=1) == 20.0  # the newest one alone


async def test_typical_job_seconds_leaves_out_sketches(database: Database, user: int) -> None:
    """A job settled with its sketch, or of the instant tier, takes half a second: counted, the estimates of
    queued paintings would collapse (and "Keep the sketch" would never be offered)."""
    for seconds in (10.0, 50.0, 20.0):
        await finished(database, user, seconds)
    for _ in range(3):
        sketched = await new_job(database, user)
        await database.claim_job(sketched.id, SKETCH_WORKER)
        await database.finish_job(sketched.id, width=64, height=48, engine_seconds=0.5)
        instant = await new_job(database, user, settings={"quality": "instant"})
        await database.claim_job(instant.id, "w")
        await database.finish_job(instant.id, width=64, height=48, engine_seconds=0.4)
    unset = await new_job(database, user, settings={})  # no quality named: a painting all the same
    await database.claim_job(unset.id, "w")
    await database.finish_job(unset.id, width=64, height=48, engine_seconds=30.0)
    assert await database.typical_job_seconds() == 30.0  # the median of 10, 20, 30, 50
    assert await database.typical_job_seconds(limit=1) == 30.0


async def test_a_request_makes_one_job_per_platform(database: Database, user: int) -> None:
    """The same request again (the platform sent it twice) finds the first job, limits or not, even where
    the limits would refuse a new one; the same key on another platform is another request."""
    first = await new_job(database, user, request_key="message:1001:7")
    assert first.request_key == "message:1001:7"
    assert await database.job_for_request("telegram", "message:1001:7") == first
    assert await database.job_for_request("discord", "message:1001:7") is None
    tight = JobLimits(max_active=1, max_per_hour=1, max_queued=1)
    for limits in (None, tight):
        with pytest.raises(RequestMadeError) as made:
            await new_job(database, user, request_key="message:1001:7", limits=limits)
        assert made.value.job.id == first.id
    await database.upsert_user(user, None, None, None, platform="discord")
    other = await new_job(database, user, request_key="message:1001:7", platform="discord")
    assert other.id != first.id
    keyless = [await new_job(database, user) for _ in range(2)]  # no key: never a repeat
    assert keyless[0].id != keyless[1].id
    assert len(await database.recent_jobs(user, 10, platform="telegram")) == 3


async def test_a_request_handled_twice_at_once_makes_one_job(database: Database, user: int) -> None:
    """Two handlings racing past the first look: the unique index decides, the loser gets the job."""
    outcomes = await asyncio.gather(
        *(new_job(database, user, request_key="callback:42") for _ in range(4)), return_exceptions=True
    )
    made = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(made) == 1
    for outcome in outcomes:
        if isinstance(outcome, RequestMadeError):
            assert outcome.job.id == made[0].id
        else:
            assert not isinstance(outcome, BaseException), outcome

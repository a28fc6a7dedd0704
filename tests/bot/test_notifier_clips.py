"""The notifier with clip jobs (issue 21): a clip's status counts frames, and a clip's result (an .mp4)
that could not be sent at once is found and sent again by the redelivery."""

from __future__ import annotations

from bot.db import Database, JobRecord
from bot.frontend import TELEGRAM
from bot.queue.base import JobResult
from engine.protocol import Progress
from engine.workers.clips import ClipOrder
from tests.bot.test_notifier import RecordingFrontend, core  # noqa: F401  (the fixture)

ORDER = ClipOrder("instant", "mp4", 50 * 2**20, 10.0, 12.0).to_dict()


async def clip_job(db: Database) -> JobRecord:
    await db.upsert_user(42, None, "Sam", "en", platform=TELEGRAM)
    return await db.create_job(
        platform=TELEGRAM, user_id=42, chat_id=7, chat_type="private", language_code="en",
        source_message_id=1, styles=[{"preset": "udnie", "weight": 1.0}], style_label="Udnie", settings={},
        content_path="/nonexistent/content", status_message_id=99, clip=ORDER,
    )  # fmt: skip


async def test_a_clips_status_counts_frames(core) -> None:  # noqa: F811
    db, notifier = core
    telegram = RecordingFrontend(TELEGRAM)
    notifier.frontends[TELEGRAM] = telegram
    job = await clip_job(db)
    await db.claim_job(job.id, "worker-0")
    await notifier.job_progress(job.id, Progress(2, 5, 1, 1, 64, 48, {}, 1.0, 1.5, None))
    assert "frame 2 of 5" in telegram.calls[-1][2]


async def test_a_clip_not_sent_at_once_is_sent_again_as_its_mp4(core) -> None:  # noqa: F811
    db, notifier = core
    telegram = RecordingFrontend(TELEGRAM)
    notifier.frontends[TELEGRAM] = telegram
    job = await clip_job(db)
    await db.claim_job(job.id, "worker-0")
    await db.finish_job(job.id, width=64, height=48, engine_seconds=1.0)
    notifier.results_dir.mkdir(parents=True, exist_ok=True)
    path = notifier.results_dir / f"{job.id}.mp4"
    path.write_bytes(b"\0\0\0\x20ftypisom")
    telegram.refuse = True
    await notifier.job_finished(job.id, JobResult(path, "mp4", 64, 48, 1.0))
    assert (await db.get_job(job.id)).result_file_id is None
    telegram.refuse, telegram.calls = False, []
    await notifier.redeliver()
    assert ("deliver", job.id, f"{job.id}.mp4") in telegram.calls
    assert (await db.get_job(job.id)).result_file_id == "telegram-1"


def test_every_clip_error_a_worker_reports_has_its_own_answer() -> None:
    """A code the worker sends (engine.clips.CLIP_ERRORS) never falls to the generic apology."""
    from bot.replies import ERROR_KEYS
    from engine.clips.errors import CLIP_ERRORS

    assert set(CLIP_ERRORS) <= set(ERROR_KEYS), set(CLIP_ERRORS) - set(ERROR_KEYS)

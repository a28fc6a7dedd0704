"""The core without either platform: the notifier routes each job's events to its platform's front end,
and a result whose platform does not run in this process waits for one that does."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.db import SKETCH_WORKER, Database, JobRecord
from bot.frontend import DISCORD, TELEGRAM, Undeliverable
from bot.health import Metrics
from bot.notifier import Notifier
from bot.queue.base import JobResult, QueueStatus
from bot.services.jobs import JobService, Limits
from engine.protocol import Progress
from tests.conftest import copy_sqlite


class RecordingFrontend:
    """A platform that only writes down what the core asked of it."""

    def __init__(self, platform: str) -> None:
        self.platform = platform
        self.calls: list[tuple[str, int, str]] = []
        self.shown: list[tuple[int, str, bytes | None, bool, bool]] = []  # (job, text, preview, now, keep)
        self.sent = 0
        self.refuse = False  # the platform refuses every send for now (it is down, it says wait)
        self.blocked: set[int] = set()  # users who blocked the bot: their results can never be sent

    async def show_status(
        self,
        job: JobRecord,
        text: str,
        *,
        preview: bytes | None = None,
        final: bool = False,
        now: bool = False,
        keep: bool = False,
    ) -> None:
        self.calls.append(("status", job.id, text))
        self.shown.append((job.id, text, preview, now, keep))

    async def remove_status(self, job: JobRecord) -> None:
        self.calls.append(("remove", job.id, ""))

    async def deliver(self, job: JobRecord, path: Path, notes: tuple[str, ...]) -> str | None:
        self.calls.append(("deliver", job.id, path.name))
        if job.user_id in self.blocked:
            raise Undeliverable("Forbidden: bot was blocked by the user")
        if self.refuse:
            return None
        self.sent += 1
        return f"{self.platform}-{self.sent}"

    async def tell(self, job: JobRecord, text: str) -> None:
        self.calls.append(("tell", job.id, text))

    async def deliver_animation(self, job: JobRecord, path: Path) -> None:
        self.calls.append(("animation", job.id, path.name))

    async def close(self) -> None:
        return None


class IdleQueue:
    """Just enough of a queue for placements."""

    def status(self) -> QueueStatus:
        return QueueStatus(backend="test", workers=1, busy=0, healthy=True)

    async def submit(self, job_id: int) -> None:
        return None


@pytest.fixture
async def core(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[tuple[Database, Notifier]]:
    db = Database(copy_sqlite(sqlite_template, tmp_path / "core.db"))  # migrated already
    jobs = JobService(
        db,
        IdleQueue(),  # type: ignore[arg-type]  # a stand-in queue
        jobs_dir=tmp_path / "jobs",
        limits=Limits(5, 50, 100),
        max_image_pixels=10**7,
    )
    notifier = Notifier(db, jobs, Metrics(), results_dir=tmp_path / "results")
    yield db, notifier
    await db.dispose()


async def new_job(db: Database, platform: str, user_id: int = 42) -> JobRecord:
    """The same user id on both platforms: two different people."""
    await db.upsert_user(user_id, None, "Sam", "en", platform=platform)
    job = await db.create_job(
        platform=platform, user_id=user_id, chat_id=7, chat_type="private", language_code="en",
        source_message_id=1, styles=[{"preset": "udnie", "weight": 1.0}], style_label="Udnie", settings={},
        content_path="/nonexistent/content.jpg", status_message_id=99,
    )  # fmt: skip
    return job


async def finished(db: Database, notifier: Notifier, job: JobRecord, worker: str = "worker-0") -> JobResult:
    await db.claim_job(job.id, worker)
    await db.finish_job(job.id, width=8, height=8, engine_seconds=1.0)
    notifier.results_dir.mkdir(parents=True, exist_ok=True)
    path = notifier.results_dir / f"{job.id}.png"
    path.write_bytes(b"painted")
    return JobResult(path=path, format="png", width=8, height=8, seconds=1.0)


async def test_each_jobs_events_go_to_its_own_platform(core) -> None:
    db, notifier = core
    telegram, discord = RecordingFrontend(TELEGRAM), RecordingFrontend(DISCORD)
    notifier.frontends.update({TELEGRAM: telegram, DISCORD: discord})
    on_telegram, on_discord = await new_job(db, TELEGRAM), await new_job(db, DISCORD)

    await notifier.queue_changed()  # both queued: each hears its own place, on its own platform
    assert {c[1] for c in telegram.calls} == {on_telegram.id}
    assert {c[1] for c in discord.calls} == {on_discord.id}

    result = await finished(db, notifier, on_discord)
    await db.claim_job(on_telegram.id, "worker-1")
    await notifier.job_progress(on_telegram.id, Progress(5, 10, 1, 1, 8, 8, {}, 0.1, 1.0, None))
    assert telegram.calls[-1][:2] == ("status", on_telegram.id)
    assert "50%" in telegram.calls[-1][2]
    await notifier.job_finished(on_discord.id, result)
    assert ("deliver", on_discord.id, f"{on_discord.id}.png") in discord.calls
    assert not any(c[0] == "deliver" for c in telegram.calls)
    assert (await db.get_job(on_discord.id)).result_file_id == "discord-1"

    await notifier.job_failed(on_telegram.id, "engine_error", "boom")
    assert telegram.calls[-1][:2] == ("status", on_telegram.id)
    assert all(c[1] == on_discord.id for c in discord.calls)


async def test_a_result_waits_while_its_platform_is_not_running(core) -> None:
    db, notifier = core
    telegram = RecordingFrontend(TELEGRAM)
    notifier.frontends[TELEGRAM] = telegram  # this process runs Telegram only
    job = await new_job(db, DISCORD)
    result = await finished(db, notifier, job)

    await notifier.job_finished(job.id, result)  # no Discord here: nothing is sent, nothing is lost
    assert telegram.calls == []
    assert (await db.get_job(job.id)).result_file_id is None
    assert result.path.is_file()

    discord = RecordingFrontend(DISCORD)  # a later run with the Discord token
    notifier.frontends[DISCORD] = discord
    await notifier.redeliver()
    assert ("deliver", job.id, f"{job.id}.png") in discord.calls
    assert (await db.get_job(job.id)).result_file_id == "discord-1"
    assert telegram.calls == []


async def test_the_status_goes_only_once_the_painting_is_confirmed_sent(core) -> None:
    """A status that says "done" (Discord) or disappears (Telegram) before a send that then fails would
    leave the user with nothing: the status first says the painting waits, and goes when it is sent."""
    db, notifier = core
    discord = RecordingFrontend(DISCORD)
    notifier.frontends[DISCORD] = discord
    job = await new_job(db, DISCORD)
    result = await finished(db, notifier, job)

    discord.refuse = True
    await notifier.job_finished(job.id, result)
    assert [c[0] for c in discord.calls] == ["deliver", "status"]
    assert "ready" in discord.calls[-1][2]
    assert (await db.get_job(job.id)).result_file_id is None

    discord.refuse, discord.calls = False, []
    await notifier.redeliver()
    assert [c[0] for c in discord.calls] == ["deliver", "remove"]
    assert (await db.get_job(job.id)).result_file_id == "discord-1"


async def test_a_job_settled_with_its_sketch_counts_without_skewing_the_engine_time(core) -> None:
    db, notifier = core
    notifier.frontends[TELEGRAM] = RecordingFrontend(TELEGRAM)
    painted, sketched = await new_job(db, TELEGRAM, user_id=1), await new_job(db, TELEGRAM, user_id=2)
    await notifier.job_finished(painted.id, await finished(db, notifier, painted))
    await notifier.job_finished(sketched.id, await finished(db, notifier, sketched, SKETCH_WORKER))
    registry = notifier.metrics.registry
    assert registry.get_sample_value("stylebot_jobs_total", {"outcome": "done"}) == 2
    assert registry.get_sample_value("stylebot_job_seconds_count") == 1  # the painting's alone


async def test_the_sketch_shows_at_once_and_offers_to_be_kept_only_when_the_wait_is_long(core) -> None:
    db, notifier = core
    notifier.sketch_offer_seconds = 30.0
    telegram = RecordingFrontend(TELEGRAM)
    notifier.frontends[TELEGRAM] = telegram
    first, second = await new_job(db, TELEGRAM, user_id=1), await new_job(db, TELEGRAM, user_id=2)

    await notifier.sketch_ready(first.id, b"sketch-1")  # first in line: starts at once, nothing to offer
    await notifier.sketch_ready(second.id, b"sketch-2")  # a minute behind it (the default timing)
    assert telegram.shown[0][0] == first.id
    assert "number 1" in telegram.shown[0][1]
    assert telegram.shown[0][2:] == (b"sketch-1", True, False)
    assert telegram.shown[1][0] == second.id
    assert "number 2" in telegram.shown[1][1]
    assert telegram.shown[1][2:] == (b"sketch-2", True, True)

    await notifier.queue_changed()  # later texts keep the offer, and are throttled as usual
    assert {(s[0], s[3], s[4]) for s in telegram.shown[2:]} == {
        (first.id, False, False),
        (second.id, False, True),
    }

    await db.claim_job(second.id, "worker-0")  # running: nothing to keep any more
    await notifier.job_progress(second.id, Progress(5, 10, 1, 1, 8, 8, {}, 0.1, 1.0, None))
    assert telegram.shown[-1][0] == second.id
    assert telegram.shown[-1][4] is False

    await db.cancel_job(first.id)
    telegram.shown.clear()
    await notifier.sketch_ready(first.id, b"late")  # the job ended meanwhile: its status is left alone
    assert telegram.shown == []


async def test_no_offer_without_a_sketch_or_when_the_operator_said_never(core) -> None:
    db, notifier = core
    telegram = RecordingFrontend(TELEGRAM)
    notifier.frontends[TELEGRAM] = telegram
    await new_job(db, TELEGRAM, user_id=1)
    second = await new_job(db, TELEGRAM, user_id=2)
    notifier.sketch_offer_seconds = 30.0
    await notifier.queue_changed()  # no sketch yet
    assert not any(s[4] for s in telegram.shown)
    notifier.sketch_offer_seconds = None  # SKETCH_OFFER_MINUTES=0
    await notifier.sketch_ready(second.id, b"sketch")
    assert telegram.shown[-1][2:] == (b"sketch", True, False)


@pytest.mark.parametrize("ending", ["cancelled", "finished"])
async def test_a_sketch_never_brings_back_the_status_of_a_job_that_ended_meanwhile(
    core, monkeypatch: pytest.MonkeyPatch, ending: str
) -> None:
    """The sketch comes outside the job's line of events: a cancel or the result may land while the
    notifier works out the job's place, and their last word must stay the last."""
    db, notifier = core
    telegram = RecordingFrontend(TELEGRAM)
    notifier.frontends[TELEGRAM] = telegram
    job = await new_job(db, TELEGRAM)
    placements = notifier.jobs.placements

    async def ending_meanwhile():
        answer = await placements()
        monkeypatch.setattr(notifier.jobs, "placements", placements)  # once (queue_changed asks again)
        if ending == "cancelled":
            await notifier.cancelled(await db.cancel_job(job.id))
        else:
            await notifier.job_finished(job.id, await finished(db, notifier, job))
        telegram.calls.append(("ended", job.id, ""))
        return answer

    monkeypatch.setattr(notifier.jobs, "placements", ending_meanwhile)
    await notifier.sketch_ready(job.id, b"sketch")
    assert telegram.calls[-1] == ("ended", job.id, "")  # nothing shown after the job's end
    assert job.id not in notifier._sketched  # nor anything remembered of it


def given_up_count(notifier: Notifier, platform: str) -> float | None:
    return notifier.metrics.registry.get_sample_value(
        "stylebot_deliveries_given_up_total", {"platform": platform}
    )


async def test_a_result_that_can_never_be_delivered_is_given_up_once_and_stays_given_up(
    core, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A user who blocked the bot: the result is marked given up, counted and logged once, its status and
    its figure left alone, and no later look (nor a restarted bot) sends it again. A result the platform
    could not take *now* still goes out after the restart."""
    db, notifier = core
    telegram = RecordingFrontend(TELEGRAM)
    notifier.frontends[TELEGRAM] = telegram
    blocked, later = await new_job(db, TELEGRAM, user_id=1), await new_job(db, TELEGRAM, user_id=2)
    telegram.blocked.add(blocked.user_id)
    result = await finished(db, notifier, blocked)
    gif = result.path.with_suffix(".gif")
    gif.write_bytes(b"forming")
    caplog.set_level(logging.WARNING, logger="bot.notifier")

    await notifier.job_finished(blocked.id, dataclasses.replace(result, animation=gif))
    assert telegram.calls == [("deliver", blocked.id, f"{blocked.id}.png")]  # no status edit, no figure
    stored = await db.get_job(blocked.id)
    assert stored.delivery_given_up_reason == "Forbidden: bot was blocked by the user"
    assert stored.result_file_id is None
    assert given_up_count(notifier, TELEGRAM) == 1
    assert given_up_count(notifier, DISCORD) == 0
    given_up = [r.getMessage() for r in caplog.records if "given up" in r.getMessage()]
    assert given_up == [
        f"job {blocked.id} (telegram user 1): result given up: Forbidden: bot was blocked by the user"
    ]

    telegram.refuse = True  # the other result: the platform cannot take it now
    await notifier.job_finished(later.id, await finished(db, notifier, later))
    assert (await db.get_job(later.id)).delivery_given_up_at is None
    telegram.refuse, telegram.calls = False, []
    await notifier.deliver(stored, result.path)  # a second verdict on the same job is not counted again
    assert given_up_count(notifier, TELEGRAM) == 1
    assert len([r for r in caplog.records if "given up" in r.getMessage()]) == 1

    restarted = Database(f"sqlite+aiosqlite:///{tmp_path / 'core.db'}")  # the bot again, same database
    try:
        again = Notifier(restarted, notifier.jobs, Metrics(), results_dir=notifier.results_dir)
        fresh = RecordingFrontend(TELEGRAM)  # even a user who unblocked it: the result was given up
        again.frontends[TELEGRAM] = fresh
        await again.redeliver()
        assert [c for c in fresh.calls if c[0] == "deliver"] == [("deliver", later.id, f"{later.id}.png")]
        assert (await restarted.get_job(later.id)).result_file_id == "telegram-1"
        assert given_up_count(again, TELEGRAM) == 0
    finally:
        await restarted.dispose()


@pytest.mark.parametrize("meanwhile", ["delivered", "given up"])
async def test_redelivery_from_a_stale_list_sends_nothing_settled_meanwhile(
    core, monkeypatch: pytest.MonkeyPatch, meanwhile: str
) -> None:
    """Redelivery works through a list it read earlier, one slow send after another; a job on it whose own
    send went through (or was given up) in the meantime is not sent a second time (seen in bench.soak as
    a painting that came twice, 0.4 s apart, after a send that timed out and was retried)."""
    db, notifier = core
    telegram = RecordingFrontend(TELEGRAM)
    notifier.frontends[TELEGRAM] = telegram
    job = await new_job(db, TELEGRAM)
    result = await finished(db, notifier, job)
    stale = await db.undelivered_jobs(datetime.now(UTC) - timedelta(days=1))
    assert [j.id for j in stale] == [job.id]

    if meanwhile == "delivered":
        await notifier.job_finished(job.id, result)
    else:
        telegram.blocked.add(job.user_id)
        await notifier.job_finished(job.id, result)
        telegram.blocked.clear()
    telegram.calls.clear()

    async def the_stale_list(since: datetime) -> list[JobRecord]:
        return stale

    monkeypatch.setattr(db, "undelivered_jobs", the_stale_list)
    await notifier.redeliver()
    assert telegram.calls == []  # neither a second painting nor a status edit

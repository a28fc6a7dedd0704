"""Moderation in the core, with no chat platform: the bot's admins block and unblock, a group's admins
switch the bot off and on, the owner or the chat's moderators delete a result, the admins' statistics;
all of it kept in the database across a restart."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot import replies
from bot.db import Database, JobRecord
from bot.frontend import DISCORD, TELEGRAM
from bot.queue.base import QueueStatus
from bot.services.access import Admins
from bot.services.jobs import JobService, Limits, NewJob
from bot.services.moderation import Blocked, ModerationService, Remover
from bot.services.refusals import (
    BlockedError,
    ChatOffError,
    NotBotAdminError,
    NotChatAdminError,
    Refused,
)
from bot.services.stats import StatsService
from tests.bot.services.test_jobs import photo_job
from tests.conftest import copy_sqlite

ADMIN, ALICE, BOB = 1, 7, 8
GROUP = -100500


class CancellingQueue:
    """Just enough of a queue: remembers what was submitted, cancels in the database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.submitted: list[int] = []

    async def submit(self, job_id: int) -> None:
        self.submitted.append(job_id)

    async def cancel(self, job_id: int) -> JobRecord | None:
        return await self.db.cancel_job(job_id)

    def status(self) -> QueueStatus:
        return QueueStatus("test", workers=2, busy=1, healthy=True)


@dataclasses.dataclass
class Core:
    db: Database
    jobs: JobService
    moderation: ModerationService
    stats: StatsService
    announced: list[int]
    tmp: Path


def build(db: Database, tmp: Path) -> Core:
    admins = Admins({TELEGRAM: frozenset({ADMIN}), DISCORD: frozenset({ADMIN})})
    jobs = JobService(
        db,
        CancellingQueue(db),  # type: ignore[arg-type]  # a stand-in queue
        jobs_dir=tmp / "jobs",
        limits=Limits(10, 100, 100),
        max_image_pixels=4_000_000,
        admins=admins,
    )
    announced: list[int] = []

    async def announce(job: JobRecord) -> None:
        announced.append(job.id)

    jobs.announce_cancelled = announce
    moderation = ModerationService(db, jobs, admins, results_dir=tmp / "results", jobs_dir=tmp / "jobs")
    stats = StatsService(db, jobs.queue, admins)
    return Core(db, jobs, moderation, stats, announced, tmp)


@pytest.fixture
async def core(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Core]:
    db = Database(copy_sqlite(sqlite_template, tmp_path / "bot.db"))  # migrated already
    yield build(db, tmp_path)
    await db.dispose()


async def restarted(core: Core) -> Core:
    """The same database file and folders, new objects: what a restart keeps."""
    await core.db.dispose()
    db = Database(f"sqlite+aiosqlite:///{core.tmp / 'bot.db'}")
    await db.migrate()
    return build(db, core.tmp)


def in_group(n: int, *, user_id: int, group: int = GROUP, platform: str = TELEGRAM) -> NewJob:
    job = dataclasses.replace(photo_job(n, user_id=user_id, platform=platform), chat_id=group)
    return dataclasses.replace(job, chat_type="supergroup")


def on_server(n: int, *, user_id: int, guild: int, channel: int) -> NewJob:
    job = photo_job(n, user_id=user_id, platform=DISCORD)
    return dataclasses.replace(job, chat_id=channel, chat_type="guild", guild_id=guild)


async def never_asked() -> bool:
    raise AssertionError("the platform was asked though the answer did not matter")


async def yes() -> bool:
    return True


async def no() -> bool:
    return False


async def test_only_the_bots_admins_block_and_unblock(core: Core) -> None:
    with pytest.raises(NotBotAdminError):
        await core.moderation.block(ALICE, BOB, platform=TELEGRAM)
    with pytest.raises(NotBotAdminError):
        await core.moderation.unblock(ALICE, BOB, platform=TELEGRAM)
    with pytest.raises(Refused) as refused:
        await core.moderation.block(ADMIN, ADMIN, platform=TELEGRAM)
    assert refused.value.key == "block_admin"
    assert not await core.db.is_blocked(TELEGRAM, BOB)
    assert replies.refusal("en", NotBotAdminError()) == "Only the bot's admins can do that."


async def test_a_block_cancels_the_persons_jobs_and_refuses_new_ones_across_a_restart(core: Core) -> None:
    queued = [(await core.jobs.submit(photo_job(n, user_id=BOB)))[0] for n in range(2)]
    await core.jobs.submit(photo_job(9, user_id=ALICE))
    blocked = await core.moderation.block(ADMIN, BOB, platform=TELEGRAM)
    assert blocked == Blocked(newly=True, cancelled=2)
    assert sorted(core.announced) == sorted(job.id for job in queued)  # each status says cancelled
    assert await core.db.active_jobs(BOB, platform=TELEGRAM) == []
    assert len(await core.db.active_jobs(ALICE, platform=TELEGRAM)) == 1  # nobody else's
    assert await core.moderation.block(ADMIN, BOB, platform=TELEGRAM) == Blocked(newly=False, cancelled=0)

    core = await restarted(core)
    jobs_dir = core.tmp / "jobs"
    before = set(jobs_dir.iterdir())
    with pytest.raises(BlockedError) as refused:
        await core.jobs.submit(photo_job(3, user_id=BOB))
    assert "blocked you" in replies.refusal("en", refused.value)
    assert "заблокировали" in replies.refusal("ru", refused.value)
    assert set(jobs_dir.iterdir()) == before  # refused before anything was stored
    await core.jobs.submit(photo_job(4, user_id=BOB, platform=DISCORD))  # the same number elsewhere

    assert await core.moderation.unblock(ADMIN, BOB, platform=TELEGRAM)
    assert not await core.moderation.unblock(ADMIN, BOB, platform=TELEGRAM)
    core = await restarted(core)
    job, _ = await core.jobs.submit(photo_job(5, user_id=BOB))
    assert job.is_active
    await core.db.dispose()


async def test_a_groups_admins_switch_the_bot_off_and_on_there_across_a_restart(core: Core) -> None:
    with pytest.raises(NotChatAdminError):
        await core.moderation.switch(GROUP, False, ALICE, platform=TELEGRAM, manages=no)
    assert await core.moderation.switch(GROUP, False, ALICE, platform=TELEGRAM, manages=yes)
    assert not await core.moderation.switch(GROUP, False, ALICE, platform=TELEGRAM, manages=yes)

    core = await restarted(core)
    with pytest.raises(ChatOffError) as refused:
        await core.jobs.submit(in_group(1, user_id=BOB))
    assert "switched off" in replies.refusal("en", refused.value)
    with pytest.raises(ChatOffError):  # the bot's admins too: the group said no
        await core.jobs.submit(in_group(2, user_id=ADMIN))
    await core.jobs.submit(photo_job(3, user_id=BOB))  # Bob's private chat is not the group
    await core.jobs.submit(in_group(4, user_id=BOB, group=GROUP - 1))  # nor is another group
    await core.jobs.submit(in_group(5, user_id=BOB, platform=DISCORD))  # nor the same id on Discord

    # The bot's admins may switch any group without the platform being asked.
    assert await core.moderation.switch(GROUP, True, ADMIN, platform=TELEGRAM, manages=never_asked)
    core = await restarted(core)
    job, _ = await core.jobs.submit(in_group(6, user_id=BOB))
    assert job.is_active
    await core.db.dispose()


async def test_a_discord_server_is_switched_off_in_every_channel_and_not_in_dms(core: Core) -> None:
    guild, channel, other_channel = 900, 901, 902
    assert await core.moderation.switch(guild, False, BOB, platform=DISCORD, manages=yes)
    for chat in (channel, other_channel):
        with pytest.raises(ChatOffError):
            await core.jobs.submit(on_server(1, user_id=ALICE, guild=guild, channel=chat))
    await core.jobs.submit(photo_job(2, user_id=ALICE, platform=DISCORD))  # a DM
    await core.jobs.submit(on_server(3, user_id=ALICE, guild=guild + 10, channel=channel + 10))


async def finished(core: Core, new: NewJob) -> JobRecord:
    """A job painted and kept as the queue keeps it: ``results/<id>.png`` and its inputs folder."""
    job, _ = await core.jobs.submit(new)
    assert await core.db.claim_job(job.id, "w") is not None
    done = await core.db.finish_job(job.id)
    assert done is not None
    (core.tmp / "results").mkdir(exist_ok=True)
    for suffix in ("png", "gif"):
        (core.tmp / "results" / f"{job.id}.{suffix}").write_bytes(b"painting")
    return done


def kept(core: Core, job: JobRecord) -> set[str]:
    names = {path.name for path in (core.tmp / "results").glob(f"{job.id}.*")}
    return names | ({"inputs"} if Path(job.content_path).parent.exists() else set())


async def test_delete_by_the_owner_removes_the_painting_and_the_photo(core: Core) -> None:
    job = await finished(core, in_group(1, user_id=ALICE))
    neighbour = await finished(core, in_group(2, user_id=ALICE))
    (core.tmp / "results" / f"{job.id}0.png").write_bytes(b"another job's")
    removed, remover = await core.moderation.remove_result(
        job.id, ALICE, platform=TELEGRAM, chat_id=GROUP, moderates=never_asked
    )
    assert (removed.id, remover) == (job.id, Remover.OWNER)
    assert kept(core, job) == set()
    record = await core.db.get_job(job.id)
    assert record is not None
    assert record.result_removed_at is not None  # inline mode and the like offer it no more
    assert kept(core, neighbour) == {f"{neighbour.id}.png", f"{neighbour.id}.gif", "inputs"}
    assert (core.tmp / "results" / f"{job.id}0.png").exists()
    assert await core.jobs.kept_inputs(job) is None  # "Another style" now says it is no longer kept


async def test_delete_by_a_moderator_of_that_chat_only(core: Core) -> None:
    job = await finished(core, in_group(1, user_id=ALICE))
    with pytest.raises(Refused) as refused:  # a member who may not delete messages
        await core.moderation.remove_result(job.id, BOB, platform=TELEGRAM, chat_id=GROUP, moderates=no)
    assert refused.value.key == "delete_not_allowed"
    with pytest.raises(Refused) as refused:  # a moderator of another chat naming this job
        await core.moderation.remove_result(
            job.id, BOB, platform=TELEGRAM, chat_id=GROUP - 1, moderates=never_asked
        )
    assert refused.value.key == "delete_not_allowed"
    with pytest.raises(Refused) as refused:  # the same number on Discord is someone else
        await core.moderation.remove_result(job.id, ALICE, platform=DISCORD, chat_id=GROUP, moderates=no)
    assert refused.value.key == "button_expired"
    assert kept(core, job) == {f"{job.id}.png", f"{job.id}.gif", "inputs"}

    _, remover = await core.moderation.remove_result(
        job.id, BOB, platform=TELEGRAM, chat_id=GROUP, moderates=yes
    )
    assert remover == Remover.MODERATOR
    assert kept(core, job) == set()


async def test_delete_of_an_unknown_or_unfinished_job_is_an_expired_button(core: Core) -> None:
    active, _ = await core.jobs.submit(photo_job(1, user_id=ALICE))
    for job_id in (active.id, 999_999, 2**40):
        with pytest.raises(Refused) as refused:
            await core.moderation.remove_result(
                job_id, ALICE, platform=TELEGRAM, chat_id=ALICE, moderates=never_asked
            )
        assert refused.value.key == "button_expired"


async def test_statistics_for_the_bots_admins_only(core: Core) -> None:
    with pytest.raises(NotBotAdminError):
        await core.stats.collect(ALICE, platform=TELEGRAM)
    done = await finished(core, photo_job(1, user_id=ALICE))
    assert await core.db.give_up_delivery(done.id, "blocked")
    await core.jobs.submit(photo_job(2, user_id=ALICE))
    cancelled, _ = await core.jobs.submit(photo_job(3, user_id=ALICE))
    await core.jobs.cancel(cancelled.id)
    await core.db.block_user(TELEGRAM, BOB, by=ADMIN)

    stats = await core.stats.collect(ADMIN, platform=DISCORD)  # an admin on Discord sees them all
    assert stats.today.jobs == stats.week.jobs == {"done": 1, "queued": 1, "cancelled": 1}
    assert (stats.today.given_up, stats.queued, stats.running) == (1, 1, 0)
    assert (stats.workers, stats.busy, stats.healthy, stats.blocked) == (2, 1, True, 1)
    assert stats.today.median_wait is not None
    tomorrow = await core.stats.collect(ADMIN, platform=TELEGRAM, now=datetime.now(UTC) + timedelta(days=1))
    assert tomorrow.today.jobs == {}
    assert tomorrow.today.median_wait is None
    assert tomorrow.week.jobs == stats.week.jobs

    said = replies.statistics("en", stats)
    assert "Today (UTC): 1 done, 0 failed, 1 cancelled, 1 not finished" in said
    assert "Results given up: today 1, 7 days 1" in said
    assert "Workers: 1 of 2 busy\n" in said
    assert "Median wait: today —" in replies.statistics("en", tomorrow)
    assert "готово 1" in replies.statistics("ru", stats)
    unhealthy = dataclasses.replace(stats, healthy=False)
    assert "none can take a job" in replies.statistics("en", unhealthy)

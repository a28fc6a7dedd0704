"""The rules both front ends share (issue 18), through the core's services: a person is (platform, user id)
for ownership and the admins' exemption; "Surprise me" offers only paintings on disk; a preset is saved from
the latest job and a group's default is set by one rule; every refusal has one reply."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot import replies
from bot.db import Database, JobRecord, JobState
from bot.frontend import DISCORD, TELEGRAM
from bot.queue.base import QueueStatus
from bot.queue.ledger import ticket_for
from bot.services import styles
from bot.services.access import Admins
from bot.services.figures import FigureService
from bot.services.jobs import JobService, LimitReachedError, Limits, NewJob
from bot.services.paint import PaintRequest, PaintService
from bot.services.presets import PresetError, PresetService
from bot.services.refusals import NoPaintingReadyError, NotManagerError, Refused
from bot.services.style_images import StyleImageService
from bot.services.users import UserService
from bot.texts import text
from engine.catalog import load_catalog
from engine.errors import UnknownStyleError
from engine.protocol import StyleSettings
from tests.conftest import copy_sqlite
from tests.fakes import images

CATALOG = load_catalog()


class Queue:
    """Just enough of a queue: jobs wait in the database until cancelled."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def submit(self, job_id: int) -> None:
        return None

    async def cancel(self, job_id: int) -> JobRecord | None:
        return await self.db.cancel_job(job_id)

    def status(self) -> QueueStatus:
        return QueueStatus("test", workers=1, busy=0, healthy=True)


class Paintings:
    """The paintings on disk, as ``bot.services.paintings.Paintings.ready`` tells them."""

    def __init__(self, ready: tuple[str, ...]) -> None:
        self.on_disk = ready

    def ready(self) -> tuple[str, ...]:
        return self.on_disk


@pytest.fixture
async def db(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Database]:
    database = Database(copy_sqlite(sqlite_template, tmp_path / "bot.db"))  # migrated already
    yield database
    await database.dispose()


def service(db: Database, tmp_path: Path, *, admins: Admins | None = None) -> JobService:
    return JobService(
        db,
        Queue(db),  # type: ignore[arg-type]
        jobs_dir=tmp_path / "jobs",
        limits=Limits(1, 10, 100),
        max_image_pixels=4_000_000,
        admins=admins,
    )


async def submit(jobs: JobService, user_id: int, platform: str, style: str = "udnie") -> JobRecord:
    job, _ = await jobs.submit(
        NewJob(
            user_id=user_id,
            chat_id=user_id,
            chat_type="private",
            language="en",
            source_message_id=1,
            content=images.jpeg(64, 48),
            style=styles.paintings([style], CATALOG),
            style_images=(),
            settings=StyleSettings(),
            platform=platform,
        )
    )
    return job


# -- ownership -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("owner", "stranger"), [(TELEGRAM, DISCORD), (DISCORD, TELEGRAM)])
async def test_the_same_number_on_the_other_platform_owns_nothing(
    db: Database, tmp_path: Path, owner: str, stranger: str
) -> None:
    """A Discord user whose id is the Telegram owner's number cannot cancel the job nor have its file (and
    the other way round): to them it is no job at all."""
    jobs = service(db, tmp_path)
    job = await submit(jobs, 7, owner)
    with pytest.raises(Refused) as refused:
        await jobs.owned(job.id, 7, platform=stranger)
    assert refused.value.key == "button_expired"
    with pytest.raises(Refused) as refused:
        await jobs.cancel_owned(job.id, 7, platform=stranger)
    assert refused.value.key == "button_expired"
    with pytest.raises(Refused) as refused:
        await jobs.cancel_owned(job.id, 8, platform=owner)
    assert refused.value.key == "not_your_job"
    still = await jobs.job(job.id)
    assert still is not None
    assert still.state is JobState.QUEUED
    assert (await jobs.owned(job.id, 7, platform=owner)).id == job.id
    assert (await jobs.cancel_owned(job.id, 7, platform=owner)).state is JobState.CANCELLED
    with pytest.raises(Refused) as refused:
        await jobs.cancel_owned(job.id, 7, platform=owner)
    assert refused.value.key == "already_finished"


async def test_a_discord_admin_is_exempt_through_the_core(db: Database, tmp_path: Path) -> None:
    """``ADMIN_IDS=discord:42`` lifts a Discord admin's limits however the job is asked for (its front end
    passes only its platform); a Telegram admin's number on Discord lifts nothing."""
    jobs = service(db, tmp_path, admins=Admins({TELEGRAM: frozenset({99}), DISCORD: frozenset({42})}))
    for _ in range(3):
        await submit(jobs, 42, DISCORD)
    await submit(jobs, 99, DISCORD)
    with pytest.raises(LimitReachedError):
        await submit(jobs, 99, DISCORD)


# -- surprise --------------------------------------------------------------------------------------------


def figures(db: Database, jobs: JobService, ready: tuple[str, ...]) -> FigureService:
    return FigureService(
        db,
        jobs,
        CATALOG,
        retention=timedelta(days=1),
        paintings=Paintings(ready),  # type: ignore[arg-type]
    )


async def test_surprise_picks_only_paintings_on_disk(db: Database, tmp_path: Path) -> None:
    """Offline, or while the paintings are still being fetched, only what is on disk can be painted."""
    jobs = service(db, tmp_path)
    on_disk = ("great_wave", "udnie")
    service_ = figures(db, jobs, on_disk)
    rng = random.Random(1)
    picks = {(await service_.surprise(7, platform=TELEGRAM, rng=rng)).painting.id for _ in range(40)}
    assert picks == set(on_disk)
    await submit(jobs, 7, TELEGRAM, "great_wave")
    pick = await service_.surprise(7, platform=TELEGRAM, rng=rng)
    assert (pick.painting.id, pick.untried_left, pick.all_tried) == ("udnie", 0, False)


async def test_surprise_with_nothing_on_disk_says_so(db: Database, tmp_path: Path) -> None:
    with pytest.raises(NoPaintingReadyError) as refused:
        await figures(db, service(db, tmp_path), ()).surprise(7, platform=DISCORD)
    assert replies.refusal("en", refused.value) == text("en", "surprise_none_ready")


# -- presets and group defaults --------------------------------------------------------------------------


async def test_a_preset_from_the_latest_job_follows_one_rule(db: Database, tmp_path: Path) -> None:
    """The latest job's style with the user's current settings, on either platform; nothing to save before
    a first job."""
    presets = PresetService(db, CATALOG, max_presets=5)
    users = UserService(db)
    for platform in (TELEGRAM, DISCORD):
        await users.remember(7, platform=platform, username=None, display_name="Ada", language="en")
    with pytest.raises(PresetError) as refused:
        await presets.save_style(7, "mine", None, platform=DISCORD)
    assert refused.value.key == "preset_nothing_to_save"
    jobs = service(db, tmp_path)
    await submit(jobs, 7, DISCORD, "the_scream")
    await users.change(7, "quality", "draft", platform=DISCORD)
    record = await presets.save_style(7, "mine", None, platform=DISCORD)
    assert [ref["preset"] for ref in record.styles] == ["the_scream"]
    assert record.settings == {"quality": "draft"}
    with pytest.raises(PresetError):  # the Telegram user 7 has no job
        await presets.save_style(7, "mine", None, platform=TELEGRAM)


async def test_a_group_default_is_set_by_its_managers_and_the_platforms_admins(db: Database) -> None:
    presets = PresetService(db, CATALOG, max_presets=5, admins=Admins({TELEGRAM: frozenset({1})}))
    choice = styles.paintings(["udnie"], CATALOG)
    for user in (1, 2):
        for platform in (TELEGRAM, DISCORD):
            await db.upsert_user(user, None, "Ada", "en", platform=platform)
            await presets.save(user, "club", choice, {}, platform=platform)

    async def manager() -> bool:
        return True

    async def member() -> bool:
        return False

    with pytest.raises(NotManagerError):  # Telegram's admin 1 is nobody on Discord
        await presets.set_group_default(500, "club", 1, platform=DISCORD, manages=member)
    assert await presets.set_group_default(500, "club", 1, platform=TELEGRAM, manages=member) is not None
    assert await presets.set_group_default(600, "club", 2, platform=DISCORD, manages=manager) is not None
    chosen, _ = await presets.chat_default(600, "", platform=DISCORD)
    assert chosen is not None
    assert chosen.refs[0]["preset"] == "udnie"
    assert await presets.set_group_default(600, "off", 2, platform=DISCORD, manages=manager) is None
    assert (await presets.chat_default(600, "", platform=DISCORD))[0] is None
    personal = styles.stored_image(3, "mine")
    await presets.save(2, "me", personal, {}, platform=DISCORD)
    with pytest.raises(Refused) as refused:  # a personal style is its owner's alone
        await presets.set_group_default(600, "me", 2, platform=DISCORD, manages=manager)
    assert refused.value.key == "discord_guild_no_personal_styles"


# -- preferences and the one reply -----------------------------------------------------------------------


async def test_preferences_change_by_key_and_refuse_a_forged_value(db: Database) -> None:
    users = UserService(db)
    await users.remember(7, platform=DISCORD, username=None, display_name="Ada", language="en")
    prefs, changed = await users.change(7, "live_preview", "on", platform=DISCORD)
    assert changed
    assert prefs.live_preview
    assert await users.change(7, "live_preview", "on", platform=DISCORD) == (prefs, False)
    assert not (await users.preferences(7, platform=TELEGRAM)).live_preview  # another person
    with pytest.raises(Refused):
        await users.change(7, "quality", "ultra", platform=DISCORD)


def test_one_reply_for_every_refusal() -> None:
    """Limits with their wait, the engine's errors with suggestions, presets with their (escaped) name."""
    assert "1 picture" in replies.refusal("en", LimitReachedError("active", count=1))
    assert "<code>udnie</code>" in replies.refusal("en", UnknownStyleError("udnei", ["udnie"]))
    assert "&lt;b&gt;" in replies.refusal("en", PresetError("not_found", name="<b>"))
    assert replies.refusal("en", Refused("not_your_job")) == text("en", "not_your_job")


async def test_a_cancel_is_announced_by_the_core(db: Database, tmp_path: Path) -> None:
    """The Cancel button and /cancel, whole, for both front ends: each cancelled job's status is told.
    The button's own answer does not wait for that (it edits statuses, maybe past Discord's 3 seconds)."""
    jobs = service(db, tmp_path, admins=Admins({TELEGRAM: frozenset({7})}))
    told: list[int] = []
    slow = asyncio.Event()

    async def announce(job: JobRecord) -> None:
        if not told:
            await slow.wait()  # the first announcement takes its time
        told.append(job.id)

    jobs.announce_cancelled = announce
    first, second, third = [await submit(jobs, 7, TELEGRAM) for _ in range(3)]
    assert (await asyncio.wait_for(jobs.withdraw(first.id, 7, platform=TELEGRAM), 1)).id == first.id
    assert told == []  # answered while the announcement is still under way
    slow.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert told == [first.id]
    assert await jobs.withdraw_latest(7, platform=TELEGRAM, everything=True) == 2
    assert await jobs.withdraw_latest(7, platform=TELEGRAM) == 0
    assert told == [first.id, second.id, third.id]
    await jobs.close()


async def test_a_group_default_with_an_own_image_brings_its_image(db: Database, tmp_path: Path) -> None:
    """No style named in a group whose default is a Telegram image (kept as a file id): the core resolves
    the default and has the platform fetch its image; without one, the request is refused at once
    instead of queuing a job that could only fail after its wait (input_lost)."""
    jobs = service(db, tmp_path)
    presets = PresetService(db, CATALOG, 10)
    paint = PaintService(
        jobs, presets, StyleImageService(db, max_image_pixels=4_000_000), default_quality="draft"
    )
    await db.upsert_user(7, "u", "U", "en", platform=TELEGRAM)
    record = await presets.save(7, "mine", styles.own_image("FILEID", "own"), {}, platform=TELEGRAM)
    await presets.set_chat_default(-100, record, 7, platform=TELEGRAM)
    fetched: list[str] = []

    async def fetch_file(file_id: str) -> bytes:
        fetched.append(file_id)
        return images.jpeg(60, 40)

    def request(**extra: Any) -> PaintRequest:
        return PaintRequest(
            platform=TELEGRAM,
            user_id=7,
            chat_id=-100,
            chat_type="supergroup",
            group_id=-100,
            language="en",
            source_message_id=1,
            content=images.jpeg(64, 48),
            style=None,
            figure="strength",
            **extra,
        )

    with pytest.raises(Refused):
        await paint.start(request())
    job, _ = await paint.start(request(fetch_file=fetch_file))
    assert fetched == ["FILEID"]
    assert len(job.style_paths) == 1
    ticket_for(job, by_reference=True)  # the workers can be handed it (it raised InputLostError)

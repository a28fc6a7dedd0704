"""Sharing in the core, with no chat platform: a person's recent results for Telegram's inline mode (only
confirmed ones, newest first, filtered, in pages, only what the bot still keeps), the link payloads (catalog
paintings only), and a style picked by a link waiting for the next photo."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.db import Database, JobRecord
from bot.frontend import DISCORD, TELEGRAM
from bot.services import sharing, styles
from bot.services.jobs import NewJob
from bot.services.sharing import CHOICE_TTL, SharingService, parse_payload, style_payload
from engine.catalog import load_catalog
from tests.bot.services.test_jobs import photo_job
from tests.bot.services.test_moderation import ADMIN, ALICE, BOB, Core, build, yes
from tests.conftest import copy_sqlite

CATALOG = load_catalog()
T0 = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


@dataclasses.dataclass
class World:
    core: Core
    sharing: SharingService
    clock: Clock


@pytest.fixture
async def world(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[World]:
    db = Database(copy_sqlite(sqlite_template, tmp_path / "bot.db"))  # migrated already
    clock = Clock()
    service = SharingService(
        db, CATALOG, results_dir=tmp_path / "results", retention=timedelta(days=7), clock=clock
    )
    yield World(build(db, tmp_path), service, clock)
    await db.dispose()


def painted(n: int, style_ids: list[str], *, user_id: int = ALICE, platform: str = TELEGRAM) -> NewJob:
    return dataclasses.replace(
        photo_job(n, user_id=user_id, platform=platform), style=styles.paintings(style_ids, CATALOG)
    )


async def delivered(world: World, new: NewJob, file_id: str | None = "AgAC-file") -> JobRecord:
    """A job painted, kept on disk as the notifier keeps it, and (with ``file_id``) confirmed sent."""
    core = world.core
    job, _ = await core.jobs.submit(new)
    assert await core.db.claim_job(job.id, "w") is not None
    done = await core.db.finish_job(job.id)
    assert done is not None
    (core.tmp / "results").mkdir(exist_ok=True)
    (core.tmp / "results" / f"{job.id}.png").write_bytes(b"painting")
    if file_id is not None:
        assert await core.db.record_result_file(job.id, f"{file_id}{job.id}")
    return (await core.db.get_job(job.id)) or done


async def test_recent_results_are_the_persons_confirmed_ones_newest_first(world: World) -> None:
    first = await delivered(world, painted(1, ["starry_night"]))
    await delivered(world, painted(2, ["udnie"]), file_id=None)  # painted, never confirmed sent
    second = await delivered(world, painted(3, ["great_wave"]))
    await delivered(world, painted(4, ["udnie"], user_id=BOB))  # someone else's
    await delivered(world, painted(5, ["udnie"], platform=DISCORD))  # the same person number elsewhere
    await world.core.jobs.submit(painted(6, ["udnie"]))  # still queued

    page = await world.sharing.recent(ALICE, "", "", platform=TELEGRAM)

    assert [job.id for job in page.jobs] == [second.id, first.id]
    assert page.next_offset == ""
    assert page.jobs[0].result_file_id == f"AgAC-file{second.id}"


async def test_the_words_typed_filter_by_the_styles_label_whatever_the_case(world: World) -> None:
    night = await delivered(world, painted(1, ["starry_night"]))
    blend = await delivered(world, painted(2, ["great_wave", "starry_night"]))
    await delivered(world, painted(3, ["udnie"]))

    async def ids(query: str) -> list[int]:
        return [job.id for job in (await world.sharing.recent(ALICE, query, "", platform=TELEGRAM)).jobs]

    assert await ids("starry") == [blend.id, night.id]
    assert await ids("  NIGHT   starry ") == [blend.id, night.id]
    assert await ids("wave night") == [blend.id]
    assert await ids("mona") == []


async def test_pages_follow_telegrams_next_offset_to_the_end(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sharing, "PAGE_SIZE", 2)
    jobs = [await delivered(world, painted(n, ["udnie"])) for n in range(5)]
    newest_first = [job.id for job in reversed(jobs)]

    seen, offset, pages = [], "", 0
    while True:
        page = await world.sharing.recent(ALICE, "", offset, platform=TELEGRAM)
        seen += [job.id for job in page.jobs]
        pages += 1
        if not page.next_offset:
            break
        offset = page.next_offset

    assert seen == newest_first
    assert pages == 3
    for forged in ("-1", "abc", "99999999", "1.5", "²"):  # only offsets we gave mean anything
        page = await world.sharing.recent(ALICE, "", forged, platform=TELEGRAM)
        assert page == sharing.Page((), "")
    assert (await world.sharing.recent(ALICE, "", "40", platform=TELEGRAM)).jobs == ()  # past the end


async def test_a_deleted_swept_or_expired_result_is_not_offered(world: World) -> None:
    deleted = await delivered(world, painted(1, ["udnie"]))
    swept = await delivered(world, painted(2, ["udnie"]))
    kept = await delivered(world, painted(3, ["udnie"]))
    await world.core.moderation.remove_result(
        deleted.id, ALICE, platform=TELEGRAM, chat_id=deleted.chat_id, moderates=yes
    )
    (world.core.tmp / "results" / f"{swept.id}.png").unlink()  # gone from disk (retention's sweep)

    page = await world.sharing.recent(ALICE, "", "", platform=TELEGRAM)
    assert [job.id for job in page.jobs] == [kept.id]

    assert kept.finished_at is not None
    world.clock.now = kept.finished_at + timedelta(days=7, seconds=1)  # past RESULT_RETENTION_DAYS
    assert (await world.sharing.recent(ALICE, "", "", platform=TELEGRAM)).jobs == ()


async def test_a_blocked_person_is_offered_nothing(world: World) -> None:
    await delivered(world, painted(1, ["udnie"], user_id=BOB))
    await world.core.moderation.block(ADMIN, BOB, platform=TELEGRAM)

    assert await world.sharing.recent(BOB, "", "", platform=TELEGRAM) == sharing.Page((), "")


def job_with(refs: list[dict]) -> JobRecord:
    fields: dict[str, object] = {f.name: None for f in dataclasses.fields(JobRecord)}
    fields.update(styles=refs, style_label="x", settings={}, id=1)
    return JobRecord(**fields)  # type: ignore[arg-type]


def test_a_link_carries_catalog_paintings_only() -> None:
    one = styles.paintings(["starry_night"], CATALOG)
    blend = styles.paintings(["udnie", "udnie", "starry_night"], CATALOG)  # udnie weighs 2

    assert style_payload(job_with(list(one.refs))) == "starry_night"
    assert style_payload(job_with(list(blend.refs))) == "udnie-udnie-starry_night"
    own = list(styles.own_image("AgAC-someones-photo", "my picture").refs)
    assert style_payload(job_with(own)) is None  # a person's own picture never travels in a link
    assert style_payload(job_with([*one.refs, *own])) is None
    assert style_payload(job_with([{"image": 0, "stored": 3, "weight": 1.0}])) is None
    assert style_payload(job_with([{"preset": "udnie", "weight": 0.5}])) is None
    assert style_payload(job_with([{"preset": "udnie", "weight": 11.0}])) is None  # 65 chars
    assert style_payload(job_with([])) is None


def test_a_payload_names_the_same_style_back() -> None:
    for ids in (["starry_night"], ["udnie", "udnie", "starry_night"], ["great_wave", "the_scream"]):
        choice = styles.paintings(ids, CATALOG)
        payload = style_payload(job_with(list(choice.refs)))
        assert payload is not None
        parsed = parse_payload(payload, CATALOG)
        assert parsed is not None
        assert (parsed.refs, parsed.label) == (choice.refs, choice.label)
    too_many = "-".join(["udnie", "starry_night", "great_wave", "the_scream", "the_kiss"])
    for payload in ("", "nope", "Starry_Night", "starry night", "udnie-", too_many, "x" * 65, "inline"):
        assert parse_payload(payload, CATALOG) is None, payload


def test_a_style_picked_by_a_link_waits_once_for_the_next_photo(tmp_path: Path) -> None:
    clock = Clock()
    service = SharingService(
        None,  # type: ignore[arg-type]  # choices need no database
        CATALOG,
        results_dir=tmp_path,
        retention=timedelta(days=7),
        clock=clock,
    )
    night = styles.paintings(["starry_night"], CATALOG)
    service.choose(ALICE, night, platform=TELEGRAM)

    assert service.take_chosen(ALICE, platform=DISCORD) is None  # another platform's person
    assert service.take_chosen(BOB, platform=TELEGRAM) is None
    assert service.take_chosen(ALICE, platform=TELEGRAM) == night
    assert service.take_chosen(ALICE, platform=TELEGRAM) is None  # taken by that photo

    service.choose(ALICE, night, platform=TELEGRAM)
    clock.now += CHOICE_TTL
    assert service.take_chosen(ALICE, platform=TELEGRAM) is None  # waited too long

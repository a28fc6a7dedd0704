"""``SketchService`` with a stand-in for the sketch process: when a sketch is made, what becomes of an
instant job when it cannot be, and "Keep the sketch". The real process is tested in
``tests/engine/test_sketcher.py`` and end to end in ``tests/bot/telegram/e2e/test_sketch.py``."""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db import Database, JobRecord
from bot.services.sketches import Kept, SketchService, sketch_path
from engine.errors import CorruptImageError, SketchUnavailableError
from engine.style_store import StyleStore
from engine.workers.sketcher import SketchBusyError, SketchRequest, SketchResult
from tests.conftest import copy_sqlite
from tests.fakes import images

SKETCH = SketchResult(images.jpeg(40, 30), 40, 30, 0.1)


class FakePool:
    def __init__(self, outcome: SketchResult | Exception = SKETCH) -> None:
        self.outcome = outcome
        self.requests: list[SketchRequest] = []
        self.disposable: list[bool] = []  # per request: a preview, which a long line may drop

    def start(self) -> None:
        return None

    async def make(
        self, request: SketchRequest, *, disposable: bool = False, job_id: int | None = None
    ) -> SketchResult:
        self.requests.append(request)
        self.disposable.append(disposable)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome

    async def close(self) -> None:
        return None


class FakeQueue:
    """Records what the service asks of the queue; the claim succeeds once."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.claimed: set[int] = set()

    async def claim(self, job_id: int) -> object | None:
        self.calls.append(("claim", job_id))
        if job_id in self.claimed:
            return None
        self.claimed.add(job_id)
        return object()

    async def settle(self, job_id: int, image: bytes, **kwargs) -> bool:
        self.calls.append(("settle", job_id, kwargs.get("claimed", False)))
        return True

    async def unclaim(self, job_id: int, reason: str) -> None:
        self.calls.append(("unclaim", job_id))

    async def submit(self, job_id: int) -> None:
        self.calls.append(("submit", job_id))

    async def fail(self, job_id: int, code: str, message: str) -> bool:
        self.calls.append(("fail", job_id, code))
        return True


class FakeNotifier:
    def __init__(self) -> None:
        self.sketches: list[tuple[int, bytes]] = []

    async def sketch_ready(self, job_id: int, sketch: bytes) -> None:
        self.sketches.append((job_id, sketch))


@pytest.fixture
async def db(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Database]:
    database = Database(copy_sqlite(sqlite_template, tmp_path / "core.db"))  # migrated already
    yield database
    await database.dispose()


def service(db: Database, tmp_path: Path, pool: FakePool, *, preview: bool = True) -> SketchService:
    styles = tmp_path / "styles"
    styles.mkdir(exist_ok=True)
    (styles / "udnie.jpg").write_bytes(images.pattern(80, 80))
    return SketchService(
        pool,  # type: ignore[arg-type]
        db,
        StyleStore(styles),
        FakeNotifier(),  # type: ignore[arg-type]
        FakeQueue(),  # type: ignore[arg-type]
        preview=preview,
        side=512,
        instant_side=1024,
        max_pixels=10**7,
    )


async def new_job(
    db: Database, tmp_path: Path, *, quality: str = "normal", preset: str = "udnie"
) -> JobRecord:
    folder = tmp_path / "jobs" / f"{quality}-{preset}"
    folder.mkdir(parents=True)
    (folder / "content").write_bytes(images.pattern())
    await db.upsert_user(42, None, "Sam", "en", platform="telegram")
    return await db.create_job(
        platform="telegram", user_id=42, chat_id=7, chat_type="private", language_code="en",
        source_message_id=1, styles=[{"preset": preset, "weight": 1.0}], style_label="Udnie",
        settings={"quality": quality, "strength": 0.7}, content_path=str(folder / "content"),
    )  # fmt: skip


async def settled(sketches: SketchService) -> None:
    await asyncio.gather(*sketches._tasks)


async def test_the_preview_is_kept_beside_the_photo_and_shown(db: Database, tmp_path: Path) -> None:
    pool = FakePool()
    sketches = service(db, tmp_path, pool)
    job = await new_job(db, tmp_path)
    sketches.request(job)
    await settled(sketches)
    assert sketches.notifier.sketches == [(job.id, SKETCH.jpeg)]  # type: ignore[attr-defined]
    assert sketch_path(job).read_bytes() == SKETCH.jpeg
    request = pool.requests[0]
    assert (request.side, request.strength, Path(request.styles[0][0]).name) == (512, 0.7, "udnie.jpg")
    assert sketches.queue.calls == []  # type: ignore[attr-defined]  # a preview changes no state
    assert pool.disposable == [True]


async def test_a_preview_dropped_for_a_long_line_is_no_failure(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sketches = service(db, tmp_path, FakePool(SketchBusyError("8 sketches wait already")))
    sketches.request(await new_job(db, tmp_path))
    await settled(sketches)
    assert sketches.notifier.sketches == []  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # the pool said why, at info


async def test_a_preview_of_a_job_cancelled_meanwhile_is_dropped_quietly(
    db: Database, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    job = await new_job(db, tmp_path)

    class Cancelled(FakePool):
        async def make(self, request: SketchRequest, **kwargs: object) -> SketchResult:
            shutil.rmtree(Path(job.content_path).parent)  # the cancel's ``discard_inputs``
            return SKETCH

    sketches = service(db, tmp_path, Cancelled())
    sketches.request(job)
    await settled(sketches)
    assert sketches.notifier.sketches == []  # type: ignore[attr-defined]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_no_preview_when_turned_off_or_the_painting_is_not_here(db: Database, tmp_path: Path) -> None:
    pool = FakePool()
    everyone_off = service(db, tmp_path, pool, preview=False)  # SKETCH_PREVIEW=off
    everyone_off.request(await new_job(db, tmp_path))
    await settled(everyone_off)
    sketches = service(db, tmp_path, pool)
    await db.update_user_settings(42, {"sketch": False}, platform="telegram")  # the user's /settings
    sketches.request(await new_job(db, tmp_path, preset="great_wave"))
    await settled(sketches)
    await db.update_user_settings(42, {}, platform="telegram")
    sketches.request(await new_job(db, tmp_path, preset="shipwreck"))  # not on this disk: no preview
    await settled(sketches)
    assert pool.requests == []
    assert sketches.notifier.sketches == []  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("outcome", "expected"),
    [
        (SKETCH, [("claim", 1), ("settle", 1, True)]),
        (CorruptImageError("broken"), [("claim", 1), ("fail", 1, "corrupt_image")]),
        (SketchUnavailableError("no onnxruntime"), [("claim", 1), ("unclaim", 1)]),
        (RuntimeError("a bug"), [("claim", 1), ("unclaim", 1)]),
    ],
)
async def test_an_instant_job(db: Database, tmp_path: Path, outcome, expected) -> None:
    pool = FakePool(outcome)
    sketches = service(db, tmp_path, pool, preview=False)  # the instant tier works without previews
    job = await new_job(db, tmp_path, quality="instant")
    sketches.request(job)
    await settled(sketches)
    assert sketches.queue.calls == expected  # type: ignore[attr-defined]
    assert pool.requests[0].side == 1024
    assert pool.disposable == [False]  # a result: never dropped


async def test_keep_remakes_the_sketch_at_the_result_size_or_keeps_the_preview(
    db: Database, tmp_path: Path
) -> None:
    pool = FakePool()
    sketches = service(db, tmp_path, pool)
    job = await new_job(db, tmp_path)
    assert await sketches.keep(job) is Kept.NO_SKETCH  # nothing shown, nothing to keep
    sketch_path(job).write_bytes(images.jpeg(30, 20))
    assert await sketches.keep(job) is Kept.KEPT
    assert pool.requests[-1].side == 1024
    pool.outcome = SketchUnavailableError("gone")
    other = await new_job(db, tmp_path, preset="great_wave")
    sketch_path(other).write_bytes(images.jpeg(30, 20))
    assert await sketches.keep(other) is Kept.KEPT  # the preview as it was shown


def test_a_figure_at_the_instant_tier_is_painted_at_draft() -> None:
    from bot.services.figures import as_figure
    from engine.protocol import StyleSettings

    strip, weight = as_figure(StyleSettings(quality="instant"), "strength")
    assert (strip.quality, strip.figure) == ("draft", "strength")
    assert weight > 0
    single, _ = as_figure(StyleSettings(quality="instant"), None)
    assert single.quality == "instant"  # one picture: the sketch is the result


async def test_only_the_owner_may_keep_a_waiting_job_on_its_own_platform(
    db: Database, tmp_path: Path
) -> None:
    """``may_keep``: the one rule behind both platforms' "Keep the sketch" buttons."""
    sketches = service(db, tmp_path, FakePool())
    job = await new_job(db, tmp_path)
    assert await sketches.may_keep(job.id, 42, platform="telegram") == job
    assert await sketches.may_keep(job.id, 43, platform="telegram") is Kept.NOT_YOURS
    assert await sketches.may_keep(job.id, 42, platform="discord") is Kept.ENDED  # not a Discord job
    assert await sketches.may_keep(job.id + 1, 42, platform="telegram") is Kept.ENDED  # no such job
    await db.claim_job(job.id, "w1")
    assert await sketches.may_keep(job.id, 42, platform="telegram") is Kept.RUNNING
    await db.cancel_job(job.id)
    assert await sketches.may_keep(job.id, 42, platform="telegram") is Kept.ENDED

"""Clips in the core (issue 21): a GIF, an MP4 and a video note each become one queued job of kind
"clip" with the worker's order and a weight from the header; a clip over the limits is refused from its
header before a frame is decoded, with the limit in the answer (shorter for the painted quality on a
CPU); what is not a clip is refused."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot import replies
from bot.db import Database
from bot.frontend import TELEGRAM
from bot.queue.base import QueueStatus, accelerated
from bot.services import clips as clip_service_module
from bot.services import styles
from bot.services.clips import ClipFormat, ClipService, clip_words, jobs_worth
from bot.services.figures import FigureService, RepaintRefusedError
from bot.services.jobs import JobService, Limits, RepeatedRequest
from bot.services.paint import PaintRequest, PaintService
from bot.services.presets import PresetService
from bot.services.refusals import BlockedError, ChatOffError, Refused
from bot.services.style_images import StyleImageService
from engine.catalog import load_catalog
from engine.clips import ClipLimits, media
from engine.workers.clips import ClipOrder
from tests.bot.services.test_jobs import RecordingQueue, photo_job
from tests.conftest import copy_sqlite
from tests.fakes import clips

TELEGRAM_MP4 = ClipFormat("mp4", 50 * 2**20)


@pytest.fixture
async def db(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[Database]:
    database = Database(copy_sqlite(sqlite_template, tmp_path / "bot.db"))  # migrated already
    yield database
    await database.dispose()


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


def service(db: Database, queue: RecordingQueue, tmp_path: Path, *, accelerated: bool = False) -> ClipService:
    catalog = load_catalog()
    jobs = JobService(
        db,
        queue,  # type: ignore[arg-type]  # a stand-in queue
        jobs_dir=tmp_path / "jobs",
        limits=Limits(3, 30, 100),
        max_image_pixels=4_000_000,
    )
    paint = PaintService(
        jobs,
        PresetService(db, catalog, 30),
        StyleImageService(db, max_image_pixels=4_000_000),
        default_quality="normal",
    )
    # What the workers reported (their hello or heartbeat), as the queue's status says it.
    status = QueueStatus("test", workers=1, busy=0, healthy=True, accelerated=accelerated)
    queue.status = lambda: status  # type: ignore[method-assign]
    return ClipService(paint, limits=ClipLimits(10.0, 12.0))


def request(content: bytes) -> PaintRequest:
    return PaintRequest(
        platform=TELEGRAM,
        user_id=7,
        chat_id=7,
        chat_type="private",
        group_id=None,
        language="en",
        source_message_id=1,
        content=content,
        style=styles.paintings(["udnie"], load_catalog()),
    )


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bot reads headers only: any frame decoded here fails the test."""

    def decoded(*args: object, **kwargs: object) -> None:
        raise AssertionError("the bot decoded a frame")

    monkeypatch.setattr(media, "_timed_frames", decoded)


@pytest.mark.parametrize(
    "content", [clips.gif(6), clips.mp4(6), clips.video_note(6)], ids=["gif", "mp4", "video-note"]
)
@pytest.mark.usefixtures("no_decoding")
async def test_a_clip_is_one_queued_job_with_its_order(
    db: Database, queue: RecordingQueue, tmp_path: Path, content: bytes
) -> None:
    job, placement = await service(db, queue, tmp_path).start(request(content), TELEGRAM_MP4)
    assert job.kind == "clip"
    assert ClipOrder.from_dict(job.clip) == ClipOrder("instant", "mp4", 50 * 2**20, 10.0, 12.0)
    assert job.settings["quality"] == "instant"
    assert queue.submitted == [job.id]  # a worker paints it, though instant: no sketch settles a clip
    assert placement is not None
    assert job.weight == 1.0  # a short clip counts as one job
    assert await asyncio.to_thread(Path(job.content_path).read_bytes) == content  # kept as a photo is


async def test_a_clip_weighs_its_frames_times_pixels(
    db: Database, queue: RecordingQueue, tmp_path: Path
) -> None:
    """On a GPU, five seconds painted at 512 px: 60 frames of 512x384 weigh about one and a half jobs."""
    content = clips.mp4(60, (640, 480), fps=12)
    job, _ = await service(db, queue, tmp_path, accelerated=True).start(
        request(content), TELEGRAM_MP4, "painted"
    )
    assert job.weight == pytest.approx(jobs_worth(60 * 512 * 384, "painted"))
    assert job.weight == pytest.approx(60 * 512 * 384 / (14 * 256 * 192))  # 60 frames: 20 jobs' work
    assert job.settings["quality"] == "draft"


@pytest.mark.usefixtures("no_decoding")
async def test_a_clip_over_the_limit_is_refused_from_its_header(
    db: Database, queue: RecordingQueue, tmp_path: Path
) -> None:
    with pytest.raises(Refused) as refused:
        await service(db, queue, tmp_path).start(request(clips.mp4(132, fps=12)), TELEGRAM_MP4)
    assert refused.value.key == "clip_too_long"
    assert replies.refusal("en", refused.value) == (
        "That clip is 11 s long; I paint clips of at most 10 s. Please send a shorter one."
    )
    assert queue.submitted == []
    assert await db.count_active(7, platform=TELEGRAM) == 0


@pytest.mark.usefixtures("no_decoding")
async def test_painted_on_a_cpu_takes_a_shorter_clip_and_says_so(
    db: Database, queue: RecordingQueue, tmp_path: Path
) -> None:
    clips_here = service(db, queue, tmp_path)
    five_seconds = request(clips.mp4(60, fps=12))
    with pytest.raises(Refused) as refused:
        await clips_here.start(five_seconds, TELEGRAM_MP4, "painted")
    answer = replies.refusal("en", refused.value)
    assert "at most 3 s here" in answer
    assert "up to 10 s" in answer
    job, _ = await clips_here.start(five_seconds, TELEGRAM_MP4, "instant")
    assert job.kind == "clip"


@pytest.mark.parametrize(
    ("content", "key"),
    [
        (b"GIF89a but nothing after it", "clip_unsupported"),
        (clips.mp4(4, (200, 16)), "clip_too_small"),
    ],
    ids=["not-a-clip", "too-narrow"],
)
async def test_what_cannot_be_a_clip_is_refused(
    db: Database, queue: RecordingQueue, tmp_path: Path, content: bytes, key: str
) -> None:
    with pytest.raises(Refused) as refused:
        await service(db, queue, tmp_path).start(request(content), TELEGRAM_MP4)
    assert refused.value.key == key
    assert queue.submitted == []


def test_quality_and_format_words_are_taken_out_of_a_caption() -> None:
    assert clip_words("starry_night Painted") == ("painted", None, "starry_night")
    assert clip_words("instant udnie GIF") == ("instant", "gif", "udnie")
    assert clip_words("starry_night + udnie") == (None, None, "starry_night + udnie")


def test_a_clip_never_counts_less_than_a_photo() -> None:
    assert jobs_worth(1, "instant") == 1.0
    assert dataclasses.replace(TELEGRAM_MP4, format="gif").format == "gif"


async def test_a_clip_is_no_photo_to_paint_again(db: Database, queue: RecordingQueue, tmp_path: Path) -> None:
    """Another style, the figures and "my latest photo" paint photos: a finished clip is none of them."""
    clips_here = service(db, queue, tmp_path)
    photo, _ = await clips_here.paint.jobs.submit(dataclasses.replace(photo_job(1), chat_id=7))
    clip, _ = await clips_here.start(request(clips.gif(3)), TELEGRAM_MP4)
    for job in (photo, clip):
        await db.claim_job(job.id, "worker")
        await db.finish_job(job.id)
    jobs, catalog = clips_here.paint.jobs, load_catalog()
    paintings = None  # "Surprise me" only; not asked here
    figures = FigureService(db, jobs, catalog, retention=timedelta(days=1), paintings=paintings)  # type: ignore[arg-type]
    latest = await figures.latest_source(7, 7, platform=TELEGRAM)
    assert latest is not None
    assert latest.id == photo.id  # the clip came later, and is skipped
    with pytest.raises(RepaintRefusedError) as refused:
        await figures.source(clip.id, 7, platform=TELEGRAM)
    assert refused.value.key == "repaint_clip"


@pytest.mark.parametrize("who", ["blocked", "group-off"])
async def test_moderation_refuses_a_clip_before_its_header_is_read(
    db: Database, queue: RecordingQueue, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, who: str
) -> None:
    """A blocked person, or anyone in a group switched off, hears that, not "too long": the bot does not
    parse their untrusted media at all (reviewer2 #6)."""

    def probed(*args: object, **kwargs: object) -> None:
        raise AssertionError("the clip's header was read")

    monkeypatch.setattr(clip_service_module, "probe", probed)
    too_long = request(clips.mp4(132, fps=12))
    if who == "blocked":
        await db.block_user(TELEGRAM, 7, by=1)
        expected: type[Refused] = BlockedError
    else:
        await db.set_chat_enabled(TELEGRAM, -100, False, by=1)
        too_long = dataclasses.replace(too_long, chat_id=-100, chat_type="supergroup", group_id=-100)
        expected = ChatOffError
    with pytest.raises(expected):
        await service(db, queue, tmp_path).start(too_long, TELEGRAM_MP4)
    assert queue.submitted == []


@pytest.mark.usefixtures("no_decoding")
async def test_the_painted_limit_follows_what_the_workers_report(
    db: Database, queue: RecordingQueue, tmp_path: Path
) -> None:
    """ENGINE_DEVICE=auto says nothing: five seconds painted are taken once the workers said they are on a
    GPU, refused (3 s) while they are on a CPU or have not said (reviewer2, clips' device rule)."""
    five_seconds = request(clips.mp4(60, fps=12))
    with pytest.raises(Refused):
        await service(db, queue, tmp_path, accelerated=False).start(five_seconds, TELEGRAM_MP4, "painted")
    job, _ = await service(db, queue, tmp_path, accelerated=True).start(five_seconds, TELEGRAM_MP4, "painted")
    assert job.clip is not None
    assert job.clip["quality"] == "painted"


def test_workers_are_accelerated_only_when_every_one_reported_a_gpu() -> None:
    assert accelerated(["cuda:0 (NVIDIA H100 80GB HBM3)", "cuda:1 (NVIDIA H100 80GB HBM3)"])
    assert accelerated(["mps"])
    assert not accelerated(["cuda:0 (NVIDIA H100 80GB HBM3)", "cpu (12 threads)"])  # a CPU might take it
    assert not accelerated([])  # nobody said yet


@pytest.mark.usefixtures("no_decoding")
async def test_a_clip_sent_again_after_a_crash_makes_no_second_job(
    db: Database, queue: RecordingQueue, tmp_path: Path
) -> None:
    """Telegram repeats an update the bot had not confirmed when it died: the clip's message made its job
    already (its request key), so the repeat is ``RepeatedRequest``, not a second painting."""
    clips_service = service(db, queue, tmp_path)
    once = dataclasses.replace(request(clips.gif(6)), request_key="message:5:9")
    job, _ = await clips_service.start(once, TELEGRAM_MP4)
    with pytest.raises(RepeatedRequest):
        await clips_service.start(once, TELEGRAM_MP4)
    assert queue.submitted == [job.id]

"""The sketch of a job: a painted preview in a fraction of a second, shown before the painting, and the
result itself when the user asks for no more (the ``instant`` quality, or "Keep the sketch").

``request`` starts a background task as soon as a job is stored: the sketch is made in the sketch process
(``engine.workers.sketcher``, beside the painting workers and never in the bot's event loop), kept as
``<job folder>/sketch.jpg`` and handed to the notifier, which puts it on the job's status. Nothing here
raises into a handler: a sketch that cannot be made is logged and the painting comes as usual.

An ``instant`` job is not queued by ``JobService.submit``: its sketch, made at ``INSTANT_SIDE``, is its
result, settled through the queue's ledger (``JobQueue.settle``) and delivered the ordinary way. If the
networks are unavailable, the job goes to the workers (whose engine paints instant results too); a photo
or style image that cannot be decoded fails the job with that image error's code.

Platform-free, and no SQLAlchemy: the database, the queue and the notifier are the ones the core shares.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from bot.db import Database, JobRecord, JobState
from bot.queue.base import JobQueue
from bot.services.access import ownership
from bot.services.users import load_preferences
from engine.catalog import Catalog, Preset, blended_default
from engine.errors import ImageError, SketchUnavailableError
from engine.protocol import DEFAULT_STRENGTH, settings_from_dict
from engine.schedule import TIERS
from engine.style_store import PaintingState, StyleStore
from engine.workers.sketcher import SketchBusyError, SketchPool, SketchRequest, SketchResult

if TYPE_CHECKING:
    from bot.notifier import Notifier

log = logging.getLogger(__name__)

INSTANT = "instant"
# The instant tier's result, as the engine makes it (one source: engine/schedule.py), capped by
# OUTPUT_MAX_SIDE and the photo's own size.
INSTANT_SIDE = TIERS["instant"].side_cpu
KEEP_REMAKE_SECONDS = 5.0  # Keep waits this long for the sketch at full size, then keeps the preview
PRESET_WAIT = 3.0  # seconds a sketch waits for a painting that the background fetch is bringing
SKETCH_FILE = "sketch.jpg"


class Kept(enum.Enum):
    """What "Keep the sketch" did."""

    KEPT = "kept"
    RUNNING = "running"  # a worker is painting it already
    ENDED = "ended"  # done, failed or cancelled meanwhile
    NO_SKETCH = "no_sketch"  # no sketch to keep (never made, or gone)
    NOT_YOURS = "not_yours"  # pressed by someone other than the job's owner


class _Unusable(Exception):
    """The job's sketch cannot be made here (a painting not on this disk): not the user's fault."""


class SketchService:
    def __init__(
        self,
        pool: SketchPool,
        db: Database,
        store: StyleStore,
        notifier: Notifier,
        queue: JobQueue,
        *,
        preview: bool,
        side: int,
        instant_side: int,
        max_pixels: int,
    ) -> None:
        self.pool = pool
        self.db = db
        self.store = store
        self.notifier = notifier
        self.queue = queue
        self.preview = preview  # SKETCH_PREVIEW
        self.side = side
        self.instant_side = instant_side
        self.max_pixels = max_pixels
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        """Warm the sketch process now when previews are on; otherwise the first instant job starts it."""
        if self.preview:
            self.pool.start()

    async def close(self) -> None:
        """At shutdown (before the queue stops): drop the sketches under way (an instant job claimed
        meanwhile goes back to the queue, for the workers), then stop the process."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.pool.close()

    def request(self, job: JobRecord) -> None:
        """Start the job's sketch in the background: its preview, or for an ``instant`` job its result."""
        instant = is_instant(job)
        work = self._instant(job) if instant else self._preview(job)
        task = asyncio.create_task(work, name=f"sketch-{job.id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def may_keep(self, job_id: int, user_id: int, *, platform: str) -> JobRecord | Kept:
        """Whether ``user_id`` may keep the sketch of the job a "Keep the sketch" button names: the job,
        or why not. One rule for every platform (job ids are easy to guess); only the job's owner, only
        while it waits. Cheap (one read), so a handler can answer a refusal within its platform's limit."""
        job = await self.db.get_job(job_id)
        match ownership(job, user_id, platform=platform):
            case "unknown":
                return Kept.ENDED
            case "not_yours":
                return Kept.NOT_YOURS
        assert job is not None
        if job.state is not JobState.QUEUED:
            return _too_late(job)
        return job

    async def keep(self, job: JobRecord) -> Kept:
        """ "Keep the sketch": the queued job ends with its sketch as the result, remade at the instant size
        when the process can (the preview is smaller), else as it was shown."""
        stored = sketch_path(job)
        if not stored.is_file():
            return Kept.NO_SKETCH
        try:
            result = await asyncio.wait_for(
                self.pool.make(self._sketch_request(job, self.instant_side), job_id=job.id),
                KEEP_REMAKE_SECONDS,
            )
        except Exception as err:  # the preview on disk is still a fine result
            log.info("job %d: keeping the preview as it is (%s)", job.id, err)
            result = await asyncio.to_thread(_read_sketch, stored)
        if await self.queue.settle(
            job.id, result.jpeg, width=result.width, height=result.height, seconds=result.seconds
        ):
            log.info("job %d (user %d): the sketch is its result", job.id, job.user_id)
            return Kept.KEPT
        return _too_late(await self.db.get_job(job.id))

    # -- the background work --------------------------------------------------------------------

    async def _preview(self, job: JobRecord) -> None:
        try:
            if not self.preview or not await self._wanted(job):
                return
            await self.wait_for_paintings(job)
            result = await self.pool.make(
                self._sketch_request(job, self.side), disposable=True, job_id=job.id
            )
            await asyncio.to_thread(_write, sketch_path(job), result.jpeg)
            log.info("job %d: sketch ready in %.2f s", job.id, result.seconds)
            await self.notifier.sketch_ready(job.id, result.jpeg)
        except asyncio.CancelledError:
            raise
        except SketchBusyError:
            return  # the sketch process said why, in its log line
        except FileNotFoundError:  # the job ended meanwhile and its inputs went (``discard_inputs``)
            log.info("job %d (user %d): no sketch: the job ended meanwhile", job.id, job.user_id)
        except (_Unusable, SketchUnavailableError, ImageError) as err:
            # a bad image: the worker fails the job with the same clear message; the rest: no preview
            log.info("job %d (user %d): no sketch: %s", job.id, job.user_id, err)
        except Exception:
            log.exception("job %d (user %d): the sketch failed", job.id, job.user_id)

    async def _instant(self, job: JobRecord) -> None:
        claimed = False
        try:
            if await self.queue.claim(job.id) is None:
                return  # cancelled, or a worker took it first: it paints the instant tier itself
            claimed = True
            started = time.monotonic()
            await self.wait_for_paintings(job)
            result = await self.pool.make(self._sketch_request(job, self.instant_side), job_id=job.id)
            await self.queue.settle(
                job.id,
                result.jpeg,
                width=result.width,
                height=result.height,
                seconds=time.monotonic() - started,
                claimed=True,
            )
        except asyncio.CancelledError:  # shutdown: the workers paint it at the next start, unhurried
            if claimed:
                with contextlib.suppress(Exception):
                    await asyncio.shield(self.queue.unclaim(job.id, "the bot is stopping"))
            raise
        except ImageError as err:
            log.info("job %d (user %d): the instant sketch refused an image: %s", job.id, job.user_id, err)
            await self.queue.fail(job.id, err.code, str(err))
        except Exception as err:
            if not isinstance(err, (_Unusable, SketchUnavailableError)):
                log.exception("job %d (user %d): the instant sketch failed", job.id, job.user_id)
            if claimed:
                with contextlib.suppress(Exception):
                    await self.queue.unclaim(job.id, f"the sketch could not be made here: {err}")
            else:
                with contextlib.suppress(Exception):
                    await self.queue.submit(job.id)

    async def _wanted(self, job: JobRecord) -> bool:
        return (await load_preferences(self.db, job.user_id, platform=job.platform)).sketch

    def _sketch_request(self, job: JobRecord, side: int) -> SketchRequest:
        settings = settings_from_dict(job.settings)
        return SketchRequest(
            content=job.content_path,
            styles=tuple(self._styles(job)),
            side=side,
            strength=blended_default(
                settings.strength, self._presets(job), "strength", DEFAULT_STRENGTH
            ),  # a preset's own strength when the user set none, as the engine paints it
            keep_colors=settings.preserve_colors is not None,
            max_pixels=self.max_pixels,
        )

    def _presets(self, job: JobRecord) -> list[tuple[Preset | None, float]]:
        catalog = self.store.catalog
        return [(_preset(catalog, ref.get("preset")), float(ref.get("weight", 1.0))) for ref in job.styles]

    def _styles(self, job: JobRecord) -> list[tuple[str, float]]:
        styles = []
        for ref in job.styles:
            weight = float(ref.get("weight", 1.0))
            if ref.get("preset"):
                path = self.store.local_path(str(ref["preset"]))
                if path is None:
                    raise _Unusable(f"the painting {ref['preset']!r} is not on this disk")
                styles.append((str(path), weight))
            else:
                styles.append((job.style_paths[int(ref["image"])], weight))
        return styles

    async def wait_for_paintings(self, job: JobRecord) -> None:
        """A preset the background fetch is bringing right now: wait for it a little."""
        deadline = time.monotonic() + PRESET_WAIT
        for ref in job.styles:
            preset = ref.get("preset")
            while (  # noqa: ASYNC110 - the store announces no arrivals
                preset
                and self.store.local_path(str(preset)) is None
                and self.store.state(str(preset)) is PaintingState.COMING
                and time.monotonic() < deadline
            ):
                await asyncio.sleep(0.1)


def _too_late(job: JobRecord | None) -> Kept:
    """Why a job no longer waiting cannot keep its sketch: a worker paints it, or it ended."""
    return Kept.RUNNING if job is not None and job.state is JobState.RUNNING else Kept.ENDED


def _preset(catalog: Catalog, style_id: object) -> Preset | None:
    """The catalog's entry of a preset reference; ``None`` for an own picture or a preset gone since."""
    return catalog.get(str(style_id)) if style_id and str(style_id) in catalog else None


def is_instant(job: JobRecord) -> bool:
    """The sketch is the result: the ``instant`` tier, for one picture (a figure is always painted)."""
    return job.settings.get("quality") == INSTANT and not job.settings.get("figure")


def sketch_path(job: JobRecord) -> Path:
    """Where a job's sketch is kept: beside its photo, so it goes when the job's inputs go."""
    return Path(job.content_path).parent / SKETCH_FILE


def _write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _read_sketch(path: Path) -> SketchResult:
    data = path.read_bytes()
    with Image.open(path) as image:  # the header only: the bot made this file itself
        width, height = image.size
    return SketchResult(data, width, height, 0.0)

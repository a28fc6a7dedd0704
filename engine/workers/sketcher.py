"""The bot's sketch process: ``engine.sketch`` in one child of normal priority, beside the niced painters.

The bot never runs a network in its own process (its event loop must stay free), and a sketch must not
wait behind a painting: the embedded painting workers run niced (``engine.workers.pipe.NICENESS``), this
child does not, so on a busy machine the scheduler gives it the cores first. One child, spawned and warmed
at start-up (both networks loaded, about 1 s), makes one sketch at a time in a fraction of a second.

``SketchPool.make`` sends a ``SketchRequest`` (paths and numbers only: nothing large crosses the pipe but
the JPEG coming back) and awaits a ``SketchResult``. Requests take turns here, not in the executor's
queue, so the timeout counts only the child's own work: a burst of sketches waits its turn and none of it
is mistaken for a hung child. A child that died (``BrokenProcessPool``) or hung past the timeout is
replaced and the request tried once more. A preview (``disposable``) is refused with ``SketchBusyError``
while ``PREVIEW_BACKLOG`` requests wait already; a result (instant, "Keep the sketch") always waits its
turn. An input that cannot be decoded raises its ``engine.errors.ImageError``; networks that cannot be
loaded raise ``SketchUnavailableError``.

Imports neither torch nor the bot.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import io
import logging
import multiprocessing
import signal
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

JPEG_QUALITY = 90
TIMEOUT = 20.0  # seconds for one sketch, far above the ~0.1-1 s one takes; a child past it is replaced
WARM_TIMEOUT = 60.0  # the first start: spawning Python, importing onnxruntime, loading both networks
PREVIEW_BACKLOG = 8  # requests waiting for the child past which a preview is not worth making any more


class SketchBusyError(Exception):
    """A preview dropped: too many sketches wait for the child already (a preview is only a nicety)."""


@dataclass(frozen=True)
class SketchRequest:
    """One sketch: the photo's file, the paintings' files with their weights, and the knobs."""

    content: str
    styles: tuple[tuple[str, float], ...]
    side: int  # the longest side wanted; never above the photo's own
    strength: float | None = None
    keep_colors: bool = False
    max_pixels: int = 50_000_000


@dataclass(frozen=True)
class SketchResult:
    jpeg: bytes
    width: int
    height: int
    seconds: float  # in the child, decoding and encoding included


class SketchPool:
    """One warm child process running ``engine.sketch.Sketcher``; see the module docstring."""

    def __init__(self, cache_dir: Path | None, *, threads: int | None = 2, timeout: float = TIMEOUT) -> None:
        self.cache_dir = cache_dir
        self.threads = threads
        self.timeout = timeout
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._warm: asyncio.Future[None] | None = None
        self._closed = False
        self._turn = asyncio.Lock()  # one request in the child at a time; the rest wait here
        self._waiting = 0  # requests waiting for their turn

    def start(self) -> None:
        """Spawn and warm the child now, in the background: the first sketch then costs no start-up."""
        if self._pool is None and not self._closed:
            self._spawn()

    async def ready(self) -> None:
        """Wait until the child is up and its networks loaded (tests; a health check could too)."""
        self.start()
        if self._warm is not None:
            await asyncio.wait_for(asyncio.shield(self._warm), WARM_TIMEOUT)

    async def make(
        self, request: SketchRequest, *, disposable: bool = False, job_id: int | None = None
    ) -> SketchResult:
        """The sketch, made in the child when its turn comes; once more in a new child if the first one
        died or hung. ``disposable`` (a preview): ``SketchBusyError`` rather than a long wait in line.
        ``job_id``: for the log lines only."""
        if disposable and self._waiting >= PREVIEW_BACKLOG:
            log.info(
                "job %s: no preview: %d sketches wait for the sketch process already", job_id, self._waiting
            )
            raise SketchBusyError(f"{self._waiting} sketches wait already")
        self._waiting += 1
        try:
            await self._turn.acquire()
        finally:
            self._waiting -= 1
        try:
            return await self._make_now(request, job_id)
        finally:
            self._turn.release()

    async def _make_now(self, request: SketchRequest, job_id: int | None) -> SketchResult:
        for attempt in (1, 2):
            if self._closed:
                raise RuntimeError("the sketch pool is closed")
            if self._pool is None:
                self._spawn()
            pool, warm = self._pool, self._warm
            assert pool is not None and warm is not None
            try:
                await asyncio.wait_for(asyncio.shield(warm), WARM_TIMEOUT)
                future = asyncio.get_running_loop().run_in_executor(pool, _make, request)
                return await asyncio.wait_for(future, self.timeout)
            except (BrokenProcessPool, TimeoutError) as err:
                reason = "hung" if isinstance(err, TimeoutError) else "died"
                log.warning(
                    "job %s: the sketch process %s (attempt %d): replacing it", job_id, reason, attempt
                )
                self._discard(pool)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    async def close(self) -> None:
        """At shutdown: stop the child (a sketch under way is dropped)."""
        self._closed = True
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.to_thread(_stop, pool)

    def _spawn(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=1,
            mp_context=context,
            initializer=_initialize,
            initargs=(None if self.cache_dir is None else str(self.cache_dir), self.threads),
        )
        # The initializer runs when the child starts, which the first submitted call causes.
        self._warm = asyncio.get_running_loop().run_in_executor(self._pool, _ready)
        self._warm.add_done_callback(_log_warm_failure)

    def _discard(self, pool: concurrent.futures.ProcessPoolExecutor) -> None:
        if self._pool is pool:
            self._pool = None
        _stop(pool)


def _stop(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Kill the child (a hung one would never take a polite exit) and let the executor go."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.kill()
            process.join(5)


def _log_warm_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("the sketch process could not start: %s", future.exception())


# -- in the child -------------------------------------------------------------------------------

_sketcher = None  # the child's engine.sketch.Sketcher, loaded by _initialize


def _initialize(cache_dir: str | None, threads: int | None) -> None:
    global _sketcher
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl+C is for the bot, which stops us
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s [sketcher] %(message)s")
    from engine.sketch import Sketcher

    _sketcher = Sketcher(None if cache_dir is None else Path(cache_dir), threads=threads)
    try:
        _sketcher.load()
    except Exception as err:  # SketchUnavailableError: every request will say so
        log.warning("the sketch networks are unavailable: %s", err)


def _ready() -> None:
    """Runs first in a new child: it returns once the initializer has loaded the networks."""
    return None


def _make(request: SketchRequest) -> SketchResult:
    from engine.images import decode_image, image_digest
    from engine.sketch import SketchStyle

    assert _sketcher is not None
    started = time.monotonic()
    photo = decode_image(Path(request.content).read_bytes(), max_pixels=request.max_pixels)
    styles = []
    for path, weight in request.styles:
        data = Path(path).read_bytes()
        image = decode_image(data, max_pixels=request.max_pixels)
        styles.append(SketchStyle(image, weight, image_digest(data)))
    side = max(1, min(request.side, max(photo.size)))
    painted = _sketcher.sketch(
        photo, styles, side=side, strength=request.strength, keep_colors=request.keep_colors
    )
    buffer = io.BytesIO()
    painted.save(buffer, "JPEG", quality=JPEG_QUALITY)
    return SketchResult(buffer.getvalue(), painted.width, painted.height, time.monotonic() - started)

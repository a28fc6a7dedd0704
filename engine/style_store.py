"""The preset paintings on disk, kept in ``styles_dir`` as ``<id>.jpg`` or ``.png``.

Each process that needs them (the bot, a machine's workers) fetches the catalog's missing paintings in the
background at start-up (``prefetch``), a few at a time; a job that needs a painting now fetches it at once
(``fetch``/``ensure``) instead of queueing behind those. Both hold the painting's lock, an in-process lock
and a lock file beside the paintings, so no painting is downloaded twice by the processes sharing a disk.
One painting's fetch, lock wait included, ends within ``deadline`` seconds: well below the worker stall
timeout, so a stalled server yields "this painting cannot be fetched", never a killed worker.

Torch-free (aiohttp and Pillow only), so the bot can pre-fetch paintings and draw the gallery without the
engine. A painting put in ``styles_dir`` by hand is used as it is: offline installs and tests rely on that.
aiohttp is imported when a download starts, not with the module: a CLI run or a worker whose paintings are
on disk never needs it (0.13-0.18 s of start-up, bench/startup.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import io
import logging
import math
import os
import tempfile
import threading
import unicodedata
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw, ImageFont, ImageOps

from engine.catalog import ID_PATTERN, Catalog, Preset, load_catalog
from engine.errors import StyleUnavailableError
from engine.images import READ_FORMATS

try:
    import fcntl
except ImportError:  # Windows: no lock files; processes there may download a painting twice
    fcntl = None  # type: ignore[assignment]

if TYPE_CHECKING:
    import aiohttp

    from engine.settings import EngineSettings

log = logging.getLogger(__name__)

# Wikimedia refuses clients that do not say who they are.
DEFAULT_USER_AGENT = "Stylebot/0.1 (+https://github.com/stylebot/stylebot)"
SUFFIXES = (".jpg", ".jpeg", ".png")
MIN_SIDE = 64  # smaller is an icon or an error placeholder, not a painting
MAX_PIXELS = 80_000_000  # below Pillow's decompression-bomb warning
FETCH_CONCURRENCY = 4  # polite to Wikimedia, and enough to fill the catalog in seconds
DEFAULT_DEADLINE = 60.0  # one painting, every address and retry: a third of the worker stall timeout
LOCK_POLL = 0.1  # seconds between tries at another process's lock file
RETRY_FIRST = 600.0  # the background tries failed paintings again after 10 minutes, then 20, 40...
RETRY_MAX = 6 * 3600.0

UNREACHABLE = "network unreachable"

ProgressCallback = Callable[[int, int, str], None]


class PaintingState(enum.StrEnum):
    """Where a painting stands on this process's disk."""

    READY = "ready"  # on disk
    COMING = "coming"  # the background fetch will get it, or is getting it
    FAILED = "failed"  # the last try failed (server error, offline); a job still tries again
    MISSING = "missing"  # not on disk and not being fetched: fetched when a job first needs it


_PLACEHOLDERS = {
    PaintingState.READY: "unreadable",  # on disk, but it did not decode
    PaintingState.COMING: "on its way…",
    PaintingState.FAILED: "unavailable",
    PaintingState.MISSING: "not downloaded",
}


class _Unreachable(StyleUnavailableError):
    """No address could even be connected to: this machine is probably offline."""


class _AttemptFailed(Exception):
    """One try at one address failed; ``retry`` says whether the same address may work a moment later."""

    def __init__(self, reason: str, *, retry: bool) -> None:
        super().__init__(reason)
        self.retry = retry


class StyleStore:
    """Finds each preset's painting on disk, downloading it the first time it is needed."""

    def __init__(
        self,
        styles_dir: Path,
        catalog: Catalog | None = None,
        *,
        max_bytes: int = 25_000_000,
        timeout: float = 30.0,
        retries: int = 2,
        backoff: float = 0.5,
        deadline: float = DEFAULT_DEADLINE,
        user_agent: str = DEFAULT_USER_AGENT,
    ) -> None:
        self.styles_dir = Path(styles_dir)
        self.catalog = catalog if catalog is not None else load_catalog()
        self.max_bytes = max_bytes
        self.timeout = timeout  # one request
        self.retries = retries
        self.backoff = backoff  # seconds before the first retry; doubles for each one after
        self.deadline = deadline  # one painting: lock wait, every address and every retry together
        self.user_agent = user_agent
        # asyncio locks belong to one event loop, and ensure() runs a new loop each time: one set per loop.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
            weakref.WeakKeyDictionary()
        )
        # What the background fetch knows; sets and dicts, so the bot's handlers read them without locks.
        self._coming: set[str] = set()
        self._failed: dict[str, str] = {}

    @classmethod
    def from_settings(cls, settings: EngineSettings, catalog: Catalog | None = None) -> StyleStore:
        return cls(settings.styles_dir, catalog, deadline=settings.styles_fetch_seconds)

    def state(self, style_id: str) -> PaintingState:
        if self.local_path(style_id) is not None:
            return PaintingState.READY
        if style_id in self._coming:
            return PaintingState.COMING
        if style_id in self._failed:
            return PaintingState.FAILED
        return PaintingState.MISSING

    def states(self) -> dict[str, PaintingState]:
        """Every preset's state, in catalog order."""
        return {preset.id: self.state(preset.id) for preset in self.catalog}

    def local_path(self, style_id: str) -> Path | None:
        """The painting's file if it is on disk (``<id>.jpg``, ``.jpeg`` or ``.png``), else None."""
        if not ID_PATTERN.fullmatch(style_id):  # never build a path from arbitrary text
            return None
        for suffix in SUFFIXES:
            path = self.styles_dir / f"{style_id}{suffix}"
            if path.is_file():
                return path
        return None

    async def fetch(self, style_id: str, session: aiohttp.ClientSession | None = None) -> Path:
        """The painting's file, downloaded first if needed.

        Raises UnknownStyleError for an id the catalog does not know and StyleUnavailableError when no
        address gives a usable image.
        """
        preset = self.catalog.get(style_id)
        path = await self._fetch(preset, session, quiet=False)
        self._failed.pop(preset.id, None)
        return path

    async def prefetch(
        self, *, concurrency: int = FETCH_CONCURRENCY, retry_after: float = RETRY_FIRST
    ) -> None:
        """Fetch every missing painting, ``concurrency`` at a time, until all are on disk.

        Meant to run in the background for the life of the process: failures are logged (one line per
        painting, or one line in all when the machine is offline) and tried again after ``retry_after``
        seconds, doubling up to six hours. A job's ``fetch`` does not wait for this; it takes no slot.
        """
        delay = retry_after
        while missing := [p for p in self.catalog if self.local_path(p.id) is None]:
            await self._prefetch_pass(missing, concurrency)
            if not self._failed:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX)

    async def _prefetch_pass(self, presets: list[Preset], concurrency: int) -> None:
        self._coming.update(p.id for p in presets)
        slots = asyncio.Semaphore(concurrency)
        reached_a_server = offline = False
        unreachable = 0

        async def fetch_one(preset: Preset, session: aiohttp.ClientSession) -> None:
            nonlocal reached_a_server, offline, unreachable
            async with slots:
                try:
                    if offline:  # no need to wait for every address of every painting to fail
                        self._failed[preset.id] = "offline"
                        return
                    await self._fetch(preset, session, quiet=True)
                    self._failed.pop(preset.id, None)
                    reached_a_server = True
                except _Unreachable as exc:
                    self._failed[preset.id] = str(exc)
                    unreachable += 1
                    offline = not reached_a_server and unreachable >= concurrency
                except StyleUnavailableError as exc:
                    self._failed[preset.id] = str(exc)
                    reached_a_server = True
                finally:
                    self._coming.discard(preset.id)

        try:
            async with _client_session() as session:
                await asyncio.gather(*(fetch_one(preset, session) for preset in presets))
        finally:
            self._coming.difference_update(p.id for p in presets)
        ready = sum(self.local_path(p.id) is not None for p in self.catalog)
        failed = {p.id: self._failed[p.id] for p in presets if p.id in self._failed}
        where = f"{ready} of {len(self.catalog)} paintings on disk in {self.styles_dir}"
        if offline:
            log.warning(
                "%s; cannot reach the painting servers (offline?): jobs fetch the others when they need "
                "them, and the background tries again later",
                where,
            )
        elif failed:
            reasons = "; ".join(f"{style_id}: {reason}" for style_id, reason in failed.items())
            log.warning("%s; not available for now (tried again later): %s", where, reasons)
        else:
            log.info("%s", where)

    async def _fetch(self, preset: Preset, session: aiohttp.ClientSession | None, *, quiet: bool) -> Path:
        """The painting's file; downloaded under its locks, within ``deadline`` seconds, if not on disk."""
        if path := self.local_path(preset.id):
            return path
        try:
            async with asyncio.timeout(self.deadline):
                async with self._lock(preset.id), self._file_lock(preset.id):
                    if path := self.local_path(preset.id):  # fetched by another task or process meanwhile
                        return path
                    if session is not None:
                        return await self._download(preset.id, preset.urls, session, quiet=quiet)
                    async with _client_session() as own_session:
                        return await self._download(preset.id, preset.urls, own_session, quiet=quiet)
        except TimeoutError:
            raise StyleUnavailableError(
                f"could not download {preset.id!r} within {self.deadline:g} s"
            ) from None

    async def fetch_many(
        self,
        ids: Iterable[str] | None = None,
        progress: ProgressCallback | None = None,
        *,
        concurrency: int = FETCH_CONCURRENCY,
    ) -> dict[str, Path | StyleUnavailableError]:
        """Fetch several presets (all by default) over one connection pool; failures are returned, not raised.

        Unknown ids raise UnknownStyleError before anything is downloaded. ``progress(done, total, id)`` is
        called as each one finishes.
        """
        wanted = [preset.id for preset in self._presets(ids)]
        results: dict[str, Path | StyleUnavailableError] = {}
        slots = asyncio.Semaphore(concurrency)

        async def fetch_one(style_id: str, session: aiohttp.ClientSession) -> None:
            async with slots:
                try:
                    results[style_id] = await self.fetch(style_id, session)
                except StyleUnavailableError as exc:
                    results[style_id] = exc
            if progress is not None:
                progress(len(results), len(wanted), style_id)

        async with _client_session() as session:
            await asyncio.gather(*(fetch_one(style_id, session) for style_id in wanted))
        return {style_id: results[style_id] for style_id in wanted}

    def ensure(self, style_id: str) -> Path:
        """``fetch`` for synchronous callers (worker processes, the CLI); instant when the file is on disk."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass  # no loop runs in this thread, so we may start one
        else:
            raise RuntimeError("StyleStore.ensure() blocks; inside an event loop, await StyleStore.fetch()")
        preset = self.catalog.get(style_id)
        return self.local_path(preset.id) or asyncio.run(self.fetch(preset.id))

    def make_sheet(
        self, ids: Iterable[str] | None = None, *, columns: int = 5, thumb: int = 200, numbered: bool = False
    ) -> Image.Image:
        """A contact sheet of the presets with their ids, for the bot's gallery and the CLI.

        Paintings not on disk (or unreadable) are drawn as grey tiles that say why (on its way, unavailable,
        not downloaded), so one missing file never costs the whole gallery. ``numbered`` puts 1, 2, 3... on
        the tiles, for buttons that name them by number.
        """
        presets = self._presets(ids)
        if not presets or columns < 1 or thumb < 32:
            raise ValueError("a sheet needs at least one preset, one column and 32-pixel thumbnails")
        columns = min(columns, len(presets))
        pad = thumb // 10
        cell_w = thumb + 2 * pad
        text_w = thumb + pad  # captions may use half of each padding
        id_size = _fitting_size([preset.id for preset in presets], max(12, thumb // 8), text_w)
        title_size = max(10, min(thumb // 11, id_size - 2))
        id_font = ImageFont.load_default(size=id_size)
        title_font = ImageFont.load_default(size=title_size)
        number_size = max(12, thumb // 7)
        number_font = ImageFont.load_default(size=number_size)
        cell_h = thumb + 2 * pad + id_size + title_size + pad // 2
        rows = math.ceil(len(presets) / columns)
        sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), (250, 250, 247))
        draw = ImageDraw.Draw(sheet)
        for index, preset in enumerate(presets):
            x = (index % columns) * cell_w + pad
            y = (index // columns) * cell_h + pad
            image = _thumbnail(self.local_path(preset.id), thumb)
            if image is None:
                draw.rectangle((x, y, x + thumb - 1, y + thumb - 1), fill=(214, 214, 210))
                why = _PLACEHOLDERS[self.state(preset.id)]
                draw.text((x + thumb / 2, y + thumb / 2), why, (90, 90, 90), title_font, "mm")
            else:
                sheet.paste(image, (x + (thumb - image.width) // 2, y + (thumb - image.height) // 2))
            if numbered:
                radius = number_size * 0.8
                centre = (x + radius + 2, y + radius + 2)
                box = (centre[0] - radius, centre[1] - radius, centre[0] + radius, centre[1] + radius)
                draw.ellipse(box, fill=(20, 20, 20), outline=(250, 250, 247), width=2)
                draw.text(centre, str(index + 1), (250, 250, 247), number_font, "mm")
            middle, text_y = x + thumb / 2, y + thumb + pad // 2
            title = _fit(_drawable(preset.title), title_font, text_w)
            draw.text((middle, text_y), preset.id, (20, 20, 20), id_font, "ma")
            draw.text((middle, text_y + id_size + 2), title, (95, 95, 95), title_font, "ma")
        return sheet

    def _presets(self, ids: Iterable[str] | None) -> list[Preset]:
        """The presets named by ``ids`` (all by default), each once; UnknownStyleError before any work."""
        if ids is None:
            return list(self.catalog)
        return list({preset.id: preset for preset in map(self.catalog.get, ids)}.values())

    def _lock(self, style_id: str) -> asyncio.Lock:
        locks = self._locks.setdefault(asyncio.get_running_loop(), {})
        return locks.setdefault(style_id, asyncio.Lock())

    @contextlib.asynccontextmanager
    async def _file_lock(self, style_id: str) -> AsyncIterator[None]:
        """``.<id>.lock`` beside the paintings, held while one process downloads: the bot and the workers
        of one machine share the folder. Removed when released; a waiter that locked a removed file
        (another process got there between its open and its lock) opens the new one."""
        if fcntl is None:
            yield
            return
        path = self.styles_dir / f".{style_id}.lock"
        while True:
            try:
                self.styles_dir.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise StyleUnavailableError(f"cannot write to {self.styles_dir}: {exc.strerror}") from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                await asyncio.sleep(LOCK_POLL)
                continue
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            os.close(fd)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                path.unlink()  # before unlocking, so nobody locks this file after us
            os.close(fd)

    async def _download(
        self, style_id: str, urls: tuple[str, ...], session: aiohttp.ClientSession, *, quiet: bool
    ) -> Path:
        """Try each address in turn (retrying transient failures) and keep the first usable image.

        ``quiet``: the background's attempts log at DEBUG; it reports each painting once, itself.
        """
        reasons: list[str] = []
        level = logging.DEBUG if quiet else logging.WARNING
        for url in urls:
            try:
                data, content_type = await self._get(style_id, url, session, quiet=quiet)
                suffix, payload = await asyncio.to_thread(_as_stored_image, data, content_type)
            except _AttemptFailed as exc:
                log.log(level, "style %s: %s gave up: %s", style_id, url, exc)
                reasons.append(str(exc))
                continue
            path = self.styles_dir / f"{style_id}{suffix}"
            try:
                await asyncio.to_thread(_write_atomic, path, payload)
            except OSError as exc:
                raise StyleUnavailableError(f"could not save {style_id!r} to {path}: {exc.strerror}") from exc
            log.info("style %s: saved %s (%d bytes) from %s", style_id, path, len(payload), url)
            return path
        tried = f"{len(urls)} address" if len(urls) == 1 else f"{len(urls)} addresses"
        unique = list(dict.fromkeys(reasons))
        error = _Unreachable if unique == [UNREACHABLE] else StyleUnavailableError
        raise error(f"could not download {style_id!r}: {'; '.join(unique)} (tried {tried})")

    async def _get(
        self, style_id: str, url: str, session: aiohttp.ClientSession, *, quiet: bool = False
    ) -> tuple[bytes, str]:
        """The body of one address, with retries for what may pass (network, timeouts, 429, 5xx)."""
        attempt = 1
        level = logging.DEBUG if quiet else logging.INFO
        while True:
            log.log(level, "style %s: GET %s (attempt %d of %d)", style_id, url, attempt, self.retries + 1)
            try:
                return await self._get_once(url, session)
            except _AttemptFailed as exc:
                if not exc.retry or attempt > self.retries:
                    raise
                log.log(level, "style %s: %s failed, will retry: %s", style_id, url, exc)
            await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            attempt += 1

    async def _get_once(self, url: str, session: aiohttp.ClientSession) -> tuple[bytes, str]:
        import aiohttp

        try:
            async with session.get(
                url,
                headers={"User-Agent": self.user_agent},
                timeout=aiohttp.ClientTimeout(total=self.timeout),
            ) as response:
                if response.status != 200:
                    transient = response.status == 429 or response.status >= 500
                    raise _AttemptFailed(f"HTTP {response.status}", retry=transient)
                return await self._read_limited(response), response.content_type
        except TimeoutError:
            raise _AttemptFailed(f"timed out after {self.timeout:g} s", retry=True) from None
        except aiohttp.ClientConnectorError:
            raise _AttemptFailed(UNREACHABLE, retry=True) from None
        except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError):
            raise _AttemptFailed("connection lost", retry=True) from None
        except aiohttp.ClientError as exc:
            raise _AttemptFailed(f"request failed ({type(exc).__name__})", retry=False) from None

    async def _read_limited(self, response: aiohttp.ClientResponse) -> bytes:
        """The body, read in chunks and abandoned as soon as it passes ``max_bytes``."""
        too_large = _AttemptFailed(f"larger than {self.max_bytes / 1e6:g} MB", retry=False)
        if (response.content_length or 0) > self.max_bytes:
            raise too_large
        body = bytearray()
        async for chunk in response.content.iter_chunked(1 << 16):
            body += chunk
            if len(body) > self.max_bytes:
                raise too_large
        return bytes(body)


class BackgroundPrefetch:
    """``StyleStore.prefetch`` in a thread of its own, for processes without an event loop (workers)."""

    def __init__(self, store: StyleStore) -> None:
        self.store = store
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name="painting-prefetch", daemon=True)

    def start(self) -> BackgroundPrefetch:
        self._thread.start()
        self._started.wait()
        return self

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the prefetch to end; True if it has."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        if self._loop is not None and self._task is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between: nothing to cancel
                self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join(timeout)

    def _run(self) -> None:
        async def main() -> None:
            self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
            self._started.set()
            await self.store.prefetch()

        try:
            asyncio.run(main())
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("the background fetch of the paintings failed")
        finally:
            self._started.set()


def start_prefetch(settings: EngineSettings, catalog: Catalog | None = None) -> BackgroundPrefetch | None:
    """Start fetching the catalog's missing paintings in the background (unless ``STYLES_PREFETCH=off``).

    One call at the start of a process that runs jobs on a disk the bot does not fill (the Celery
    workers' machines); the bot runs ``StyleStore.prefetch`` in its own event loop.
    """
    if not settings.styles_prefetch:
        return None
    return BackgroundPrefetch(StyleStore.from_settings(settings, catalog)).start()


def _as_stored_image(data: bytes, content_type: str) -> tuple[str, bytes]:
    """The suffix and bytes to keep: JPEG and PNG as downloaded, other formats re-encoded as JPEG.

    Rejects what does not decode as a sensible painting (an HTML error page, a truncated file, an icon).
    """
    try:
        with Image.open(io.BytesIO(data), formats=READ_FORMATS) as probe:
            image_format, (width, height) = probe.format, probe.size
            probe.verify()  # structure and checksums, cheaply
        if min(width, height) < MIN_SIDE or width * height > MAX_PIXELS:
            raise _AttemptFailed(f"unusable image size {width}x{height}", retry=False)
        with Image.open(io.BytesIO(data), formats=READ_FORMATS) as image:
            image.load()  # every pixel: verify() lets a truncated JPEG through
            if image_format in ("JPEG", "MPO"):  # MPO: a camera JPEG with extra frames, still a JPEG file
                return ".jpg", data
            if image_format == "PNG":
                return ".png", data
            converted = io.BytesIO()
            image.convert("RGB").save(converted, "JPEG", quality=95)
            return ".jpg", converted.getvalue()
    except _AttemptFailed:
        raise
    except Image.DecompressionBombError:
        raise _AttemptFailed("too many pixels to decode safely", retry=False) from None
    except Exception as exc:  # Pillow raises many types for bytes that are not an image
        raise _AttemptFailed(f"not an image ({content_type or 'no content type'})", retry=False) from exc


def _client_session() -> aiohttp.ClientSession:
    """A session for a download; aiohttp is imported here, at the first download, not with the module."""
    import aiohttp

    return aiohttp.ClientSession()


def _write_atomic(path: Path, data: bytes) -> None:
    """Write beside ``path`` and rename, so other workers never read half a painting."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as file:
            os.fchmod(file.fileno(), 0o644)  # mkstemp's 0600 would hide the file from other users
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise


def _thumbnail(path: Path | None, size: int) -> Image.Image | None:
    if path is None:
        return None
    try:
        with Image.open(path, formats=READ_FORMATS) as image:
            image.draft("RGB", (size, size))  # JPEG: decode big scans at 1/2..1/8 scale, much faster
            thumb = ImageOps.exif_transpose(image).convert("RGB")
    except Exception as exc:  # a damaged file must not break the gallery
        log.warning("cannot draw %s: %s", path, exc)
        return None
    thumb.thumbnail((size, size))
    return thumb


def _fitting_size(texts: list[str], size: int, width: int) -> int:
    """The largest font size up to ``size`` at which every text fits ``width``: users must read ids whole."""
    while size > 8 and max(ImageFont.load_default(size=size).getlength(text) for text in texts) > width:
        size -= 1
    return size


def _drawable(text: str) -> str:
    """``text`` without accents: Pillow's bundled font has no accented letters ("é" would draw as a box)."""
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))


def _fit(text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> str:
    """``text``, cut with an ellipsis where it would be wider than ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "…") > width:
        text = text[:-1]
    return text.rstrip() + "…"

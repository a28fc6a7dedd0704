"""The preset paintings on disk: downloaded on first use, kept in ``styles_dir`` as ``<id>.jpg`` or ``.png``.

Torch-free (aiohttp and Pillow only), so the bot can pre-fetch paintings and draw the gallery without the
engine. A painting put in ``styles_dir`` by hand is used as it is: offline installs and tests rely on that.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
import os
import tempfile
import unicodedata
import weakref
from collections.abc import Callable, Iterable
from pathlib import Path

import aiohttp
from PIL import Image, ImageDraw, ImageFont, ImageOps

from engine.catalog import ID_PATTERN, Catalog, Preset, load_catalog
from engine.errors import StyleUnavailableError
from engine.images import READ_FORMATS

log = logging.getLogger(__name__)

# Wikimedia refuses clients that do not say who they are.
DEFAULT_USER_AGENT = "Stylebot/0.1 (+https://github.com/stylebot/stylebot)"
SUFFIXES = (".jpg", ".jpeg", ".png")
MIN_SIDE = 64  # smaller is an icon or an error placeholder, not a painting
MAX_PIXELS = 80_000_000  # below Pillow's decompression-bomb warning
FETCH_CONCURRENCY = 4  # polite to Wikimedia, and enough to fill the catalog in seconds

ProgressCallback = Callable[[int, int, str], None]


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
        user_agent: str = DEFAULT_USER_AGENT,
    ) -> None:
        self.styles_dir = Path(styles_dir)
        self.catalog = catalog if catalog is not None else load_catalog()
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff  # seconds before the first retry; doubles for each one after
        self.user_agent = user_agent
        # asyncio locks belong to one event loop, and ensure() runs a new loop each time: one set per loop.
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
            weakref.WeakKeyDictionary()
        )

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
        if path := self.local_path(preset.id):
            return path
        async with self._lock(preset.id):
            if path := self.local_path(preset.id):  # another task fetched it while we waited
                return path
            if session is not None:
                return await self._download(preset.id, preset.urls, session)
            async with aiohttp.ClientSession() as own_session:
                return await self._download(preset.id, preset.urls, own_session)

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

        async with aiohttp.ClientSession() as session:
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
        self, ids: Iterable[str] | None = None, *, columns: int = 5, thumb: int = 200
    ) -> Image.Image:
        """A contact sheet of the presets with their ids, for the bot's gallery and the CLI.

        Paintings not on disk (or unreadable) are drawn as grey tiles, so one missing file never costs the
        whole gallery.
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
                draw.text((x + thumb / 2, y + thumb / 2), "not downloaded", (90, 90, 90), title_font, "mm")
            else:
                sheet.paste(image, (x + (thumb - image.width) // 2, y + (thumb - image.height) // 2))
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

    async def _download(self, style_id: str, urls: tuple[str, ...], session: aiohttp.ClientSession) -> Path:
        """Try each address in turn (retrying transient failures) and keep the first usable image."""
        reasons: list[str] = []
        for url in urls:
            try:
                data, content_type = await self._get(style_id, url, session)
                suffix, payload = await asyncio.to_thread(_as_stored_image, data, content_type)
            except _AttemptFailed as exc:
                log.warning("style %s: %s gave up: %s", style_id, url, exc)
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
        raise StyleUnavailableError(
            f"could not download {style_id!r}: {'; '.join(dict.fromkeys(reasons))} (tried {tried})"
        )

    async def _get(self, style_id: str, url: str, session: aiohttp.ClientSession) -> tuple[bytes, str]:
        """The body of one address, with retries for what may pass (network, timeouts, 429, 5xx)."""
        attempt = 1
        while True:
            log.info("style %s: GET %s (attempt %d of %d)", style_id, url, attempt, self.retries + 1)
            try:
                return await self._get_once(url, session)
            except _AttemptFailed as exc:
                if not exc.retry or attempt > self.retries:
                    raise
                log.info("style %s: %s failed, will retry: %s", style_id, url, exc)
            await asyncio.sleep(self.backoff * 2 ** (attempt - 1))
            attempt += 1

    async def _get_once(self, url: str, session: aiohttp.ClientSession) -> tuple[bytes, str]:
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
            raise _AttemptFailed("network unreachable", retry=True) from None
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

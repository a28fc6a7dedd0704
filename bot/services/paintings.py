"""The catalog's paintings as the bot shows them: fetched onto the bot's own disk in the background (in
scale-out mode the workers' disks are not the bot's), drawn as contact sheets, each drawn sheet uploaded
once and reused by its upload id until the paintings on it change.

Platform-free: a sheet is PNG bytes or the id the platform gave its upload. An upload id means something
only to the platform that gave it, so each platform's uploads are remembered apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from dataclasses import dataclass

from engine.style_store import PaintingState, StyleStore

log = logging.getLogger(__name__)

PAGE_SIZE = 8  # the gallery under a photo: two rows of four tiles, one button each
PAGE_COLUMNS = 4
OVERVIEW_COLUMNS = 5


@dataclass(frozen=True)
class Sheet:
    """A contact sheet to show: ``picture`` is PNG bytes, or the upload id of the same sheet."""

    platform: str  # whose upload ``picture`` may be
    slot: str  # "all" or "page N": the place it is shown in
    key: tuple[object, ...]  # what it shows; another key is another picture
    ids: tuple[str, ...]
    picture: bytes | str


@dataclass(frozen=True)
class _Upload:
    key: tuple[object, ...]
    upload_id: str
    unique_id: str


class Paintings:
    def __init__(self, store: StyleStore, *, prefetch: bool) -> None:
        self.store = store
        self.prefetch = prefetch
        self._task: asyncio.Task[None] | None = None
        self._uploads: dict[tuple[str, str], _Upload] = {}  # the latest upload per (platform, slot)
        self._drawing: dict[tuple[str, str], asyncio.Lock] = {}

    def start(self) -> None:
        """Start the background fetch (``STYLES_PREFETCH``); returns at once, the bot does not wait."""
        if self.prefetch and self._task is None:
            self._task = asyncio.create_task(self.store.prefetch(), name="paintings-prefetch")
            self._task.add_done_callback(_log_failure)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def states(self) -> dict[str, PaintingState]:
        return self.store.states()

    def ready(self) -> tuple[str, ...]:
        """The ids of the paintings on disk now, in catalog order: what can be painted at once."""
        return tuple(i for i, state in self.states().items() if state is PaintingState.READY)

    @property
    def pages(self) -> int:
        return max(1, -(-len(self.store.catalog) // PAGE_SIZE))

    def page_ids(self, page: int) -> tuple[str, ...]:
        """The ids on gallery page ``page`` (0-based, taken modulo the page count)."""
        page %= self.pages
        return self.store.catalog.ids[page * PAGE_SIZE : (page + 1) * PAGE_SIZE]

    async def overview(self, *, platform: str) -> Sheet | None:
        """Every painting on disk, one sheet; None while there is none."""
        ready = self.ready()
        if not ready:
            return None
        return await self._sheet(platform, "all", ready, ready, columns=OVERVIEW_COLUMNS, numbered=False)

    async def page(self, page: int, *, platform: str) -> Sheet:
        """Gallery page ``page``, tiles numbered 1..8; paintings not on disk are grey tiles saying why."""
        ids = self.page_ids(page)
        states = self.states()
        key = tuple((i, states[i]) for i in ids)
        slot = f"page {page % self.pages}"
        return await self._sheet(platform, slot, ids, key, columns=PAGE_COLUMNS, numbered=True)

    def uploaded(self, sheet: Sheet, upload_id: str, unique_id: str) -> None:
        """The platform's id of the sheet just sent, to send it by id next time (on that platform only)."""
        self._uploads[sheet.platform, sheet.slot] = _Upload(sheet.key, upload_id, unique_id)

    def is_shown(self, sheet: Sheet, unique_id: str) -> bool:
        """Whether a message showing the upload ``unique_id`` shows this sheet already."""
        upload = self._uploads.get((sheet.platform, sheet.slot))
        return upload is not None and upload.key == sheet.key and upload.unique_id == unique_id

    async def _sheet(
        self,
        platform: str,
        slot: str,
        ids: tuple[str, ...],
        key: tuple[object, ...],
        *,
        columns: int,
        numbered: bool,
    ) -> Sheet:
        async with self._drawing.setdefault((platform, slot), asyncio.Lock()):  # one drawing at a time
            upload = self._uploads.get((platform, slot))
            if upload is not None and upload.key == key:
                return Sheet(platform, slot, key, ids, upload.upload_id)
            png = await asyncio.to_thread(self._draw, ids, columns, numbered)
            return Sheet(platform, slot, key, ids, png)

    def _draw(self, ids: tuple[str, ...], columns: int, numbered: bool) -> bytes:
        buffer = io.BytesIO()
        self.store.make_sheet(ids, columns=columns, numbered=numbered).save(buffer, "PNG", optimize=True)
        return buffer.getvalue()


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("the background fetch of the paintings failed", exc_info=task.exception())

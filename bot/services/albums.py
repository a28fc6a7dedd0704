"""Collecting the messages of one Telegram album, which arrive as separate updates."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class AlbumCollector(Generic[T]):
    """Waits until no new item of an album has come for ``wait`` seconds, then hands over all of them.

    Telegram sends an album's photos within a fraction of a second; waiting for a quiet moment instead of
    a fixed count means an album is processed once, whole, never as two jobs. ``add`` gives a future that
    is done once the album was handled (cancelled if it was dropped at close): the front end holds each
    item's update until then, so the platform is not told an album arrived before its job exists.
    """

    def __init__(self, wait: float, on_complete: Callable[[list[T]], Awaitable[None]]) -> None:
        self.wait = wait
        self.on_complete = on_complete
        self._items: dict[Hashable, list[T]] = {}
        self._timers: dict[Hashable, asyncio.Task[None]] = {}
        self._handled: dict[Hashable, asyncio.Future[None]] = {}

    def add(self, key: Hashable, item: T) -> asyncio.Future[None]:
        """Collect ``item``; the future is done once its album was handled."""
        self._items.setdefault(key, []).append(item)
        handled = self._handled.get(key)
        if handled is None:
            handled = self._handled[key] = asyncio.get_running_loop().create_future()
        if timer := self._timers.get(key):
            timer.cancel()
        self._timers[key] = asyncio.create_task(self._complete_later(key), name=f"album-{key}")
        return handled

    async def _complete_later(self, key: Hashable) -> None:
        await asyncio.sleep(self.wait)
        self._timers.pop(key, None)
        items = self._items.pop(key, [])
        handled = self._handled.pop(key, None)
        try:
            if items:
                await self.on_complete(items)
        except asyncio.CancelledError:  # stopped mid-way (close): not handled
            if handled is not None:
                handled.cancel()
            raise
        except Exception:  # a timer task has no caller to raise to
            log.exception("album %s could not be handled", key)
        if handled is not None and not handled.done():
            handled.set_result(None)

    async def close(self) -> None:
        """Drop albums still being collected (at shutdown)."""
        timers = list(self._timers.values())
        for timer in timers:
            timer.cancel()
        await asyncio.gather(*timers, return_exceptions=True)
        self._timers.clear()
        self._items.clear()
        for handled in self._handled.values():
            handled.cancel()  # not handled: the platform should send these items again
        self._handled.clear()

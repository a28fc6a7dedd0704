"""How often a job's status may change on screen, for every platform: at most one edit per interval (per
platform and chat kind: a private chat may see more than a busy group), the latest state always winning.

An update that comes too early waits, and a later one replaces it; a picture waiting to be shown is never
dropped by a newer text; ``now`` (the sketch: the point of it is speed) skips the wait. What an edit is and
how it fails is the platform's: the front end keeps a ``Slot`` per job and hands ``offer`` its ``flush``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar


class View(Protocol):
    """One state of a status; a dataclass with a ``preview`` picture (None: no new picture)."""

    @property
    def preview(self) -> bytes | None: ...


V = TypeVar("V", bound=View)


@dataclass(kw_only=True)
class Slot(Generic[V]):
    """One job's status as the throttle sees it (a front end's entry extends it)."""

    interval: float
    shown_at: float = float("-inf")  # when the last edit went out (the throttle's clock)
    pending: V | None = None  # the latest state not yet shown
    timer: asyncio.Task[None] | None = None  # the flush waiting for the interval to pass
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one edit of the status at a time


class StatusThrottle:
    def __init__(
        self,
        intervals: Mapping[str, float],
        *,
        default: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.intervals = dict(intervals)  # by chat kind ("private", "group"...); others get ``default``
        self.default = default
        self.clock = clock

    def interval(self, chat_type: str) -> float:
        return self.intervals.get(chat_type, self.default)

    async def offer(
        self, slot: Slot[V], view: V, *, now: bool, flush: Callable[[], Awaitable[None]], name: str
    ) -> None:
        """``view`` becomes the state to show: ``flush`` runs at once when the interval has passed (or
        ``now``), else once it has, showing whatever is latest by then (``take``). Never later than one
        interval, whatever the clock did meanwhile."""
        if slot.pending is not None and slot.pending.preview and not view.preview:
            view = _with_preview(view, slot.pending.preview)  # a newer text must not drop a picture
        slot.pending = view
        if now and slot.timer is not None:
            slot.timer.cancel()  # still asleep: the flush it would make happens here instead
            slot.timer = None
        if slot.timer is not None:
            return  # the scheduled flush will show the latest pending view
        delay = 0.0 if now else min(slot.shown_at + slot.interval - self.clock(), slot.interval)
        if delay <= 0:
            await flush()
        else:
            slot.timer = asyncio.create_task(self._flush_later(slot, delay, flush), name=name)

    def take(self, slot: Slot[V]) -> V | None:
        """The state to show now (a flush calls it under ``slot.lock``); None when there is nothing new."""
        view, slot.pending = slot.pending, None
        return view

    def shown(self, slot: Slot[V]) -> None:
        """An edit went out: the next waits an interval from now."""
        slot.shown_at = self.clock()

    @staticmethod
    def stop(slot: Slot[Any]) -> None:
        """No more flushes for this status (removed, or replaced by the result)."""
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None

    @staticmethod
    async def close(slots: Iterable[Slot[Any]]) -> None:
        """At shutdown: stop every waiting flush."""
        timers = [slot.timer for slot in slots if slot.timer is not None]
        for timer in timers:
            timer.cancel()
        await asyncio.gather(*timers, return_exceptions=True)

    @staticmethod
    async def _flush_later(slot: Slot[V], delay: float, flush: Callable[[], Awaitable[None]]) -> None:
        await asyncio.sleep(delay)
        slot.timer = None
        await flush()


def _with_preview(view: V, preview: bytes) -> V:
    return dataclasses.replace(view, preview=preview)  # type: ignore[type-var]  # views are dataclasses

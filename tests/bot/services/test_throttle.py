"""The one status throttle both front ends use: intervals per chat kind, the latest state winning, a
waiting picture kept, ``now`` past the wait."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from bot.services.throttle import Slot, StatusThrottle


@dataclass(frozen=True)
class View:
    text: str
    preview: bytes | None = None


async def test_one_edit_per_interval_the_latest_winning_with_its_picture() -> None:
    now = [100.0]
    throttle = StatusThrottle({"private": 3.0}, default=10.0, clock=lambda: now[0])
    assert [throttle.interval(kind) for kind in ("private", "group", "guild")] == [3.0, 10.0, 10.0]
    slot: Slot[View] = Slot(interval=0.05)
    shown: list[View] = []

    async def flush() -> None:
        async with slot.lock:
            view = throttle.take(slot)
            if view is not None:
                shown.append(view)
                throttle.shown(slot)

    await throttle.offer(slot, View("queued"), now=False, flush=flush, name="test")  # at once
    await throttle.offer(slot, View("10%", b"preview"), now=False, flush=flush, name="test")  # waits
    await throttle.offer(slot, View("20%"), now=False, flush=flush, name="test")  # replaces it
    assert shown == [View("queued")]
    await asyncio.sleep(0.1)
    assert shown == [View("queued"), View("20%", b"preview")]  # the text did not drop the picture
    await throttle.offer(slot, View("30%"), now=False, flush=flush, name="test")
    await throttle.offer(slot, View("sketch", b"sketch"), now=True, flush=flush, name="test")  # past the wait
    assert shown[-1] == View("sketch", b"sketch")
    assert slot.timer is None
    await throttle.offer(slot, View("40%"), now=False, flush=flush, name="test")
    throttle.stop(slot)  # the result came: nothing more is shown
    await asyncio.sleep(0.1)
    assert shown[-1] == View("sketch", b"sketch")

"""``SketchPool``'s turns, with a thread standing in for the sketch process (no networks, no spawn): a
request's timeout counts only its own time in the child, and a long line drops previews, never results."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import pytest

from engine.workers import sketcher
from engine.workers.sketcher import PREVIEW_BACKLOG, SketchBusyError, SketchPool, SketchRequest, SketchResult

pytestmark = pytest.mark.timeout(60)

REQUEST = SketchRequest("photo.jpg", (("style.jpg", 1.0),), side=64)
DONE = SketchResult(b"jpeg", 64, 48, 0.0)


class StandIn:
    """Counts the "children" spawned; each request holds the child for ``seconds``, or until ``gate``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, seconds: float = 0.0) -> None:
        self.spawned = 0
        self.seconds = seconds
        self.gate: threading.Event | None = None
        monkeypatch.setattr(SketchPool, "_spawn", lambda pool: self._spawn(pool))
        monkeypatch.setattr(sketcher, "_make", self._make)

    def _spawn(self, pool: SketchPool) -> None:
        self.spawned += 1
        pool._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)  # type: ignore[assignment]
        pool._warm = asyncio.get_running_loop().create_future()
        pool._warm.set_result(None)

    def _make(self, request: SketchRequest) -> SketchResult:
        if self.gate is not None:
            self.gate.wait(30)
        time.sleep(self.seconds)
        return DONE


async def test_a_burst_waits_its_turn_without_timing_out_the_child(monkeypatch: pytest.MonkeyPatch) -> None:
    """Twelve sketches of 0.05 s each against a 0.3 s timeout: together far past it, each well within."""
    stand_in = StandIn(monkeypatch, seconds=0.05)
    pool = SketchPool(None, timeout=0.3)
    try:
        results = await asyncio.gather(*(pool.make(REQUEST, job_id=n) for n in range(12)))
    finally:
        await pool.close()
    assert results == [DONE] * 12
    assert stand_in.spawned == 1  # the healthy child was never replaced


async def test_a_long_line_drops_previews_but_never_results(monkeypatch: pytest.MonkeyPatch) -> None:
    stand_in = StandIn(monkeypatch)
    stand_in.gate = threading.Event()
    pool = SketchPool(None, timeout=30)
    try:
        busy = asyncio.create_task(pool.make(REQUEST, job_id=0))  # in the child, held there by the gate
        waiting = [asyncio.create_task(pool.make(REQUEST, disposable=True, job_id=n)) for n in range(1, 9)]
        await asyncio.sleep(0.05)
        assert pool._waiting == PREVIEW_BACKLOG
        with pytest.raises(SketchBusyError):
            await pool.make(REQUEST, disposable=True, job_id=99)
        result = asyncio.create_task(pool.make(REQUEST, job_id=100))  # an instant job's: waits its turn
        await asyncio.sleep(0.05)
        assert not result.done()
        stand_in.gate.set()
        assert await asyncio.gather(busy, *waiting, result) == [DONE] * 10
    finally:
        stand_in.gate.set()
        await pool.close()
    assert stand_in.spawned == 1

"""The background fetch of the catalog, the deadline of one painting, and the locks that keep a painting
from being downloaded twice: against a local HTTP server that serves, fails and stalls."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
from aiohttp import web

from engine.errors import StyleUnavailableError
from engine.settings import EngineSettings
from engine.style_store import PaintingState, StyleStore, start_prefetch
from tests.engine.conftest import PaintingServer
from tests.engine.test_style_store import PAINTING, catalog_of, closed_port_url, good, leftovers

NOT_FOUND = (404, b"gone", "text/plain")


async def stall(request: web.Request) -> web.StreamResponse:
    """A server that accepts the request and never answers (ended when the client gives up)."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def slowly(seconds: float):
    async def reply(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(seconds)
        return web.Response(body=PAINTING, content_type="image/jpeg")

    return reply


async def settled(store: StyleStore) -> dict[str, PaintingState]:
    """The states once the background has nothing in flight (a pass is over)."""
    deadline = time.monotonic() + 10
    while PaintingState.COMING in store.states().values():
        assert time.monotonic() < deadline, store.states()
        await asyncio.sleep(0.02)
    return store.states()


async def until(condition) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


# The deadline of one painting (issue 12, item 4)


async def test_a_stalled_painting_fails_within_the_deadline(
    tmp_path: Path, painting_server: PaintingServer
) -> None:
    """Three stalled addresses used to take 3 x 3 x 30 s, longer than a worker may stay silent."""
    urls = [painting_server.plan(f"/stall{i}.jpg", stall) for i in range(3)]
    store = StyleStore(tmp_path / "styles", catalog_of(hay_wain=urls), backoff=0.0, deadline=0.5)
    with pytest.raises(StyleUnavailableError, match=r"could not download 'hay_wain' within 0\.5 s"):
        await asyncio.wait_for(store.fetch("hay_wain"), 10)  # without a deadline: still waiting at 10 s
    assert leftovers(store) == []  # no lock file left behind


def test_ensure_gives_the_same_clear_error(tmp_path: Path, painting_server: PaintingServer) -> None:
    store = StyleStore(
        tmp_path, catalog_of(hay_wain=[painting_server.plan("/s.jpg", stall)]), backoff=0.0, deadline=0.3
    )
    with pytest.raises(StyleUnavailableError, match=r"within 0\.3 s"):
        store.ensure("hay_wain")


def test_the_deadline_is_a_setting(tmp_path: Path) -> None:
    settings = EngineSettings(styles_dir=tmp_path, styles_fetch_seconds=7)
    assert StyleStore.from_settings(settings, catalog_of(a=["http://x/a.jpg"])).deadline == 7
    assert EngineSettings().styles_fetch_seconds < 180  # WORKER_STALL_SECONDS' default


# The background fetch


async def test_prefetch_fills_the_disk_and_marks_what_failed(
    tmp_path: Path, painting_server: PaintingServer, caplog: pytest.LogCaptureFixture
) -> None:
    catalog = catalog_of(
        first=[painting_server.plan("/first.jpg", good())],
        gone=[painting_server.plan("/gone.jpg", NOT_FOUND)],
        stalled=[painting_server.plan("/stalled.jpg", stall)],
        last=[painting_server.plan("/last.jpg", good())],
    )
    store = StyleStore(tmp_path, catalog, backoff=0.0, deadline=0.5)
    assert set(store.states().values()) == {PaintingState.MISSING}
    task = asyncio.create_task(store.prefetch(concurrency=2, retry_after=3600))
    try:
        await until(lambda: store.state("first") is PaintingState.READY)
        assert await settled(store) == {
            "first": PaintingState.READY,
            "gone": PaintingState.FAILED,
            "stalled": PaintingState.FAILED,
            "last": PaintingState.READY,
        }
        await until(lambda: any(r.levelno >= logging.WARNING for r in caplog.records))  # the pass's summary
        assert not task.done()  # it waits to try the failed ones again later
    finally:
        task.cancel()
    summary = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(summary) == 1, summary
    assert "2 of 4 paintings on disk" in summary[0]
    assert "gone: could not download 'gone': HTTP 404" in summary[0]
    assert "stalled: could not download 'stalled' within 0.5 s" in summary[0]


async def test_prefetch_tries_the_failed_ones_again_and_ends(
    tmp_path: Path, painting_server: PaintingServer
) -> None:
    url = painting_server.plan("/flaky.jpg", NOT_FOUND, good())
    store = StyleStore(tmp_path, catalog_of(flaky=[url]), backoff=0.0)
    await asyncio.wait_for(store.prefetch(retry_after=0.05), 10)
    assert store.state("flaky") is PaintingState.READY
    assert painting_server.hits["/flaky.jpg"] == 2


async def test_a_jobs_painting_jumps_the_line(tmp_path: Path, painting_server: PaintingServer) -> None:
    """Every background slot is held by a stalled server; the painting a job needs comes at once."""
    catalog = catalog_of(
        stuck1=[painting_server.plan("/stuck1.jpg", stall)],
        stuck2=[painting_server.plan("/stuck2.jpg", stall)],
        wanted=[painting_server.plan("/wanted.jpg", good())],
    )
    store = StyleStore(tmp_path, catalog, backoff=0.0, deadline=30)
    task = asyncio.create_task(store.prefetch(concurrency=2))
    try:
        await until(lambda: painting_server.hits["/stuck1.jpg"] and painting_server.hits["/stuck2.jpg"])
        assert store.state("wanted") is PaintingState.COMING  # queued behind the stalled ones
        path = await asyncio.wait_for(store.fetch("wanted"), 5)
        assert path.read_bytes() == PAINTING
        assert store.state("stuck1") is PaintingState.COMING  # the background is still stuck
    finally:
        task.cancel()
    assert painting_server.hits["/wanted.jpg"] == 1


async def test_processes_sharing_a_folder_download_a_painting_once(
    tmp_path: Path, painting_server: PaintingServer
) -> None:
    """Two stores share no in-process lock, as two processes would not: the lock file alone decides."""
    catalog = catalog_of(sunflowers=[painting_server.plan("/sf.jpg", slowly(0.3))])
    bot, worker = (StyleStore(tmp_path, catalog, deadline=10) for _ in range(2))
    paths = await asyncio.gather(bot.fetch("sunflowers"), worker.fetch("sunflowers"))
    assert paths == [tmp_path / "sunflowers.jpg"] * 2
    assert painting_server.hits["/sf.jpg"] == 1
    assert leftovers(bot) == ["sunflowers.jpg"]


def test_a_workers_background_thread_and_its_job_share_the_lock(
    tmp_path: Path, painting_server: PaintingServer
) -> None:
    catalog = catalog_of(shared=[painting_server.plan("/shared.jpg", slowly(0.5))])
    settings = EngineSettings(styles_dir=tmp_path, styles_prefetch=True, styles_fetch_seconds=10)
    background = start_prefetch(settings, catalog)
    assert background is not None
    try:
        deadline = time.monotonic() + 10
        while not painting_server.hits["/shared.jpg"]:  # the background's download is under way
            assert time.monotonic() < deadline
            time.sleep(0.01)
        job_store = StyleStore.from_settings(settings, catalog)  # as the engine of a worker has its own
        assert job_store.ensure("shared").read_bytes() == PAINTING
        assert background.join(10)  # everything on disk: the background ends by itself
    finally:
        background.stop()
    assert painting_server.hits["/shared.jpg"] == 1


def test_styles_prefetch_off_starts_nothing(tmp_path: Path) -> None:
    settings = EngineSettings(styles_dir=tmp_path, styles_prefetch="off")  # as STYLES_PREFETCH=off reads
    assert settings.styles_prefetch is False
    assert start_prefetch(settings, catalog_of(a=["http://127.0.0.1:9/a.jpg"])) is None


async def test_offline_is_one_line_and_stops_early(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    catalog = catalog_of(**{f"painting{i}": [closed_port_url(), closed_port_url()] for i in range(12)})
    store = StyleStore(tmp_path, catalog, backoff=0.0, retries=0)
    caplog.set_level(logging.DEBUG, logger="engine.style_store")
    task = asyncio.create_task(store.prefetch(concurrency=2, retry_after=3600))
    try:
        await until(lambda: any(r.levelno >= logging.INFO for r in caplog.records))  # the pass is over
    finally:
        task.cancel()
    assert set(store.states().values()) == {PaintingState.FAILED}
    assert sum(reason == "offline" for reason in store._failed.values()) >= 8  # not even tried
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert len(loud) == 1, loud
    assert "0 of 12 paintings on disk" in loud[0]
    assert "cannot reach the painting servers" in loud[0]

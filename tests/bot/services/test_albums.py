"""An album arrives as several updates and must become one call, once."""

from __future__ import annotations

import asyncio

from bot.services.albums import AlbumCollector


async def test_items_of_one_album_are_handed_over_together() -> None:
    done: list[list[int]] = []

    async def complete(items: list[int]) -> None:
        done.append(items)

    albums = AlbumCollector(0.05, complete)
    albums.add("a", 1)
    albums.add("b", 10)
    await asyncio.sleep(0.02)
    albums.add("a", 2)  # restarts album a's timer
    await asyncio.sleep(0.2)
    assert sorted(done) == [[1, 2], [10]]


async def test_a_failing_handler_is_logged_not_raised(caplog) -> None:
    async def boom(items: list[int]) -> None:
        raise RuntimeError("boom")

    albums = AlbumCollector(0.01, boom)
    albums.add("x", 1)
    await asyncio.sleep(0.1)
    assert "album x could not be handled" in caplog.text


async def test_close_drops_pending_albums() -> None:
    done: list[list[int]] = []

    async def complete(items: list[int]) -> None:
        done.append(items)

    albums = AlbumCollector(0.05, complete)
    albums.add("a", 1)
    await albums.close()
    await asyncio.sleep(0.1)
    assert done == []


async def test_each_item_hears_when_its_album_was_handled() -> None:
    """The front end holds an item's update until the album's job exists (nothing confirmed before)."""
    done: list[list[int]] = []
    gate = asyncio.Event()

    async def complete(items: list[int]) -> None:
        await gate.wait()
        done.append(items)

    albums = AlbumCollector(0.01, complete)
    first, second = albums.add("a", 1), albums.add("a", 2)
    assert first is second
    await asyncio.sleep(0.05)
    assert not first.done()  # handed over, still being handled
    gate.set()
    await asyncio.wait_for(first, 1)
    assert done == [[1, 2]]
    dropped = albums.add("b", 3)
    await albums.close()
    assert dropped.cancelled()  # dropped at close: the platform sends it again

"""The bot's sheets: drawn again only when the paintings on them change, reused by upload id otherwise."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from bot.services.paintings import PAGE_SIZE, Paintings
from engine.catalog import Catalog, Preset
from engine.style_store import StyleStore


def catalog(count: int) -> Catalog:
    return Catalog(
        Preset(f"p{i}", f"Painting {i}", "Test Painter", "1900", "", ("http://127.0.0.1:9/p.jpg",), "Tests.")
        for i in range(count)
    )


def add(directory: Path, style_id: str) -> None:
    Image.new("RGB", (80, 80), (200, 10, 10)).save(directory / f"{style_id}.png")


async def test_the_overview_is_redrawn_only_when_the_set_on_disk_changes(tmp_path: Path) -> None:
    paintings = Paintings(StyleStore(tmp_path, catalog(3)), prefetch=False)
    assert await paintings.overview(platform="telegram") is None  # nothing on disk yet
    add(tmp_path, "p0")
    first = await paintings.overview(platform="telegram")
    assert first is not None
    assert isinstance(first.picture, bytes)
    assert first.ids == ("p0",)
    paintings.uploaded(first, "file-1", "unique-1")
    again = await paintings.overview(platform="telegram")
    assert again is not None
    assert again.picture == "file-1"  # the same paintings: the upload is reused
    add(tmp_path, "p2")
    more = await paintings.overview(platform="telegram")
    assert more is not None
    assert isinstance(more.picture, bytes)
    assert more.ids == ("p0", "p2")


async def test_pages_wrap_around_and_know_what_they_show(tmp_path: Path) -> None:
    paintings = Paintings(StyleStore(tmp_path, catalog(PAGE_SIZE + 3)), prefetch=False)
    assert paintings.pages == 2
    assert paintings.page_ids(1) == tuple(f"p{i}" for i in range(PAGE_SIZE, PAGE_SIZE + 3))
    assert paintings.page_ids(2) == paintings.page_ids(0)
    page = await paintings.page(1, platform="telegram")
    paintings.uploaded(page, "file-2", "unique-2")
    assert paintings.is_shown(page, "unique-2")
    assert not paintings.is_shown(page, "unique-other")
    add(tmp_path, f"p{PAGE_SIZE}")  # a painting of page 2 arrived: the picture shown is out of date
    newer = await paintings.page(1, platform="telegram")
    assert isinstance(newer.picture, bytes)
    assert not paintings.is_shown(newer, "unique-2")
    add(tmp_path, "p0")  # another page's painting: page 2's upload is still good
    paintings.uploaded(newer, "file-3", "unique-3")
    assert (await paintings.page(1, platform="telegram")).picture == "file-3"


async def test_an_upload_id_is_reused_only_on_the_platform_that_gave_it(tmp_path: Path) -> None:
    """Telegram's file id of a sheet means nothing to Discord: Discord gets the PNG (issue 18, where
    Discord's /styles after Telegram's passed Telegram's id to BytesIO)."""
    paintings = Paintings(StyleStore(tmp_path, catalog(3)), prefetch=False)
    add(tmp_path, "p0")
    for sheet in (
        await paintings.overview(platform="telegram"),
        await paintings.page(0, platform="telegram"),
    ):
        assert sheet is not None
        paintings.uploaded(sheet, "telegram-file", "telegram-unique")
    telegram = await paintings.overview(platform="telegram")
    discord = await paintings.overview(platform="discord")
    assert telegram is not None
    assert telegram.picture == "telegram-file"
    assert discord is not None
    assert isinstance(discord.picture, bytes)
    assert isinstance((await paintings.page(0, platform="discord")).picture, bytes)
    assert not paintings.is_shown(await paintings.page(0, platform="discord"), "telegram-unique")

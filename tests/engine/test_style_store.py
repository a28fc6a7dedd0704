"""StyleStore against a local HTTP server: downloads, fallbacks, retries, refusals, the disk, the sheet."""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import socket
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from PIL import Image

from engine.catalog import Catalog, Preset, load_catalog
from engine.errors import StyleUnavailableError, UnknownStyleError
from engine.style_store import DEFAULT_USER_AGENT, StyleStore
from tests.engine.conftest import PaintingServer
from tests.fakes import images

SHARED_STYLES = Path(__file__).resolve().parents[2].parent / "shared" / "images" / "styles"
PAINTING = images.pattern(160, 120)  # a real JPEG, big enough to pass the size check
HTML = (200, b"<html><body>Wikimedia error</body></html>", "text/html")


def good(data: bytes = PAINTING, content_type: str = "image/jpeg") -> tuple[int, bytes, str]:
    return 200, data, content_type


def catalog_of(**urls: list[str]) -> Catalog:
    """A catalog whose presets (named by the keywords) download from the given addresses."""
    return Catalog(
        Preset(
            id=preset_id,
            title=preset_id.replace("_", " ").title(),
            artist="Test Painter",
            year="1900",
            commons_file="",
            urls=tuple(addresses),
            licence="Made for tests.",
        )
        for preset_id, addresses in urls.items()
    )


def make_store(tmp_path: Path, catalog: Catalog, **options) -> StyleStore:
    return StyleStore(tmp_path / "styles", catalog, **{"backoff": 0.0, "timeout": 5.0, **options})


def closed_port_url() -> str:
    """An address on 127.0.0.1 where nothing listens: a connection there is refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/painting.jpg"


def leftovers(store: StyleStore) -> list[str]:
    return sorted(p.name for p in store.styles_dir.iterdir()) if store.styles_dir.exists() else []


# Downloads


async def test_downloads_a_jpeg_once_and_keeps_it(tmp_path: Path, painting_server: PaintingServer) -> None:
    store = make_store(tmp_path, catalog_of(starry_night=[painting_server.plan("/sn.jpg", good())]))
    path = await store.fetch("starry_night")
    assert path == store.styles_dir / "starry_night.jpg"
    assert path.read_bytes() == PAINTING
    assert oct(path.stat().st_mode & 0o777) == "0o644"
    assert store.local_path("starry_night") == path
    assert await store.fetch("Starry Night") == path  # on disk now: no second request
    assert painting_server.hits["/sn.jpg"] == 1
    assert painting_server.user_agents == [DEFAULT_USER_AGENT]
    assert leftovers(store) == ["starry_night.jpg"]


async def test_png_is_kept_as_png_and_other_formats_become_jpeg(
    tmp_path: Path, painting_server: PaintingServer
) -> None:
    store = make_store(
        tmp_path,
        catalog_of(
            as_png=[painting_server.plan("/a.png", good(images.png(100, 80), "image/png"))],
            as_webp=[painting_server.plan("/b.webp", good(images.webp(100, 80), "image/webp"))],
        ),
    )
    png_path = await store.fetch("as_png")
    webp_path = await store.fetch("as_webp")
    assert png_path.name == "as_png.png"
    assert png_path.read_bytes() == images.png(100, 80)
    assert webp_path.name == "as_webp.jpg"
    with Image.open(webp_path) as image:
        assert (image.format, image.size) == ("JPEG", (100, 80))


async def test_falls_back_to_the_next_address_on_404(tmp_path: Path, painting_server: PaintingServer) -> None:
    urls = [painting_server.url("/missing.jpg"), painting_server.plan("/fallback.jpg", good())]
    store = make_store(tmp_path, catalog_of(great_wave=urls))
    path = await store.fetch("great_wave")
    assert path.read_bytes() == PAINTING
    assert painting_server.hits == {"/missing.jpg": 1, "/fallback.jpg": 1}  # a 4xx is not retried


async def test_retries_a_503(tmp_path: Path, painting_server: PaintingServer) -> None:
    url = painting_server.plan("/busy.jpg", (503, b"busy", "text/plain"), good())
    store = make_store(tmp_path, catalog_of(shipwreck=[url]))
    assert (await store.fetch("shipwreck")).read_bytes() == PAINTING
    assert painting_server.hits["/busy.jpg"] == 2


async def test_gives_up_after_the_retries(tmp_path: Path, painting_server: PaintingServer) -> None:
    url = painting_server.plan("/down.jpg", (429, b"slow down", "text/plain"), (503, b"", "text/plain"))
    store = make_store(tmp_path, catalog_of(shipwreck=[url]), retries=2)
    with pytest.raises(StyleUnavailableError) as caught:
        await store.fetch("shipwreck")
    assert str(caught.value) == "could not download 'shipwreck': HTTP 503 (tried 1 address)"
    assert painting_server.hits["/down.jpg"] == 3


async def test_html_is_not_a_painting(tmp_path: Path, painting_server: PaintingServer) -> None:
    store = make_store(tmp_path, catalog_of(udnie=[painting_server.plan("/udnie.jpg", HTML)]))
    with pytest.raises(StyleUnavailableError, match=r"not an image \(text/html\)"):
        await store.fetch("udnie")
    assert leftovers(store) == []


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (images.jpeg(20, 20), "unusable image size 20x20"),
        (images.pattern(160, 120)[:400], "not an image"),  # a truncated JPEG
    ],
)
async def test_unusable_images_are_refused(
    tmp_path: Path, painting_server: PaintingServer, data: bytes, reason: str
) -> None:
    store = make_store(tmp_path, catalog_of(udnie=[painting_server.plan("/udnie.jpg", good(data))]))
    with pytest.raises(StyleUnavailableError, match=reason):
        await store.fetch("udnie")
    assert leftovers(store) == []


async def chunked_megabyte(request: web.Request) -> web.StreamResponse:
    """A streamed reply without Content-Length: only counting the bytes can stop it."""
    response = web.StreamResponse(headers={"Content-Type": "image/jpeg"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for _ in range(16):
        await response.write(b"\xff" * 65536)
    return response


@pytest.mark.parametrize("reply", [good(b"\xff" * 1_000_000), chunked_megabyte], ids=["length", "chunked"])
async def test_oversized_download_is_abandoned(
    tmp_path: Path, painting_server: PaintingServer, reply
) -> None:
    store = make_store(
        tmp_path, catalog_of(the_kiss=[painting_server.plan("/big.jpg", reply)]), max_bytes=100_000
    )
    with pytest.raises(StyleUnavailableError, match=r"larger than 0.1 MB"):
        await store.fetch("the_kiss")
    assert leftovers(store) == []


async def test_network_down(tmp_path: Path) -> None:
    store = make_store(tmp_path, catalog_of(mona_lisa=[closed_port_url(), closed_port_url()]), retries=1)
    with pytest.raises(StyleUnavailableError) as caught:
        await store.fetch("mona_lisa")
    assert str(caught.value) == "could not download 'mona_lisa': network unreachable (tried 2 addresses)"
    assert caught.value.__cause__ is None  # no raw aiohttp error rides along
    assert leftovers(store) == []


async def test_timeout(tmp_path: Path, painting_server: PaintingServer) -> None:
    async def stall(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(5)
        return web.Response(body=PAINTING)

    store = make_store(
        tmp_path, catalog_of(hay_wain=[painting_server.plan("/slow.jpg", stall)]), timeout=0.2, retries=0
    )
    with pytest.raises(StyleUnavailableError, match=r"timed out after 0.2 s \(tried 1 address\)"):
        await store.fetch("hay_wain")


async def test_reasons_of_every_address_are_reported(tmp_path: Path, painting_server: PaintingServer) -> None:
    urls = [painting_server.url("/gone.jpg"), painting_server.plan("/page.jpg", HTML), closed_port_url()]
    store = make_store(tmp_path, catalog_of(wanderer=urls), retries=0)
    with pytest.raises(StyleUnavailableError) as caught:
        await store.fetch("wanderer")
    reasons = "HTTP 404; not an image (text/html); network unreachable"
    assert str(caught.value) == f"could not download 'wanderer': {reasons} (tried 3 addresses)"


async def test_failed_write_leaves_nothing_behind(
    tmp_path: Path, painting_server: PaintingServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_replace(source: str, target: str) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    store = make_store(tmp_path, catalog_of(bedroom=[painting_server.plan("/bedroom.jpg", good())]))
    with pytest.raises(StyleUnavailableError, match=r"could not save 'bedroom' .*No space left on device"):
        await store.fetch("bedroom")
    assert leftovers(store) == []


async def test_concurrent_fetches_of_one_id_download_once(
    tmp_path: Path, painting_server: PaintingServer
) -> None:
    async def slow_painting(request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.2)
        return web.Response(body=PAINTING, content_type="image/jpeg")

    store = make_store(tmp_path, catalog_of(sunflowers=[painting_server.plan("/sf.jpg", slow_painting)]))
    paths = await asyncio.gather(*(store.fetch("sunflowers") for _ in range(5)))
    assert set(paths) == {store.styles_dir / "sunflowers.jpg"}
    assert painting_server.hits["/sf.jpg"] == 1


async def test_uses_the_callers_session(tmp_path: Path, painting_server: PaintingServer) -> None:
    store = make_store(tmp_path, catalog_of(udnie=[painting_server.plan("/u.jpg", good())]))
    async with aiohttp.ClientSession() as session:
        assert (await store.fetch("udnie", session)).is_file()
    assert painting_server.user_agents == [DEFAULT_USER_AGENT]


async def test_unknown_id(tmp_path: Path) -> None:
    store = make_store(tmp_path, catalog_of(udnie=["https://example.invalid/u.jpg"]))
    with pytest.raises(UnknownStyleError) as caught:
        await store.fetch("udnei")
    assert caught.value.suggestions == ("udnie",)


# Files already on disk


@pytest.mark.parametrize("name", ["udnie.jpg", "udnie.jpeg", "udnie.png"])
def test_a_local_file_is_used_without_any_request(
    tmp_path: Path, painting_server: PaintingServer, name: str
) -> None:
    store = make_store(tmp_path, catalog_of(udnie=[painting_server.plan("/u.jpg", good())]))
    store.styles_dir.mkdir()
    (store.styles_dir / name).write_bytes(images.jpeg(100, 100))
    assert asyncio.run(store.fetch("udnie")) == store.styles_dir / name
    assert store.ensure("udnie") == store.styles_dir / name
    assert painting_server.hits == {}


def test_local_path_never_leaves_the_directory(tmp_path: Path) -> None:
    (tmp_path / "secret.jpg").write_bytes(b"x")
    store = StyleStore(tmp_path / "styles", catalog_of(udnie=["https://example.invalid/u.jpg"]))
    assert store.local_path("../secret") is None
    assert store.local_path("udnie") is None


def test_shared_paintings_are_found_offline() -> None:
    if not SHARED_STYLES.is_dir():
        pytest.skip("../shared/images/styles is not here")
    store = StyleStore(SHARED_STYLES, load_catalog(), timeout=0.001, retries=0)  # any download would fail
    for style_id in ("starry_night", "great_wave", "shipwreck", "udnie"):
        assert store.ensure(style_id) == SHARED_STYLES / f"{style_id}.jpg"


# fetch_many and ensure


async def test_fetch_many_reports_each_result_and_progress(
    tmp_path: Path, painting_server: PaintingServer
) -> None:
    store = make_store(
        tmp_path,
        catalog_of(
            first=[painting_server.plan("/1.jpg", good())],
            broken=[painting_server.url("/nothing.jpg")],
            third=[painting_server.plan("/3.png", good(images.png(90, 90), "image/png"))],
        ),
    )
    calls: list[tuple[int, int, str]] = []
    results = await store.fetch_many(progress=lambda *call: calls.append(call))
    assert list(results) == ["first", "broken", "third"]
    assert results["first"] == store.styles_dir / "first.jpg"
    assert results["third"] == store.styles_dir / "third.png"
    assert isinstance(results["broken"], StyleUnavailableError)
    assert sorted(calls) == sorted([(1, 3, calls[0][2]), (2, 3, calls[1][2]), (3, 3, calls[2][2])])
    assert {call[2] for call in calls} == {"first", "broken", "third"}


async def test_fetch_many_checks_every_id_first(tmp_path: Path, painting_server: PaintingServer) -> None:
    store = make_store(tmp_path, catalog_of(first=[painting_server.plan("/1.jpg", good())]))
    with pytest.raises(UnknownStyleError):
        await store.fetch_many(["first", "nope"])
    assert painting_server.hits == {}
    assert await store.fetch_many(["first", "First"]) == {"first": store.styles_dir / "first.jpg"}


def test_ensure_downloads_from_synchronous_code(tmp_path: Path, painting_server: PaintingServer) -> None:
    store = make_store(tmp_path, catalog_of(the_scream=[painting_server.plan("/s.jpg", good())]))
    assert store.ensure("the_scream").read_bytes() == PAINTING
    assert store.ensure("the_scream") == store.styles_dir / "the_scream.jpg"
    assert painting_server.hits["/s.jpg"] == 1


async def test_ensure_refuses_to_block_an_event_loop(tmp_path: Path) -> None:
    store = make_store(tmp_path, catalog_of(udnie=["https://example.invalid/u.jpg"]))
    with pytest.raises(RuntimeError, match=r"await StyleStore\.fetch"):
        store.ensure("udnie")


# The contact sheet

RED, BLUE, PLACEHOLDER = (200, 40, 40), (40, 60, 200), (214, 214, 210)


def colour_at(sheet: Image.Image, index: int, columns: int, rows: int, thumb: int, *, middle: bool):
    """The colour in the index-th thumbnail box: at its middle, or just inside its top-left corner."""
    cell_w, cell_h, pad = sheet.width // columns, sheet.height // rows, thumb // 10
    offset = thumb // 2 if middle else 3
    return sheet.getpixel(
        ((index % columns) * cell_w + pad + offset, (index // columns) * cell_h + pad + offset)
    )


def near(colour: tuple[int, ...], expected: tuple[int, int, int]) -> bool:
    return all(abs(a - b) <= 12 for a, b in zip(colour, expected, strict=True))


def test_sheet_draws_present_paintings_and_placeholders(tmp_path: Path) -> None:
    addresses = ["https://example.invalid/painting.jpg"]
    store = StyleStore(tmp_path, catalog_of(red=addresses, blue=addresses, gone=addresses, damaged=addresses))
    (tmp_path / "red.jpg").write_bytes(images.jpeg(300, 120, RED))  # wide: centred, letterboxed
    (tmp_path / "blue.png").write_bytes(images.png(80, 200, BLUE))  # tall
    (tmp_path / "damaged.jpg").write_bytes(b"not a jpeg at all")
    sheet = store.make_sheet(columns=3, thumb=100)
    assert sheet.mode == "RGB"
    assert sheet.width == 3 * 120
    assert sheet.height > 2 * 120  # two rows, with room for the captions
    assert near(colour_at(sheet, 0, 3, 2, 100, middle=True), RED)
    assert not near(colour_at(sheet, 0, 3, 2, 100, middle=False), RED)  # aspect kept: no red in the corner
    assert near(colour_at(sheet, 1, 3, 2, 100, middle=True), BLUE)
    assert near(colour_at(sheet, 2, 3, 2, 100, middle=False), PLACEHOLDER)  # not on disk
    assert near(colour_at(sheet, 3, 3, 2, 100, middle=False), PLACEHOLDER)  # unreadable


def test_sheet_of_chosen_ids_and_png_output(tmp_path: Path) -> None:
    addresses = ["https://example.invalid/painting.jpg"]
    store = StyleStore(tmp_path, catalog_of(red=addresses, blue=addresses))
    (tmp_path / "red.jpg").write_bytes(images.jpeg(100, 100, RED))
    sheet = store.make_sheet(["red"], columns=5, thumb=60)
    assert sheet.width == 60 + 2 * 6  # one preset: one column, whatever was asked
    buffer = io.BytesIO()
    sheet.save(buffer, "PNG")
    assert buffer.getvalue().startswith(b"\x89PNG")
    with pytest.raises(UnknownStyleError):
        store.make_sheet(["green"])
    with pytest.raises(ValueError, match="at least one preset"):
        store.make_sheet([])


def test_sheet_of_the_bundled_catalog_with_the_shared_paintings(tmp_path: Path) -> None:
    if not SHARED_STYLES.is_dir():
        pytest.skip("../shared/images/styles is not here")
    for name in ("starry_night.jpg", "udnie.jpg"):
        shutil.copy(SHARED_STYLES / name, tmp_path / name)
    catalog = load_catalog()
    sheet = StyleStore(tmp_path, catalog).make_sheet()
    rows = -(-len(catalog) // 5)
    assert sheet.width == 5 * 240
    assert not near(colour_at(sheet, 0, 5, rows, 200, middle=True), PLACEHOLDER)  # starry_night
    assert near(colour_at(sheet, 2, 5, rows, 200, middle=False), PLACEHOLDER)  # the_scream is not here

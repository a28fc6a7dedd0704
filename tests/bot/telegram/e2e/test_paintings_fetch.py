"""A fresh install: the paintings arrive in the background while the bot already answers (issue 14), and a
painting that cannot be fetched fails its job clearly instead of stalling the worker (issue 12, item 4).

The paintings come from a local HTTP server that serves some, fails one and stalls others; the catalog points
there (a file, read by the bot and by the worker processes).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.context import Services
from engine.catalog import load_catalog
from engine.style_store import PaintingState
from tests.bot.telegram.e2e.conftest import StartBot
from tests.fakes import images
from tests.fakes.fetching_engine import CATALOG_ENV
from tests.fakes.telegram_api import FakeTelegram

FETCHING_ENGINE = "tests.fakes.fetching_engine:fetching_engine"


class Paintings:
    """The painting server: ``/<id>.jpg`` answers as its id says (``stalled*`` never, ``broken`` 404,
    ``gate*`` once ``release`` is set, anything else at once)."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.release = asyncio.Event()
        self.server: TestServer | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        self.hits[name] += 1
        if name.startswith("stalled"):
            await asyncio.Event().wait()
        if name == "broken":
            return web.Response(status=404, text="not found")
        if name.startswith("gate"):
            await self.release.wait()
        color = (sum(map(ord, name)) % 256, 120, 200)
        return web.Response(body=images.jpeg(160, 120, color), content_type="image/jpeg")

    def catalog(self, path: Path, ids: list[str]) -> Path:
        assert self.server is not None
        entries = [
            f'[[preset]]\nid = "{i}"\ntitle = "{i.replace("_", " ").title()}"\nartist = "Test Painter"\n'
            f'year = "1900"\nurl = "{self.server.make_url(f"/{i}.jpg")}"\nlicence = "Made for tests."\n'
            for i in ids
        ]
        path.write_text("\n".join(entries))
        return path


@pytest.fixture
async def paintings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Callable[[list[str]], Paintings]]:
    served = Paintings()
    app = web.Application()
    app.router.add_get("/{name}.jpg", served.handle)
    served.server = TestServer(app, host="127.0.0.1")
    await served.server.start_server()

    def with_catalog(ids: list[str]) -> Paintings:
        path = served.catalog(tmp_path / "catalog.toml", ids)
        monkeypatch.setattr("bot.runtime.load_catalog", lambda: load_catalog(path))  # the bot
        monkeypatch.setenv(CATALOG_ENV, str(path))  # the worker processes it spawns
        return served

    try:
        yield with_catalog
    finally:
        served.release.set()
        await served.server.close()


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def state(services: Services, style_id: str) -> PaintingState:
    return services.paintings.store.state(style_id)


async def test_the_sheet_fills_in_as_the_paintings_arrive(
    tg: FakeTelegram, start_bot: StartBot, settings_for, paintings
) -> None:
    server = paintings(["early", "gate_a", "gate_b", "stalled", "broken"])
    settings = settings_for(styles_prefetch=True, styles_fetch_seconds=3)
    assert not list(settings.styles_dir.iterdir())  # a fresh install
    async with start_bot(settings) as services:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_text(alice, chat, "/start")  # answered while paintings are still on their way
        assert "Hi Alice!" in (await tg.wait_for("sendMessage")).params["text"]
        assert state(services, "gate_a") is PaintingState.COMING

        await until(lambda: state(services, "early") is PaintingState.READY)
        await tg.send_text(alice, chat, "/styles")
        first = await tg.wait_for("sendPhoto")
        assert first.ok
        assert "more paintings are on the way" in first.params["caption"]
        listing = (await tg.wait_for("sendMessage")).params["text"]
        assert "<code>gate_a</code>: Gate A, Test Painter (1900) <i>(downloading)</i>" in listing
        assert "<code>early</code>: Early, Test Painter (1900)\n" in listing

        server.release.set()
        await until(lambda: state(services, "gate_b") is PaintingState.READY)
        await until(lambda: state(services, "stalled") is PaintingState.FAILED)  # after its 3 s
        assert state(services, "broken") is PaintingState.FAILED
        await tg.send_text(alice, chat, "/styles")
        second = await tg.wait_for("sendPhoto")
        assert not isinstance(second.params["photo"], str)  # more paintings: a new sheet, uploaded
        assert "on the way" not in second.params["caption"]
        assert tg.downloaded(second.result["photo"][-1]["file_id"]) != tg.downloaded(
            first.result["photo"][-1]["file_id"]
        )
        listing = (await tg.wait_for("sendMessage")).params["text"]
        failed = "Test Painter (1900) <i>(can't be downloaded right now)</i>"
        assert f"<code>stalled</code>: Stalled, {failed}" in listing
        assert f"<code>broken</code>: Broken, {failed}" in listing

        await tg.send_text(alice, chat, "/styles")
        third = await tg.wait_for("sendPhoto")
        assert third.params["photo"] == second.result["photo"][-1]["file_id"]  # nothing new: not redrawn

        await tg.send_photo(alice, chat, images.pattern(64, 48))  # the gallery shows what failed
        gallery = await tg.wait_for("sendPhoto", lambda c: "Pick" in (c.params.get("caption") or ""))
        assert gallery.ok
    assert server.hits["early"] == server.hits["gate_a"] == 1  # each painting downloaded once


async def test_a_job_for_a_painting_not_fetched_yet_does_not_wait(
    tg: FakeTelegram, start_bot: StartBot, settings_for, paintings
) -> None:
    """Every slot of the bot's background fetch is held by a server that never answers."""
    server = paintings(["stalled1", "stalled2", "stalled3", "stalled4", "wanted"])
    settings = settings_for(styles_prefetch=True, styles_fetch_seconds=60)
    async with start_bot(settings, engine=FETCHING_ENGINE) as services:
        await until(lambda: sum(server.hits[f"stalled{i}"] for i in range(1, 5)) == 4)
        assert state(services, "wanted") is PaintingState.COMING  # queued behind the stalled ones
        alice = tg.user("Alice")
        await tg.send_photo(alice, tg.private_chat(alice), images.pattern(64, 48), caption="wanted")
        result = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert "Wanted" in result.params["caption"]
        assert state(services, "stalled1") is PaintingState.COMING  # the background is still stuck
    assert server.hits["wanted"] == 1  # the worker fetched it; the background found it on disk
    assert (settings.styles_dir / "wanted.jpg").is_file()


async def test_a_painting_that_stalls_fails_the_job_clearly(
    tg: FakeTelegram, start_bot: StartBot, settings_for, paintings
) -> None:
    """The fetch must end before the worker stall timeout: a stalled worker is killed and retried, and the
    user hears "my painter kept stopping" instead of "I couldn't download that painting"."""
    paintings(["stalled"])
    settings = settings_for(styles_fetch_seconds=1)
    async with start_bot(settings, engine=FETCHING_ENGINE, stall_seconds=3):
        alice = tg.user("Alice")
        await tg.send_photo(alice, tg.private_chat(alice), images.pattern(64, 48), caption="stalled")
        said = await tg.wait_for(
            "editMessageText", lambda c: "Sorry" in c.params["text"] or "couldn't" in c.params["text"]
        )
        assert "I couldn't download that painting just now" in said.params["text"]

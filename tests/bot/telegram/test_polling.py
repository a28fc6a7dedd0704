"""``Poller`` against a stand-in for Telegram: an update is confirmed (the next getUpdates' offset moves past
it) only once its handler finished, updates already in hand are not handled twice, and a stop lets the
handlers finish before the last confirmation."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from telegram import Update
from telegram.ext import Application

from bot.telegram import polling
from bot.telegram.polling import Poller


class Telegram:
    """getUpdates over a list of pending update ids, forgetting those below the offset, as Telegram does."""

    def __init__(self, *ids: int) -> None:
        self.pending = list(ids)
        self.offsets: list[int | None] = []
        self.polled = asyncio.Event()

    async def delete_webhook(self, **_: Any) -> bool:
        return True

    async def get_updates(self, offset: int | None = None, **_: Any) -> list[Update]:
        self.offsets.append(offset)
        self.polled.set()
        if offset is not None:
            self.pending = [uid for uid in self.pending if uid >= offset]
        if not self.pending:
            await asyncio.sleep(0.01)
        return [Update(uid) for uid in self.pending]


class Processor:
    async def process_update(self, update: object, coroutine: Any) -> None:
        await coroutine


class Handlers:
    """Each update's handler waits for its own gate; counts how often each update was handled."""

    def __init__(self) -> None:
        self.gates: dict[int, asyncio.Event] = {}
        self.handled: dict[int, int] = {}

    def gate(self, uid: int) -> asyncio.Event:
        return self.gates.setdefault(uid, asyncio.Event())

    async def process_update(self, update: Update) -> None:
        self.handled[update.update_id] = self.handled.get(update.update_id, 0) + 1
        await self.gate(update.update_id).wait()


async def polls(telegram: Telegram, count: int) -> None:
    for _ in range(count):
        telegram.polled.clear()
        await asyncio.wait_for(telegram.polled.wait(), 5)


async def test_an_update_is_confirmed_only_once_its_handler_finished(monkeypatch: Any) -> None:
    monkeypatch.setattr(polling, "REPOLL_PAUSE", 0.01)
    telegram, handlers = Telegram(10, 11), Handlers()
    app = SimpleNamespace(bot=telegram, update_processor=Processor(), process_update=handlers.process_update)
    poller = Poller(cast(Application, app), ["message"], timeout=0)
    await poller.start()
    handlers.gate(11).set()  # the later one finishes at once; 10 is slow (a download)
    await polls(telegram, 5)
    assert handlers.handled == {10: 1, 11: 1}  # each handled once, though both came with every poll
    assert set(telegram.offsets[2:]) == {10}  # 10 is not confirmed, so neither is 11
    handlers.gate(10).set()
    await polls(telegram, 3)
    assert telegram.offsets[-1] == 12  # both confirmed now
    assert telegram.pending == []
    await poller.stop()


async def test_a_stop_lets_handlers_finish_then_confirms(monkeypatch: Any) -> None:
    monkeypatch.setattr(polling, "REPOLL_PAUSE", 0.01)
    telegram, handlers = Telegram(20), Handlers()
    app = SimpleNamespace(bot=telegram, update_processor=Processor(), process_update=handlers.process_update)
    poller = Poller(cast(Application, app), ["message"], timeout=0)
    await poller.start()
    await polls(telegram, 2)
    stopping = asyncio.create_task(poller.stop())
    await asyncio.sleep(0.05)
    assert not stopping.done()  # waits for the handler under way
    handlers.gate(20).set()
    await stopping
    assert telegram.offsets[-1] == 21


async def test_a_handler_cut_short_at_the_stop_is_not_confirmed(monkeypatch: Any) -> None:
    monkeypatch.setattr(polling, "REPOLL_PAUSE", 0.01)
    monkeypatch.setattr(polling, "STOP_WAIT", 0.05)
    telegram, handlers = Telegram(30, 31), Handlers()
    app = SimpleNamespace(bot=telegram, update_processor=Processor(), process_update=handlers.process_update)
    poller = Poller(cast(Application, app), ["message"], timeout=0)
    await poller.start()
    handlers.gate(31).set()
    await polls(telegram, 3)
    await poller.stop()  # 30 never finishes
    assert telegram.offsets[-1] == 30
    assert telegram.pending == [30, 31]  # Telegram sends both again to the next start

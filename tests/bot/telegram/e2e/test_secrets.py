"""The bot's token never reaches a log, whatever the level and whoever configured logging."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from tests.bot.telegram.e2e.conftest import StartBot
from tests.fakes.telegram_api import FakeTelegram

TOKEN = "7512345678:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    """A stand-in that knows a token shaped like a real one (the shared fixture's is ``123:ABC``)."""
    async with FakeTelegram(TOKEN, max_poll_timeout=0.5, wait_timeout=15.0) as server:
        yield server


async def test_no_token_in_debug_logs_of_a_running_bot(
    tg: FakeTelegram, start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    """No ``python -m bot`` here: the application is built the way tests and bench/load.py build it, with
    httpx and PTB logging every request at DEBUG, and a failing download that logs a URL in a traceback."""
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "telegram", "bot"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    async with start_bot():
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_text(alice, chat, "/start")
        await tg.wait_for("sendMessage")
        logging.getLogger("anything").error("a URL in a message: %s", f"{tg.root_url}/bot{TOKEN}/getMe")
        try:
            raise RuntimeError(f"failed: {tg.root_url}/file/bot{TOKEN}/photos/1.jpg")
        except RuntimeError:
            logging.getLogger("anything").exception("and in a traceback")
    assert any("/getUpdates" in r.getMessage() for r in caplog.records)  # request URLs were logged
    assert TOKEN not in caplog.text
    assert TOKEN.split(":")[1] not in caplog.text  # not even the secret half
    assert all(TOKEN not in r.getMessage() for r in caplog.records)
    assert "bot<token>/getMe" in caplog.text

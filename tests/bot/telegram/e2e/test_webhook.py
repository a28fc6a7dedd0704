"""Webhook mode end to end: the stand-in posts updates to the bot's own server, as Telegram does once
setWebhook is called; a forged or unsigned post is refused before any handler; polling takes over again
by deleting the webhook; the generated secret survives restarts."""

from __future__ import annotations

import logging
import socket
import stat
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import numpy as np
import pytest
from telegram import Update
from telegram.error import BadRequest, NetworkError
from telegram.ext import ContextTypes, TypeHandler

from bot import retrying
from bot.config import Settings
from bot.telegram.app import ALLOWED_UPDATES, build_application, running
from bot.telegram.webhook import SECRET_FILE
from tests.bot.telegram.e2e.conftest import StartBot, fake_queue
from tests.bot.telegram.e2e.test_paint import negative_of, painted
from tests.fakes import images
from tests.fakes.telegram_webhook import WEBHOOK_ACTIVE, WebhookTelegram


@pytest.fixture
async def tg() -> AsyncIterator[WebhookTelegram]:
    """The stand-in with Telegram's webhook side (replaces the polling-only one of conftest)."""
    async with WebhookTelegram(max_poll_timeout=0.5, wait_timeout=15.0, retry_delay=0.1) as server:
        yield server


async def webhook_info(tg: WebhookTelegram) -> dict[str, Any]:
    """getWebhookInfo, as an operator would ask it."""
    url = f"{tg.root_url}/bot{tg.token}/getWebhookInfo"
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return dict((await response.json())["result"])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def webhook_settings(settings_for: Callable[..., Settings]) -> Callable[..., Settings]:
    """Settings for webhook mode on a free local port; the same data dir every call (one test's restarts)."""
    port = free_port()

    def make(**overrides: object) -> Settings:
        return settings_for(
            telegram_webhook_url=f"http://127.0.0.1:{port}/telegram",
            telegram_webhook_port=port,
            **overrides,
        )

    return make


async def test_a_photo_through_the_webhook_is_painted_and_delivered(
    tg: WebhookTelegram, start_bot: StartBot, webhook_settings: Callable[..., Settings]
) -> None:
    settings = webhook_settings(telegram_webhook_max_connections=7)
    async with start_bot(settings):
        registered = await tg.wait_for("setWebhook")
        assert registered.ok
        assert registered.params["url"] == settings.telegram_webhook_url
        assert registered.params["allowed_updates"] == list(ALLOWED_UPDATES)  # the list polling asks for
        assert int(registered.params["max_connections"]) == 7  # a form field: the fake keeps it a string
        assert registered.params.get("drop_pending_updates") in (None, False)  # waiting updates are kept
        secret = registered.params["secret_token"]
        alice = tg.user("Alice")
        source = await tg.send_photo(
            alice, tg.private_chat(alice), images.pattern(64, 48), caption="/style starry_night"
        )
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert sent.params["reply_parameters"]["message_id"] == source.message_id
        assert np.array_equal(painted(tg, sent), negative_of(tg, source))
        assert tg.deliveries
        assert all(d.status == 200 and d.secret == secret for d in tg.deliveries)
        info = await webhook_info(tg)
        assert info["url"] == settings.telegram_webhook_url
        assert info["max_connections"] == 7
    assert tg.calls_to("getUpdates") == []  # the webhook took polling's place
    assert tg.calls_to("deleteWebhook") == []  # and stays registered while the bot is down


async def test_a_post_without_the_right_secret_is_refused_and_reaches_no_handler(
    tg: WebhookTelegram, webhook_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    application = build_application(webhook_settings(), queue_factory=fake_queue())
    seen: list[int] = []

    async def record(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        seen.append(update.update_id)

    application.add_handler(TypeHandler(Update, record), group=-100)  # before every handler of the bot
    async with running(application):
        secret = (await tg.wait_for("setWebhook")).params["secret_token"]
        mallory, alice = tg.user("Mallory"), tg.user("Alice")
        forged = tg.message_update(mallory, tg.private_chat(mallory), "/start")
        assert await tg.post_to_webhook(forged, secret="not-the-secret") == 403
        assert await tg.post_to_webhook(forged, secret=secret[:-1]) == 403  # a prefix is not enough
        assert await tg.post_to_webhook(forged, secret=None) == 403
        assert await tg.post_to_webhook(b"{not json", secret=secret, raw=True) == 400
        assert await tg.post_to_webhook([forged], secret=secret) == 400
        assert await tg.post_to_webhook({"message": forged["message"]}, secret=secret) == 400  # no update_id
        await tg.send_text(alice, tg.private_chat(alice), "/start")
        hello = await tg.wait_for("sendMessage")
        assert hello.params["chat_id"] == alice.id
        assert len(seen) == 1  # only Alice's, the one Telegram signed (answered once its handler ran)
        assert (await tg.wait_delivered(seen[0])).secret == secret
        assert tg.messages_in(tg.private_chat(mallory)) == []
    refusals = [r for r in caplog.records if "refused" in r.getMessage() and "secret" in r.getMessage()]
    assert len(refusals) == 1  # three refusals within a minute: one line
    assert secret not in caplog.text


async def test_going_back_to_polling_deletes_the_webhook_and_keeps_what_waited(
    tg: WebhookTelegram, start_bot: StartBot, webhook_settings: Callable[..., Settings]
) -> None:
    settings = webhook_settings()
    async with start_bot(settings):
        await tg.wait_for("setWebhook")
    assert tg.webhook is not None
    alice = tg.user("Alice")
    await tg.send_text(alice, tg.private_chat(alice), "/start")  # while the bot is down: it waits
    async with start_bot(settings.model_copy(update={"telegram_webhook_url": None})):
        deleted = await tg.wait_for("deleteWebhook")
        assert deleted.ok
        assert deleted.params.get("drop_pending_updates") in (None, False)
        assert (await webhook_info(tg))["url"] == ""
        hello = await tg.wait_for("sendMessage")
        assert hello.params["chat_id"] == alice.id
        assert "Hi Alice!" in hello.params["text"]
        assert [c for c in tg.calls_to("getUpdates") if c.ok]  # polling again
    assert [c.error for c in tg.calls_to("getUpdates") if c.error == WEBHOOK_ACTIVE] == []  # deleted first


async def test_the_generated_secret_is_kept_across_restarts(
    tg: WebhookTelegram, start_bot: StartBot, webhook_settings: Callable[..., Settings]
) -> None:
    settings = webhook_settings()
    async with start_bot(settings):
        first = (await tg.wait_for("setWebhook")).params["secret_token"]
    kept = settings.data_dir / SECRET_FILE
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert kept.read_text().strip() == first
    async with start_bot(settings):
        assert (await tg.wait_for("setWebhook")).params["secret_token"] == first
        alice = tg.user("Alice")
        await tg.send_text(alice, tg.private_chat(alice), "/start")  # and Telegram's posts still get in
        assert (await tg.wait_for("sendMessage")).params["chat_id"] == alice.id
    given = "operator_chosen-secret"
    async with start_bot(webhook_settings(telegram_webhook_secret=given)):  # a set secret wins
        assert (await tg.wait_for("setWebhook")).params["secret_token"] == given
    assert kept.read_text().strip() == first


async def test_a_refused_set_webhook_stops_the_start_and_frees_the_port(
    tg: WebhookTelegram, start_bot: StartBot, webhook_settings: Callable[..., Settings]
) -> None:
    settings = webhook_settings()
    tg.fail_next("setWebhook", code=400, description="Bad Request: bad webhook: Failed to resolve host")
    with pytest.raises(BadRequest, match="failed to resolve host"):
        async with start_bot(settings):
            pass
    with socket.socket() as sock:  # the server that listened for it is gone
        sock.bind(("127.0.0.1", settings.telegram_webhook_port))
    async with start_bot(settings):  # and the next start works
        assert (await tg.wait_for("setWebhook", lambda c: c.ok)).ok


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrying, "PAUSES", (0.05, 0.1, 0.2))


async def test_set_webhook_meeting_passing_failures_is_tried_again(
    tg: WebhookTelegram, start_bot: StartBot, webhook_settings: Callable[..., Settings], quick_retries: None
) -> None:
    """A 502 page at the start: tried again, the start goes on. Before: the start died at once (and a
    service manager restarting it crash-looped through the outage). One that outlasts the tries still
    stops the start, with the failure itself."""
    settings = webhook_settings()
    tg.fail_next("setWebhook", code=502, description="Bad Gateway", times=len(retrying.PAUSES))
    async with start_bot(settings):
        assert (await tg.wait_for("setWebhook", lambda c: c.ok)).ok
    tg.fail_next("setWebhook", code=502, description="Bad Gateway", times=len(retrying.PAUSES) + 1)
    with pytest.raises(NetworkError, match="Bad Gateway"):
        async with start_bot(settings):
            pass

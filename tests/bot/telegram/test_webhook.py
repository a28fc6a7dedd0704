"""The webhook's pieces on their own: the settings it accepts, the kept secret, the request checks and
their log line, and the way ``python -m bot`` runs it. End to end: ``e2e/test_webhook.py``."""

from __future__ import annotations

import asyncio
import logging
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError
from telegram import Update
from telegram.ext import Application

import bot.__main__ as entry
from bot.config import Settings
from bot.telegram.app import PollingEnded
from bot.telegram.webhook import (
    SECRET_FILE,
    SECRET_HEADER,
    WebhookConfig,
    WebhookServer,
    kept_secret,
    webhook_config,
)

# Strings no other test writes: webhook_config and main register secrets with the process-wide redaction.
SECRET = "test-webhook-unit-secret_7f3a"
TOKEN = "778:test-webhook-unit-token"


def settings(tmp_path: Path, **values: Any) -> Settings:
    return Settings(telegram_bot_token=TOKEN, data_dir=tmp_path / "data", **values)


@pytest.mark.parametrize(
    "url",
    [
        "https://bot.example.org/telegram",
        "https://bot.example.org:8443/telegram",
        "https://bot.example.org:88",
        "http://127.0.0.1:9000/telegram",  # the machine itself: the tests
    ],
)
def test_webhook_urls_telegram_can_post_to(tmp_path: Path, url: str) -> None:
    assert settings(tmp_path, telegram_webhook_url=url).telegram_webhook_url == url


def test_the_webhook_and_the_health_endpoint_need_ports_of_their_own(tmp_path: Path) -> None:
    """Before: the webhook bound the port, then the health server failed with "address in use"."""
    url = "https://bot.example.org/telegram"
    with pytest.raises(ValidationError, match="TELEGRAM_WEBHOOK_PORT and HEALTH_PORT are both 8443"):
        settings(tmp_path, telegram_webhook_url=url, telegram_webhook_port=8443, health_port=8443)
    assert (
        settings(tmp_path, telegram_webhook_url=url, telegram_webhook_port=8443, health_port=0).health_port
        == 0
    )
    assert settings(tmp_path, telegram_webhook_port=8080, health_port=8080).health_port == 8080  # no webhook


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://bot.example.org/telegram", "https"),
        ("https://bot.example.org:8080/telegram", "ports"),
        ("ftp://bot.example.org/telegram", "https"),
        ("bot.example.org/telegram", "https"),
        ("https://bot.example.org/telegram#x", "fragment"),
    ],
)
def test_webhook_urls_telegram_cannot_post_to_stop_the_start(tmp_path: Path, url: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        settings(tmp_path, telegram_webhook_url=url)


def test_an_empty_webhook_url_means_polling(tmp_path: Path) -> None:
    values = settings(tmp_path, telegram_webhook_url="", telegram_webhook_secret=" ")
    assert values.telegram_webhook_url is None
    assert values.telegram_webhook_secret is None
    assert webhook_config(values) is None
    assert not (tmp_path / "data" / SECRET_FILE).exists()  # no secret made for polling


@pytest.mark.parametrize("secret", ["has space", "semi;colon", "x" * 257, "ünïcode"])
def test_a_secret_setwebhook_would_refuse_stops_the_start(tmp_path: Path, secret: str) -> None:
    with pytest.raises(ValidationError, match="A-Z, a-z, 0-9"):
        settings(tmp_path, telegram_webhook_secret=secret)


def test_a_set_secret_is_used_kept_out_of_logs_and_reprs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    values = settings(
        tmp_path, telegram_webhook_url="https://bot.example.org/telegram", telegram_webhook_secret=SECRET
    )
    assert SECRET in values.secrets()
    config = webhook_config(values)
    assert config is not None
    assert config.secret == SECRET
    assert config.path == "/telegram"
    assert SECRET not in repr(config)
    assert not (tmp_path / "data" / SECRET_FILE).exists()
    caplog.set_level(logging.INFO)
    logging.getLogger("test").info("secret: %s", SECRET)
    assert SECRET not in caplog.text


def test_the_generated_secret_is_made_once_readable_only_by_its_owner(tmp_path: Path) -> None:
    path = tmp_path / "data" / SECRET_FILE
    made = kept_secret(path)
    assert len(made) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert kept_secret(path) == made
    path.chmod(0o644)  # loosened by hand or by a copy
    assert kept_secret(path) == made
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize("content", ["", "not a secret!\n", "x" * 300])
def test_a_kept_file_without_a_valid_secret_stops_the_start(tmp_path: Path, content: str) -> None:
    path = tmp_path / SECRET_FILE
    path.write_text(content)
    with pytest.raises(ValueError, match="delete it to have a new one made"):
        kept_secret(path)
    assert path.read_text() == content  # not replaced behind the operator's back


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Handlers:
    """A stand-in Application's update handling: each update goes on ``queue``, after ``release`` is set."""

    def __init__(self, queue: asyncio.Queue[object]) -> None:
        self.queue = queue
        self.release = asyncio.Event()
        self.release.set()
        self.started = 0

    async def process_update(self, update: object) -> None:
        self.started += 1
        await self.release.wait()
        await self.queue.put(update)


class Processor:
    """PTB's update processor, as the Application's: it runs the handling it is given."""

    async def process_update(self, update: object, coroutine: Any) -> None:
        await coroutine


@pytest.fixture
async def handlers() -> Handlers:
    return Handlers(asyncio.Queue())


@pytest.fixture
async def served(handlers: Handlers) -> AsyncIterator[tuple[TestClient, asyncio.Queue[object], Clock]]:
    """A WebhookServer's app over a stand-in Application (its update handling and no bot)."""
    queue = handlers.queue
    application = cast(
        Application,
        SimpleNamespace(bot=None, process_update=handlers.process_update, update_processor=Processor()),
    )
    config = WebhookConfig("https://bot.example.org/telegram", SECRET, "127.0.0.1", 0, 40)
    clock = Clock()
    server = WebhookServer(application, config, ["message"], clock=clock)
    async with TestClient(TestServer(server.app())) as client:
        yield client, queue, clock


UPDATE = {
    "update_id": 5,
    "message": {
        "message_id": 1, "date": 0, "text": "/start",
        "chat": {"id": 42, "type": "private", "first_name": "Alice"},
        "from": {"id": 42, "is_bot": False, "first_name": "Alice"},
    },
}  # fmt: skip


async def test_a_signed_update_is_answered_once_it_is_handled(served: Any, handlers: Handlers) -> None:
    """Telegram forgets an update it got 200 for: the 200 comes after the handler, so a bot that dies
    while handling it gets it again. Telegram repeating it meanwhile waits for the same handling."""
    client, queue, _ = served
    handlers.release.clear()
    headers = {SECRET_HEADER: SECRET}
    first = asyncio.create_task(client.post("/telegram", json=UPDATE, headers=headers))
    repeat = asyncio.create_task(client.post("/telegram", json=UPDATE, headers=headers))
    for _ in range(100):
        if handlers.started:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert handlers.started == 1
    assert not first.done()
    assert not repeat.done()
    handlers.release.set()
    assert (await first).status == 200
    assert (await repeat).status == 200
    assert queue.qsize() == 1
    assert handlers.started == 1


async def test_a_signed_update_is_queued_and_answered(served: Any) -> None:
    client, queue, _ = served
    response = await client.post("/telegram", json=UPDATE, headers={SECRET_HEADER: SECRET})
    assert response.status == 200
    update = queue.get_nowait()
    assert isinstance(update, Update)
    assert update.update_id == 5
    assert update.message is not None
    assert update.message.text == "/start"


@pytest.mark.parametrize(
    "headers", [{}, {SECRET_HEADER: "wrong"}, {SECRET_HEADER: SECRET + "x"}, {SECRET_HEADER: ""}]
)
async def test_without_the_secret_nothing_is_queued(served: Any, headers: dict[str, str]) -> None:
    client, queue, _ = served
    assert (await client.post("/telegram", json=UPDATE, headers=headers)).status == 403
    assert queue.empty()


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"message": {}}',
        b'{"update_id": "5"}',
        b'{"update_id": true}',
        b'{"update_id": 6, "message": "not a message"}',
    ],
)
async def test_what_is_not_an_update_gets_400_and_nothing_is_queued(served: Any, body: bytes) -> None:
    client, queue, _ = served
    response = await client.post("/telegram", data=body, headers={SECRET_HEADER: SECRET})
    assert response.status == 400
    assert queue.empty()


async def test_only_posts_to_the_webhook_path_are_served(served: Any) -> None:
    client, queue, _ = served
    headers = {SECRET_HEADER: SECRET}
    assert (await client.get("/telegram", headers=headers)).status == 405
    assert (await client.post("/", json=UPDATE, headers=headers)).status == 404
    assert (await client.post("/telegram/x", json=UPDATE, headers=headers)).status == 404
    assert queue.empty()


async def test_refusals_are_logged_at_most_once_a_minute(
    served: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client, _, clock = served
    caplog.set_level(logging.WARNING, logger="bot.telegram.webhook")
    for at in (0.0, 1.0, 30.0, 61.0, 62.0):  # seconds after the first
        clock.now = 1000.0 + at
        await client.post("/telegram", json=UPDATE, headers={SECRET_HEADER: "forged"})
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 2
    assert "refused 1 request(s)" in lines[0]
    assert "refused 3 request(s)" in lines[1]  # those of the minute it kept quiet for, and this one
    assert "forged" not in caplog.text


@pytest.mark.parametrize("webhook", ["", "https://bot.example.org/telegram"])
def test_telegram_alone_runs_in_run_all_either_way(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, webhook: str
) -> None:
    """Polling and the webhook both run in ``run_all`` (PTB's run_polling confirmed updates before their
    handlers ran; run_webhook would need tornado); polling that ends by itself exits non-zero."""
    monkeypatch.chdir(tmp_path)
    for name, value in {
        "TELEGRAM_BOT_TOKEN": TOKEN, "DISCORD_BOT_TOKEN": "", "TELEGRAM_WEBHOOK_URL": webhook,
        "TELEGRAM_WEBHOOK_SECRET": SECRET, "DATA_DIR": str(tmp_path / "data"), "HEALTH_PORT": "0",
    }.items():  # fmt: skip
        monkeypatch.setenv(name, value)
    taken: list[str] = []

    async def run_all(settings: Any, *_: Any) -> None:
        taken.append("run_all")

    monkeypatch.setattr(entry, "run_all", run_all)
    assert entry.main([]) == 0
    assert taken == ["run_all"]

    async def deaf(settings: Any, *_: Any) -> None:
        raise PollingEnded("Unauthorized")

    monkeypatch.setattr(entry, "run_all", deaf)
    assert entry.main([]) == 1

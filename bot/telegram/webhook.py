"""Telegram's webhook: updates posted to the bot's own aiohttp server instead of fetched by long polling.

``TELEGRAM_WEBHOOK_URL`` switches it on. Telegram sends the secret given to setWebhook with every request
(``X-Telegram-Bot-Api-Secret-Token``); a request without it, or with another, is refused with 403 before
its body is read, so nothing it says reaches a handler. A good request is answered once its handler
finished (the job made, or the refusal sent): Telegram forgets an update it got 200 for, so a bot that died
after an early 200 would lose the photo. Handlers are quick (a download at most); requests are handled side
by side (up to ``max_connections`` of Telegram's), and one Telegram gave up on and sent again while its
handler still runs waits for that handling (``bot.telegram.polling.InHand``); one sent again after it
finished, or after a crash, makes no second job (``bot.services.jobs.RepeatedRequest``). PTB's own webhook
server needs tornado; this one is aiohttp, which the health endpoint already uses.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from json import JSONDecodeError
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Update
from telegram.ext import Application

from bot import retrying
from bot.config import WEBHOOK_SECRET_SHAPE, Settings
from bot.redaction import protect
from bot.telegram import failures
from bot.telegram.polling import STOP_WAIT, InHand

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
SECRET_FILE = "telegram_webhook_secret"  # in DATA_DIR
REFUSAL_LOG_INTERVAL = 60.0  # seconds: a scanner hammering the port writes one line a minute
WEBHOOK = "webhook"  # the bot_data key of the WebhookConfig, when the bot runs by webhook


@dataclass(frozen=True)
class WebhookConfig:
    """Where Telegram posts and what it must send; the secret stays out of ``repr``."""

    url: str
    secret: str = field(repr=False)
    listen: str
    port: int
    max_connections: int

    @property
    def path(self) -> str:
        """The path the server answers on: the URL's, as the reverse proxy passes it on."""
        return urlsplit(self.url).path or "/"


def webhook_config(settings: Settings) -> WebhookConfig | None:
    """The webhook's settings, or None for long polling. A secret that is not set is generated once and
    kept (``kept_secret``); either way it is added to the log filter before anything could log it."""
    if settings.telegram_webhook_url is None:
        return None
    given = settings.telegram_webhook_secret
    secret = given.get_secret_value() if given is not None else kept_secret(settings.data_dir / SECRET_FILE)
    protect(secret)
    return WebhookConfig(
        url=settings.telegram_webhook_url,
        secret=secret,
        listen=settings.telegram_webhook_listen,
        port=settings.telegram_webhook_port,
        max_connections=settings.telegram_webhook_max_connections,
    )


def kept_secret(path: Path) -> str:
    """The secret in ``path``, made on first use (only the owner may read it). Kept rather than made at
    every start, so that the updates Telegram retries across a restart still carry the right one and an
    operator can read it back; a file that holds no valid secret stops the start instead of being
    replaced behind the operator's back."""
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)  # 43 characters of A-Z a-z 0-9 _ -: what setWebhook accepts
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # made by an earlier start (or by the other process of a racing pair)
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)
        kept = path.read_text().strip()
        if not WEBHOOK_SECRET_SHAPE.fullmatch(kept):
            raise ValueError(
                f"{path} holds no valid webhook secret (1 to 256 characters of A-Z, a-z, 0-9, _ and -): "
                "delete it to have a new one made, or set TELEGRAM_WEBHOOK_SECRET"
            ) from None
        return kept
    with os.fdopen(descriptor, "w") as file:
        file.write(secret + "\n")
    log.info("generated a Telegram webhook secret, kept in %s", path)
    return secret


class WebhookServer:
    """The webhook's HTTP side and its registration with Telegram, for ``bot.telegram.app.running``."""

    def __init__(
        self,
        application: Application,
        config: WebhookConfig,
        allowed_updates: Sequence[str],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.application, self.config, self.allowed_updates = application, config, list(allowed_updates)
        self._secret = config.secret.encode()
        self._clock = clock
        self._refused = 0  # refusals not yet logged
        self._refusal_logged: float | None = None
        self._runner: web.AppRunner | None = None
        self.in_hand = InHand(application)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1024 * 1024)  # an update is a few kB; a photo is a file id
        app.router.add_post(self.config.path, self.receive)
        return app

    async def receive(self, request: web.Request) -> web.Response:
        """One update from Telegram: 403 without the secret, 400 for what is not an update, else 200 once
        its handler finished."""
        given = request.headers.get(SECRET_HEADER)
        if given is None or not hmac.compare_digest(given.encode(errors="replace"), self._secret):
            self._note_refusal(request, "no" if given is None else "a wrong")
            return web.Response(status=403)
        try:
            data = await request.json()
        except (JSONDecodeError, UnicodeDecodeError):
            return self._bad_request("a body that is not JSON")
        update_id = data.get("update_id") if isinstance(data, dict) else None
        if not isinstance(update_id, int) or isinstance(update_id, bool):
            return self._bad_request("JSON that is not an update")
        try:
            update = Update.de_json(data, self.application.bot)
        except Exception:  # PTB's parsers raise whatever a malformed field trips on
            return self._bad_request(f"update {update_id}, which python-telegram-bot cannot read")
        await asyncio.shield(self.in_hand.handle(update))  # a dropped request does not stop the handler
        return web.Response(status=200)

    def _note_refusal(self, request: web.Request, which: str) -> None:
        """Log refused requests at most once per REFUSAL_LOG_INTERVAL, with how many were refused."""
        self._refused += 1
        now = self._clock()
        if self._refusal_logged is not None and now - self._refusal_logged < REFUSAL_LOG_INTERVAL:
            return
        log.warning(
            "Telegram webhook: refused %d request(s) without the secret since the last such line "
            "(403; the latest from %s had %s secret)",
            self._refused,
            request.remote,
            which,
        )
        self._refused, self._refusal_logged = 0, now

    @staticmethod
    def _bad_request(what: str) -> web.Response:
        log.warning("Telegram webhook: refused %s (400)", what)
        return web.Response(status=400)

    async def start(self) -> None:
        """Listen first, then tell Telegram where to post, so its first request finds the server. The
        updates that waited while the bot was down are kept (``drop_pending_updates=False``)."""
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, self.config.listen, self.config.port).start()
            await retrying.retried(  # a passing failure at start is tried again before the start fails
                lambda: self.application.bot.set_webhook(
                    url=self.config.url,
                    secret_token=self.config.secret,
                    allowed_updates=self.allowed_updates,
                    max_connections=self.config.max_connections,
                    drop_pending_updates=False,
                ),
                passing=failures.passing,
                asked=failures.asked,
                what="registering the Telegram webhook",
            )
        except BaseException:
            await self.stop()
            raise
        log.info(
            "Telegram webhook: %s, served on %s:%d%s",
            self.config.url,
            self.config.listen,
            self.config.port,
            self.config.path,
        )

    async def stop(self) -> None:
        """Stop listening (the handlers under way finish first); the webhook stays registered, so Telegram
        keeps the updates until the next start (polling's start deletes it)."""
        await self.in_hand.drain(STOP_WAIT)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

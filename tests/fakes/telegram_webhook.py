"""The Bot API stand-in (``tests/fakes/telegram_api.py``) with Telegram's webhook side.

Once the bot calls setWebhook, this server does what Telegram does: it stops serving getUpdates (409)
and POSTs each pending update to the registered URL with the registered secret in
``X-Telegram-Bot-Api-Secret-Token``, dropping it on a 2xx answer and retrying it after ``retry_delay``
otherwise (Telegram backs off longer). deleteWebhook, or setWebhook with an empty URL, goes back to
getUpdates with the updates that waited. getWebhookInfo reports the webhook and its last error::

    async with WebhookTelegram() as tg:
        ...  # start the bot with TELEGRAM_WEBHOOK_URL=http://127.0.0.1:<port>/telegram
        call = await tg.wait_for("setWebhook")
        await tg.send_text(alice, chat, "/start")          # delivered by POST, not by getUpdates
        status = await tg.post_to_webhook(update, secret="wrong")  # what a forger would get

Updates go out one at a time, in order (Telegram may send up to ``max_connections`` at once). Plain http
is accepted for 127.0.0.1 only, since the tests have no certificate; Telegram wants https everywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from tests.fakes.telegram_api import ApiError, Chat, FakeTelegram, Params, User, _bad, command_entities

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
SECRET_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,256}")
WEBHOOK_PORTS = (443, 80, 88, 8443)
WEBHOOK_ACTIVE = (
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the "
    "webhook first"
)


@dataclass(eq=False)
class Webhook:
    """What setWebhook registered."""

    url: str
    secret: str | None = field(repr=False)
    max_connections: int
    allowed_updates: list[str] | None


@dataclass(eq=False)
class Delivery:
    """One POST of an update to the webhook, and how the bot answered it (0: no answer)."""

    update_id: int
    status: int
    secret: str | None = field(repr=False)  # the header sent; None when there was none


class WebhookTelegram(FakeTelegram):
    """FakeTelegram that delivers by webhook while one is set."""

    def __init__(self, *args: Any, retry_delay: float = 0.2, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.retry_delay = retry_delay
        self.webhook: Webhook | None = None
        self.deliveries: list[Delivery] = []  # by the pusher and by post_to_webhook alike
        self.last_error: tuple[int, str] | None = None  # (unix time, message), as getWebhookInfo says
        self._session: aiohttp.ClientSession | None = None
        self._pusher: asyncio.Task[None] | None = None
        self._methods["setwebhook"] = ("setWebhook", self._set_webhook)

    async def __aenter__(self) -> WebhookTelegram:
        await self.start()
        return self

    async def start(self) -> None:
        await super().start()
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
        self._pusher = asyncio.create_task(self._push(), name="fake-telegram-webhook")

    async def close(self) -> None:
        if self._pusher is not None:
            self._pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pusher
        if self._session is not None:
            await self._session.close()
        await super().close()

    # -- methods ---------------------------------------------------------------------------------

    async def _set_webhook(self, p: Params) -> bool:
        url = p.string("url")
        if url is None:
            raise _bad('parameter "url" is required')
        if not url:  # an empty URL removes the webhook, as deleteWebhook does
            return await self._delete_webhook(p)
        parts = urlsplit(url)
        if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname == "127.0.0.1"):
            raise _bad("bad webhook: An HTTPS URL must be provided for webhook")
        if parts.scheme == "https" and (parts.port or 443) not in WEBHOOK_PORTS:
            raise _bad("bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        secret = p.string("secret_token")
        if secret is not None and not SECRET_SHAPE.fullmatch(secret):
            raise _bad("secret token contains unallowed characters")
        allowed = p.get("allowed_updates")
        if allowed is not None:
            self._allowed_updates = list(allowed)
        if p.flag("drop_pending_updates"):
            self._updates.clear()
        max_connections = min(max(p.integer("max_connections") or 40, 1), 100)
        self.webhook = Webhook(url, secret, max_connections, self._allowed_updates)
        self.last_error = None
        return True

    async def _delete_webhook(self, p: Params) -> bool:
        self.webhook = None
        return await super()._delete_webhook(p)

    async def _get_updates(self, p: Params) -> list[dict[str, Any]]:
        if self.webhook is not None:
            raise ApiError(409, WEBHOOK_ACTIVE)
        return await super()._get_updates(p)

    async def _get_webhook_info(self, p: Params) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": "" if self.webhook is None else self.webhook.url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }
        if self.webhook is not None:
            info["max_connections"] = self.webhook.max_connections
            if self.webhook.allowed_updates is not None:
                info["allowed_updates"] = self.webhook.allowed_updates
        if self.last_error is not None:
            info["last_error_date"], info["last_error_message"] = self.last_error
        return info

    # -- delivery --------------------------------------------------------------------------------

    async def _push(self) -> None:
        """Telegram's side of a webhook: post the oldest wanted update until the bot takes it."""
        while True:
            async with self._changed:
                await self._changed.wait_for(self._ready)
                hook, update = self.webhook, self._updates[0]
            assert hook is not None
            status = await self._send(hook.url, update, hook.secret)
            async with self._changed:
                if 200 <= status < 300:
                    with contextlib.suppress(ValueError):
                        self._updates.remove(update)
                else:
                    reason = "Connection refused" if status == 0 else f"{status}"
                    self.last_error = (int(time.time()), f"Wrong response from the webhook: {reason}")
                self._changed.notify_all()
            if not 200 <= status < 300:
                await asyncio.sleep(self.retry_delay)

    def _ready(self) -> bool:
        """A webhook is set and an update it wants is waiting (the others are dropped, as Telegram does)."""
        if self.webhook is None:
            return False
        self._updates = [u for u in self._updates if self._wanted(u)]
        return bool(self._updates)

    async def _send(self, url: str, body: Any, secret: str | None, *, raw: bool = False) -> int:
        assert self._session is not None, "the server is not started"
        headers = {} if secret is None else {SECRET_HEADER: secret}
        kwargs: dict[str, Any] = {"data": body} if raw else {"json": body}
        try:
            async with self._session.post(url, headers=headers, **kwargs) as response:
                await response.read()
                status = response.status
        except aiohttp.ClientError:
            status = 0
        update_id = body.get("update_id", 0) if isinstance(body, dict) else 0
        async with self._changed:
            self.deliveries.append(Delivery(update_id, status, secret))
            self._changed.notify_all()
        return status

    # -- helpers for tests ------------------------------------------------------------------------

    def message_update(self, user: User, chat: Chat, text: str) -> dict[str, Any]:
        """An update for a new message of ``user`` in ``chat``, not queued: for posting by hand."""
        message = self._user_message(user, chat, None, text=text, entities=command_entities(text) or None)
        message.chat.known = True
        return {"update_id": next(self._update_ids), "message": message.to_api()}

    async def post_to_webhook(self, body: Any, *, secret: str | None, raw: bool = False) -> int:
        """POST ``body`` (JSON, or bytes as they are with ``raw``) to the registered webhook with
        ``secret`` in the header (None: no header), as a forger or a broken proxy would; the status."""
        if self.webhook is None:
            raise AssertionError("no webhook is set")
        return await self._send(self.webhook.url, body, secret, raw=raw)

    async def wait_delivered(self, update_id: int, timeout: float | None = None) -> Delivery:  # noqa: ASYNC109
        """The first 2xx delivery of ``update_id``."""
        deadline = time.monotonic() + (self.wait_timeout if timeout is None else timeout)
        async with self._changed:
            while True:
                for delivery in self.deliveries:
                    if delivery.update_id == update_id and 200 <= delivery.status < 300:
                        return delivery
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"update {update_id} was not delivered: {self.deliveries}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

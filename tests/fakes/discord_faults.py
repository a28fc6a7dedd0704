"""A Discord that misbehaves, for the Discord tests: SimCord answering a share of the bot's calls with a rate
limit, a server error, a timeout or a lost answer, and refusing the bot where a test says so.

Why a layer of its own: SimCord's ``FakeHTTPClient.request`` and ``FakeWebhookAdapter.request`` replace
discord.py's whole request loop, so an ``env.inject_error`` 429 reaches the bot as a bare ``HTTPException``
(discord.py never sleeps it out) and a 5xx is never retried. With a ``DiscordFaults`` installed for an env,
every call of its bot runs discord.py's OWN loop (``HTTPClient.request``, ``AsyncWebhookAdapter.request``)
over a stand-in aiohttp session whose answers come from SimCord's router. So:

- ``"429"``: a real 429 (``Via`` header, JSON ``retry_after``), which discord.py sleeps out and retries
  (five tries in all, then ``HTTPException(429)``);
- ``"5xx"``: 500, 502, 503 or 504, retried by discord.py as it retries them (after 1, 3, 5, 7 s;
  ``HTTPClient`` does not retry a 503, the webhook adapter retries every 5xx);
- ``"timeout"``: ``asyncio.TimeoutError``, the call NOT carried out;
- ``"lost"``: the call carried out, then ``aiohttp.ServerDisconnectedError``: Discord did it, the bot never
  heard.

It also models what SimCord ignores: a message created with ``nonce`` and ``enforce_nonce`` (discord.py
sends both whenever ``send`` gets a nonce) is created once per channel; the same nonce again returns the
first message, as Discord does for a few minutes.

The bot's code is not patched: the two SimCord classes are wrapped once, at import, and behave exactly as
before for any env without a ``DiscordFaults``.
"""

from __future__ import annotations

import asyncio
import contextvars
import fnmatch
import json
import random
import re
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import discord
from discord.webhook.async_ import AsyncWebhookAdapter
from multidict import CIMultiDict
from simcord.http import client as simcord_client

KINDS = ("429", "5xx", "timeout", "lost")
SERVER_ERRORS = (500, 502, 503, 504)


@dataclass
class _Rule:
    method: str
    path: str
    share: float
    kinds: tuple[str, ...]
    retry_after: float
    server_errors: tuple[int, ...]
    times: int | None
    where: Callable[[Any], bool] | None

    def matches(self, method: str, path: str, body: Any) -> bool:
        if self.times is not None and self.times <= 0:
            return False
        if self.where is not None and not self.where(body if isinstance(body, dict) else {}):
            return False
        return self.method in ("*", method) and fnmatch.fnmatch(path, self.path)


@dataclass
class Attempt:
    """One request discord.py put on the wire, and what came of it (``"ok"``, a kind, or an HTTP status)."""

    method: str
    path: str
    route: str
    outcome: str


@dataclass
class _Call:
    """The bot's call under way: what discord.py's loop is sending, and how SimCord carries it out."""

    method: str
    path: str
    json: Any
    carry_out: Callable[[], Awaitable[Any]]


@dataclass
class DiscordFaults:
    """Faults for one SimCord env; see the module's docstring. Off until ``set``; ``close`` uninstalls."""

    env: Any
    seed: int = 0
    injected: Counter[tuple[str, str]] = field(default_factory=Counter)
    attempts: list[Attempt] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._rules: list[_Rule] = []
        self._refused_dms: set[int] = set()
        self._refused_channels: dict[int, tuple[int, int, str]] = {}
        self._nonces: dict[tuple[int, str], Any] = {}
        self._session = _Session(self)
        self._adapter = AsyncWebhookAdapter()  # discord.py's own, for its request loop (and its locks)
        _LAYERS[self.env.backend] = self

    # -- what a test asks for ---------------------------------------------------------------------

    def set(
        self,
        method: str = "*",
        path: str = "*",
        *,
        share: float,
        kinds: Sequence[str] = KINDS,
        retry_after: float = 0.2,
        server_errors: Sequence[int] = SERVER_ERRORS,
        times: int | None = None,
        where: Callable[[Any], bool] | None = None,
    ) -> None:
        """A ``share`` of the calls matching ``method`` and ``path`` (an fnmatch pattern on the API path,
        e.g. ``/webhooks/*``) fail with one of ``kinds``, picked by the seeded generator; a "5xx" is one of
        ``server_errors``. ``times``: this many faults, then the rule is spent. ``where``: only calls whose
        JSON body (``{}`` when none) it accepts, e.g. a status edit that says "Done". A later ``set`` for
        the same call wins over an earlier one."""
        unknown = set(kinds) - set(KINDS)
        if unknown or not kinds or not 0.0 <= share <= 1.0:
            raise ValueError(f"kinds must be among {KINDS} and share in [0, 1]: {kinds}, {share}")
        rule = _Rule(method, path, share, tuple(kinds), retry_after, tuple(server_errors), times, where)
        self._rules.insert(0, rule)

    def off(self) -> None:
        """No more share-based faults (the refusals stay)."""
        self._rules.clear()

    def refuse_dms(self, user_id: int) -> None:
        """The user blocked the bot or closed their DMs: a DM to them is 403 Cannot send messages to this
        user (50007); opening the DM channel still works, as on Discord."""
        self._refused_dms.add(user_id)

    def refuse_channel(
        self, channel_id: int, *, status: int = 403, code: int = 50001, message: str = "Missing Access"
    ) -> None:
        """Every call on the channel is refused: 403 Missing Access (50001) by default (the bot was removed
        from it), or e.g. ``status=404, code=10003, message="Unknown Channel"`` (it was deleted)."""
        self._refused_channels[channel_id] = (status, code, message)

    def delete(self, channel_id: int, message_id: int) -> None:
        """A user or a moderator deleted the message (a job's status, say): Discord answers any later call on
        it with 404 Unknown Message (10008). (A test with a member at hand may use ``member.delete``.)"""
        self.env.backend.delete_message(channel_id, message_id)

    def close(self) -> None:
        """Uninstall: the env's bot talks to plain SimCord again."""
        if _LAYERS.get(self.env.backend) is self:
            del _LAYERS[self.env.backend]

    def outcomes(self, fragment: str = "") -> Counter[str]:
        """How the attempts whose route contains ``fragment`` ended."""
        return Counter(a.outcome for a in self.attempts if fragment in a.route)

    # -- the stand-in wire --------------------------------------------------------------------------

    def _roll(self, call: _Call) -> tuple[str, _Rule] | None:
        for rule in self._rules:
            if rule.matches(call.method, call.path, call.json):
                if rule.share > 0 and self._rng.random() < rule.share:
                    if rule.times is not None:
                        rule.times -= 1
                    return self._rng.choice(rule.kinds), rule
                return None
        return None

    def _refusal(self, call: _Call) -> tuple[int, int, str] | None:
        match = re.match(r"/channels/(\d+)(/|$)", call.path)
        if match is None:
            return None
        channel_id = int(match.group(1))
        if channel_id in self._refused_channels:
            return self._refused_channels[channel_id]
        if call.method == "POST" and call.path.endswith("/messages") and self._refused_dms:
            channel = self.env.backend.channels.get(channel_id)
            recipients = set(getattr(channel, "recipient_ids", None) or ())
            if recipients & self._refused_dms:
                return 403, 50007, "Cannot send messages to this user"
        return None

    async def _exchange(self, call: _Call) -> _Response:
        route = route_of(call.method, call.path)
        refused = self._refusal(call)
        if refused is not None:
            status, code, message = refused
            self.attempts.append(Attempt(call.method, call.path, route, str(status)))
            return _Response(status, {"code": code, "message": message})
        rolled = self._roll(call)
        kind = rolled[0] if rolled else None
        if kind is not None:
            self.injected[(route, kind)] += 1
        self.attempts.append(Attempt(call.method, call.path, route, kind or "ok"))
        if kind == "timeout":
            raise TimeoutError()
        if kind == "429":
            assert rolled is not None
            body = {
                "message": "You are being rate limited.",
                "retry_after": rolled[1].retry_after,
                "global": False,
            }
            return _Response(429, body, via=True)
        if kind == "5xx":
            assert rolled is not None
            status = self._rng.choice(rolled[1].server_errors)
            self.attempts[-1].outcome = str(status)
            return _Response(status, {"code": 0, "message": f"{status} (injected)"})
        nonce_key = self._nonce_key(call)
        if nonce_key is not None and nonce_key in self._nonces:
            data = self._nonces[nonce_key]  # Discord's enforce_nonce: the message created before
        else:
            try:
                data = await call.carry_out()
            except discord.HTTPException as err:  # SimCord's answer: Discord's error body, for discord.py
                self.attempts[-1].outcome = str(err.status)
                return _Response(err.status, {"code": err.code, "message": err.text})
            if nonce_key is not None:
                self._nonces[nonce_key] = data
        if kind == "lost":
            raise aiohttp.ServerDisconnectedError()
        return _Response(200, data)

    @staticmethod
    def _nonce_key(call: _Call) -> tuple[int, str] | None:
        match = re.fullmatch(r"/channels/(\d+)/messages", call.path)
        body = call.json if isinstance(call.json, dict) else {}
        if call.method != "POST" or match is None or not body.get("enforce_nonce") or not body.get("nonce"):
            return None
        return int(match.group(1)), str(body["nonce"])


def route_of(method: str, path: str) -> str:
    """``"PATCH /webhooks/{id}/{token}/messages/@original"``: the call without its ids and tokens."""
    parts = path.strip("/").split("/")
    out: list[str] = []
    for i, part in enumerate(parts):
        if part.isdigit():
            out.append("{id}")
        elif i >= 2 and parts[i - 2] in ("webhooks", "interactions") and parts[i - 1].isdigit():
            out.append("{token}")
        else:
            out.append(part)
    return f"{method} /" + "/".join(out)


class _Response:
    """Just what discord.py's request loops read of an aiohttp response."""

    def __init__(self, status: int, data: Any, *, via: bool = False) -> None:
        self.status = status
        self.reason = "injected" if status >= 400 else "OK"
        self.headers: CIMultiDict[str] = CIMultiDict({"Content-Type": "application/json"})
        if via:
            self.headers["Via"] = "1.1 google"
        self._text = json.dumps(data)

    async def text(self, encoding: str = "utf-8") -> str:
        return self._text

    async def __aenter__(self) -> _Response:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class _Exchange:
    def __init__(self, layer: DiscordFaults, call: _Call) -> None:
        self.layer, self.call = layer, call

    async def __aenter__(self) -> _Response:
        return await self.layer._exchange(self.call)

    async def __aexit__(self, *exc: object) -> None:
        return None


class _Session:
    """The aiohttp session discord.py's loops see: each request is one exchange with SimCord."""

    def __init__(self, layer: DiscordFaults) -> None:
        self.layer = layer

    def request(self, method: str, url: str, **_: Any) -> _Exchange:
        call = _CALL.get()
        assert call is not None, (method, url)
        assert call.method == method, (call, method, url)
        return _Exchange(self.layer, call)


_LAYERS: weakref.WeakKeyDictionary[Any, DiscordFaults] = weakref.WeakKeyDictionary()
_CALL: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("discord_faults_call", default=None)
_simcord_request = simcord_client.FakeHTTPClient.request
_simcord_webhook_request = simcord_client.FakeWebhookAdapter.request


async def _http_request(
    self: Any, route: Any, *, files: Any | None = None, form: Any | None = None, **kwargs: Any
) -> Any:
    layer = _LAYERS.get(self.backend)
    if layer is None:
        return await _simcord_request(self, route, files=files, form=form, **kwargs)
    original = dict(kwargs)
    call = _Call(
        route.method,
        simcord_client._path_of(route.url),
        _payload_of(original.get("json"), form),
        lambda: _simcord_request(self, route, files=files, form=form, **original),
    )
    token = _CALL.set(call)
    try:
        self._HTTPClient__session = layer._session
        if not isinstance(getattr(self, "_global_over", None), asyncio.Event):  # set by the real login only
            self._global_over = asyncio.Event()
            self._global_over.set()
        return await discord.http.HTTPClient.request(self, route, files=files, form=form, **kwargs)
    finally:
        _CALL.reset(token)


async def _webhook_request(self: Any, route: Any, session: Any, **kwargs: Any) -> Any:
    layer = _LAYERS.get(self.backend)
    if layer is None:
        return await _simcord_webhook_request(self, route, session, **kwargs)
    call = _Call(
        route.method,
        simcord_client._path_of(route.url),
        _payload_of(kwargs.get("payload"), kwargs.get("multipart")),
        lambda: _simcord_webhook_request(self, route, session, **kwargs),
    )
    token = _CALL.set(call)
    try:
        return await layer._adapter.request(route, layer._session, **kwargs)  # type: ignore[arg-type]
    finally:
        _CALL.reset(token)


def _payload_of(body: Any, form: Any) -> Any:
    """The JSON body of a call, also when discord.py sent it as a multipart form's ``payload_json``."""
    if body is not None:
        return body
    for part in form or ():
        if part.get("name") == "payload_json":
            return json.loads(part["value"])
    return None


simcord_client.FakeHTTPClient.request = _http_request  # type: ignore[method-assign]
simcord_client.FakeWebhookAdapter.request = _webhook_request  # type: ignore[method-assign]

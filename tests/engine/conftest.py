"""Fixtures shared by the engine tests."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator

import pytest
from aiohttp import web

# A planned answer: (status, body, content type), or a handler for what a tuple cannot say (slow, chunked).
Reply = tuple[int, bytes, str] | Callable[[web.Request], Awaitable[web.StreamResponse]]


class PaintingServer:
    """A local stand-in for upload.wikimedia.org, on 127.0.0.1 in a thread of its own.

    A thread, not the test's event loop, so that synchronous code (the CLI, ``StyleStore.ensure``) can use it
    too. Each path answers its planned replies in turn, the last one repeating; unplanned paths answer 404.
    """

    def __init__(self) -> None:
        self.base_url = ""
        self.hits: Counter[str] = Counter()
        self.user_agents: list[str | None] = []
        self._plans: dict[str, tuple[Reply, ...]] = {}

    def plan(self, path: str, *replies: Reply) -> str:
        """Set what ``path`` answers; returns its full URL."""
        self._plans[path] = replies
        return self.url(path)

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.hits[request.path] += 1
        self.user_agents.append(request.headers.get("User-Agent"))
        replies = self._plans.get(request.path, ((404, b"not found", "text/plain"),))
        reply = replies[min(self.hits[request.path], len(replies)) - 1]
        if callable(reply):
            return await reply(request)
        status, body, content_type = reply
        return web.Response(status=status, body=body, content_type=content_type)


@pytest.fixture
def painting_server() -> Iterator[PaintingServer]:
    server = PaintingServer()
    app = web.Application()
    app.router.add_get("/{tail:.*}", server.handle)
    runner = web.AppRunner(app, handler_cancellation=True)  # a slow reply ends when the client gives up
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> None:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()

    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
    host, port = runner.addresses[0][:2]
    server.base_url = f"http://{host}:{port}"
    try:
        yield server
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()

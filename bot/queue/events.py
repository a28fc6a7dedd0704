"""Handing queue events to the bot in order, without making the queue wait for Telegram."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from bot.queue.base import JobEvents

log = logging.getLogger(__name__)


class EventLines:
    """Calls ``JobEvents`` in order for each job, without making the queue wait for the bot.

    The bot's handlers talk to Telegram (seconds, rate limits); awaiting them in a slot's supervisor would
    leave its worker's messages unread meanwhile. Each job has its own line of calls (started, progress...,
    finished) drained by one task; ``queue_changed`` has a line of its own. A progress report still waiting
    behind a slow call is replaced by the newer one, and repeated ``queue_changed`` collapse into one: the
    bot only needs the latest.
    """

    COALESCED = ("job_progress", "queue_changed")

    def __init__(self, events: JobEvents) -> None:
        self._events = events
        self._lines: dict[int | None, deque[tuple[str, tuple[Any, ...]]]] = {}
        self._tasks: dict[int | None, asyncio.Task[None]] = {}

    def send(self, key: int | None, name: str, *args: Any) -> None:
        line = self._lines.setdefault(key, deque())
        if line and line[-1][0] == name and name in self.COALESCED:
            line[-1] = (name, args)
        else:
            line.append((name, args))
        if key not in self._tasks:
            self._tasks[key] = asyncio.get_running_loop().create_task(self._drain(key))

    async def _drain(self, key: int | None) -> None:
        line = self._lines[key]
        try:
            while line:
                name, args = line.popleft()
                try:
                    await getattr(self._events, name)(*args)
                except Exception:
                    log.exception("JobEvents.%s raised for job %s", name, key)
        finally:
            del self._lines[key], self._tasks[key]

    async def close(self, grace: float) -> None:
        """Deliver what is pending (for at most ``grace`` seconds), then drop the rest."""
        tasks = list(self._tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

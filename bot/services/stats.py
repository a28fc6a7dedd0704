"""The bot's statistics for its admins, the same on every platform: jobs per outcome today and over the
last 7 days, the queue, the workers, the median wait and the results given up.

The counts come from the database (``bot.db``), the workers from the queue; a front end renders
``Statistics`` with ``bot.replies.statistics``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.db import Database, JobState
from bot.queue.base import JobQueue
from bot.services.access import Admins
from bot.services.refusals import NotBotAdminError

WEEK = timedelta(days=7)


@dataclass(frozen=True)
class Period:
    """One window's numbers: jobs created in it, by what became of them (active ones included)."""

    jobs: Mapping[str, int]  # JobState value -> count
    given_up: int  # results the platform said can never be delivered
    median_wait: float | None  # seconds from a job's creation to its start; None when none started

    def count(self, *states: JobState) -> int:
        return sum(self.jobs.get(state.value, 0) for state in states)


@dataclass(frozen=True)
class Statistics:
    today: Period  # since midnight UTC
    week: Period  # the last 7 days
    queued: int
    running: int
    workers: int
    busy: int  # workers painting now
    healthy: bool  # False when no worker can take a job
    blocked: int  # people blocked on every platform


class StatsService:
    def __init__(self, db: Database, queue: JobQueue, admins: Admins) -> None:
        self.db = db
        self.queue = queue
        self.admins = admins

    async def collect(self, user_id: int, *, platform: str, now: datetime | None = None) -> Statistics:
        """For the bot's admins only (refused ``NotBotAdminError`` for anyone else: the numbers say how
        busy and how healthy the bot is, nothing a user needs)."""
        if not self.admins.is_admin(user_id, platform=platform):
            raise NotBotAdminError()
        now = now or datetime.now(UTC)
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        status = self.queue.status()
        active = await self.db.queued_and_running()
        queued = sum(job.state == JobState.QUEUED for job in active)
        return Statistics(
            today=await self._period(midnight),
            week=await self._period(now - WEEK),
            queued=queued,
            running=len(active) - queued,
            workers=status.workers,
            busy=status.busy,
            healthy=status.healthy,
            blocked=await self.db.count_blocked(),
        )

    async def _period(self, since: datetime) -> Period:
        return Period(
            jobs=await self.db.job_outcomes(since),
            given_up=await self.db.count_given_up(since),
            median_wait=await self.db.median_wait_seconds(since),
        )

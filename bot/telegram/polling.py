"""Long polling that confirms an update to Telegram only once its handler finished.

Telegram forgets every update below the ``offset`` of the next getUpdates. PTB's own ``Updater`` moves the
offset past an update as soon as it fetched it, so a bot that dies while a handler runs (SIGKILL, out of
memory, a lost lease ending the process) loses that photo or command: no job, no reply, never fetched again.
Here the offset stays at the lowest update whose handler has not finished (``InHand``); the updates from it
on come again with every poll and those already in hand or done are skipped. After a crash the restarted
bot gets the unfinished ones again; a handler that had already made its job finds it
(``bot.services.jobs.RepeatedRequest``) and makes no second one.

While a handler runs, each poll returns at once (its update is still there), so a poll that brought nothing
new waits for a handler to finish or ``REPOLL_PAUSE``, whichever comes first: a new message then waits at
most that long. On stop: no more polls, the handlers under way finish (up to ``STOP_WAIT``), and one last
getUpdates confirms what they did. A revoked token ends polling with one line and ``failed`` set, which ends
the process (``bot.telegram.app.running``): better than a live process that hears nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Sequence

from telegram import Update
from telegram.error import InvalidToken, RetryAfter, TelegramError, TimedOut
from telegram.ext import Application

from bot import retrying
from bot.telegram import failures
from bot.telegram.handlers.errors import polling_failed

log = logging.getLogger(__name__)

POLL_TIMEOUT = 10  # seconds a long poll waits for news on Telegram's side (PTB's run_polling default)
REPOLL_PAUSE = 0.5  # seconds before polling again when a poll brought only updates already in hand
FAILURE_PAUSE_CAP = 30.0  # seconds: pauses after failed polls grow to this (PTB's own rule)
STOP_WAIT = 30.0  # seconds the handlers under way may take to finish at a stop


class InHand:
    """The updates being handled: one handling per update id, whoever brings it (a poll, the webhook, or
    Telegram repeating it), and the lowest id not finished."""

    def __init__(self, application: Application) -> None:
        self.application = application
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.finished = asyncio.Event()  # set whenever a handling ends
        self.unfinished: set[int] = set()  # handlings stopped mid-way (at a stop): never confirmed

    def handle(self, update: Update) -> asyncio.Task[None]:
        """The update's handling, started now unless it is under way already."""
        task = self.tasks.get(update.update_id)
        if task is None:
            task = asyncio.create_task(self._handle(update), name=f"update-{update.update_id}")
            self.tasks[update.update_id] = task
        return task

    async def _handle(self, update: Update) -> None:
        try:
            # PTB's update processor: the same concurrency rule as updates from its own queue; handler
            # errors go to the error handlers (``process_update`` does not raise them)
            processor = self.application.update_processor
            await processor.process_update(update, self.application.process_update(update))
        except asyncio.CancelledError:
            self.unfinished.add(update.update_id)
            raise
        except Exception:  # a bug outside any handler: logged, and the update counts as handled
            log.exception("update %d could not be handled", update.update_id)
        finally:
            self.tasks.pop(update.update_id, None)
            self.finished.set()

    def lowest(self) -> int | None:
        """The lowest update id in hand or stopped mid-way: what may not be confirmed yet."""
        return min(self.tasks.keys() | self.unfinished, default=None)

    async def drain(self, seconds: float) -> None:
        """Wait for the handlings under way (at a stop)."""
        tasks = list(self.tasks.values())
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=seconds)
        if pending:
            log.warning("%d update(s) still in hand at the stop; Telegram sends them again", len(pending))
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)


class Poller:
    """getUpdates in a loop, for ``bot.telegram.app.running`` (the Application is built without PTB's
    ``Updater``)."""

    def __init__(
        self, application: Application, allowed_updates: Sequence[str], *, timeout: int = POLL_TIMEOUT
    ) -> None:
        self.application = application
        self.allowed_updates = list(allowed_updates)
        self.timeout = timeout
        self.in_hand = InHand(application)
        self.failed: BaseException | None = None  # why polling ended by itself (a revoked token)
        self.ended = asyncio.Event()  # polling ended by itself
        self._done: set[int] = set()  # handled ids at or above the offset (they come again until confirmed)
        self._next: int | None = None  # one past the highest update id seen
        self._task: asyncio.Task[None] | None = None

    def offset(self) -> int | None:
        """What getUpdates confirms: everything below the lowest update not yet handled."""
        lowest = self.in_hand.lowest()
        return lowest if lowest is not None else self._next

    async def start(self) -> None:
        """Delete any webhook (how going back from a webhook to polling works), keeping the updates that
        waited (``drop_pending_updates=False``), then poll in the background."""
        await retrying.retried(
            lambda: self.application.bot.delete_webhook(drop_pending_updates=False),
            passing=failures.passing,
            asked=failures.asked,
            what="deleting the Telegram webhook at start",
        )
        self._task = asyncio.create_task(self._poll_forever(), name="telegram-polling")

    async def stop(self) -> None:
        """Stop fetching, let the handlers under way finish, then confirm what they handled."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.in_hand.drain(STOP_WAIT)
        self._forget_done()
        if self.failed is None and self._next is not None:
            try:
                await self.application.bot.get_updates(
                    offset=self.offset(), timeout=0, allowed_updates=self.allowed_updates
                )
            except TelegramError as err:
                log.warning("the last updates handled were not confirmed (%s); they come again", err)

    async def _poll_forever(self) -> None:
        pause = 0.0
        while True:
            try:
                updates = await self.application.bot.get_updates(
                    offset=self.offset(), timeout=self.timeout, allowed_updates=self.allowed_updates
                )
            except InvalidToken as err:
                log.critical("Telegram refuses the bot's token (%s): polling stopped; set a valid token", err)
                self.failed = err
                self.ended.set()
                return
            except RetryAfter as err:
                await asyncio.sleep((failures.asked(err) or 1.0) + 0.5)
                continue
            except TimedOut:
                continue  # a long poll that outlasted the read timeout: poll again at once
            except TelegramError as err:
                polling_failed(err)  # one line (409 Conflict: one line per CONFLICT_QUIET)
                pause = min(FAILURE_PAUSE_CAP, max(1.0, pause * 1.5))
                await asyncio.sleep(pause)
                continue
            pause = 0.0
            if not self._take(updates):
                await self._wait_for_news()

    def _take(self, updates: Sequence[Update]) -> bool:
        """Start handling the updates not yet in hand; False when there was none."""
        new = False
        for update in updates:
            uid = update.update_id
            if uid in self.in_hand.tasks or uid in self._done:
                continue
            if self._next is not None and uid < self._next:
                continue  # confirmed already (an answer that overtook the last one)
            new = True
            self._next = max(self._next or 0, uid + 1)
            self.in_hand.handle(update).add_done_callback(functools.partial(self._handled, uid))
        self._forget_done()
        return new

    def _handled(self, uid: int, _: asyncio.Task[None]) -> None:
        self._done.add(uid)

    def _forget_done(self) -> None:
        offset = self.offset()
        if offset is not None:
            self._done = {uid for uid in self._done if uid >= offset}

    async def _wait_for_news(self) -> None:
        """Only updates in hand came back: wait for one to finish (the offset moves) or a short pause."""
        if not self.in_hand.tasks:
            return
        self.in_hand.finished.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.in_hand.finished.wait(), REPOLL_PAUSE)

"""The Celery queue's link to the broker: a listener thread that consumes the workers' events queue, and
the sends (tasks, stops) the queue makes from threads (see ``celery_queue``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.workers import broker as protocol
from engine.workers import wire
from engine.workers.process import Expiring, keep_connected
from engine.workers.settings import QueueSettings
from engine.workers.wire import Ticket

log = logging.getLogger(__name__)

DRAIN_SECONDS = 0.5  # the listener looks at its connection's heartbeat at least this often
STOP_TIMEOUT = 10.0  # how long the listener gets to end at close()
LISTENER_PREFETCH = 50
RECONNECT_DELAY = 1.0  # between the listener's attempts to reach the broker again
STOP_RETRY = {"max_retries": 2, "interval_start": 0.2, "interval_step": 0.5}
JOB_REPORTS = (wire.STARTED, wire.PROGRESS, wire.DONE, wire.FAILED)
STOP_RESEND = 2.0  # a withdrawn task that keeps running is told again at most this often
WITHDRAWN_TTL = 3600.0  # withdrawn task ids are remembered this long


@dataclass(frozen=True)
class Event:
    """A message from a worker, decoded in the listener thread."""

    kind: str
    worker: str
    task_id: str | None = None
    job_id: int | None = None
    report: wire.Report | None = None  # a job's report (started, progress, done, failed)
    fields: dict[str, Any] = field(default_factory=dict)  # the rest: reason, heartbeat data


@dataclass(frozen=True)
class Link:
    """The listener's connection to the broker went down (``up=False``) or is up again."""

    up: bool
    reason: str = ""


def decode(body: Any) -> Event | None:
    """A worker's message as an ``Event`` (a job's report decoded by ``wire.decode``, as on the pipe);
    ``None`` (logged) for anything malformed."""
    try:
        fields = dict(body)
        kind, worker = str(fields.pop("kind")), str(fields.pop("worker"))
        task_id = fields.pop("task_id", None)
        job_id = fields.get("job_id")
        report = wire.decode(body) if kind in JOB_REPORTS else None
        return Event(
            kind=kind,
            worker=worker,
            task_id=None if task_id is None else str(task_id),
            job_id=None if job_id is None else int(job_id),
            report=report,
            fields=fields,
        )
    except Exception:
        log.exception("celery queue: an unreadable message from a worker was dropped")
        return None


class _LoopClosed(Exception):
    """The bot's event loop is gone: the listener thread ends."""


class Listener(threading.Thread):
    """Consumes the events queue with its own kombu connection and posts what it gets to the loop.

    Reconnects by itself, posting ``Link(False)`` when the connection breaks (or cannot be made) and
    ``Link(True)`` each time it is consuming again.
    """

    def __init__(self, settings: QueueSettings, post: Callable[[Event | Link], None]) -> None:
        super().__init__(name="stylebot-celery-listener", daemon=True)
        self._settings = settings
        self._post = post
        self._closing = threading.Event()

    def close(self) -> None:
        self._closing.set()
        self.join(STOP_TIMEOUT)

    def run(self) -> None:
        """Consume until closed, trying to reconnect every ``RECONNECT_DELAY`` seconds: the sooner the
        bot hears again after a broker restart, the sooner lost tasks are sent again."""
        with contextlib.suppress(_LoopClosed):  # nobody is listening any more
            keep_connected(
                self._consume,
                self._closing,
                delay=RECONNECT_DELAY,
                on_error=lambda err: self._tell(Link(False, repr(err))),
            )

    def _consume(self) -> None:
        queue = protocol.events_queue(self._settings.names)
        with protocol.connect(self._settings, heartbeat=protocol.KOMBU_HEARTBEAT) as connection:
            connection.ensure_connection(max_retries=1)
            with connection.Consumer(
                [queue],
                callbacks=[self._on_message],
                accept=["json"],
                prefetch_count=LISTENER_PREFETCH,
                on_decode_error=self._on_bad_message,
            ):
                self._tell(Link(True))
                while not self._closing.is_set():
                    try:
                        connection.drain_events(timeout=DRAIN_SECONDS)
                    except TimeoutError:
                        connection.heartbeat_check()

    def _on_message(self, body: Any, message: Any) -> None:
        event = decode(body)
        if event is not None:
            self._tell(event)
        message.ack()

    def _on_bad_message(self, message: Any, err: Exception) -> None:
        log.error("celery queue: dropped a message that is not JSON (%s): %r", message.content_type, err)
        message.ack()

    def _tell(self, item: Event | Link) -> None:
        try:
            self._post(item)
        except RuntimeError as err:  # call_soon_threadsafe on a closed event loop
            raise _LoopClosed from err


class BrokerSends:
    """The bot's sends: tasks, and stop messages for the tasks it gave up on (remembered ``WITHDRAWN_TTL``
    seconds), each stop published in the background, the same one at most every ``STOP_RESEND`` seconds.
    Blocking sends run in ``asyncio.to_thread``: Celery's producer pool is safe to share between threads."""

    def __init__(self, settings: QueueSettings) -> None:
        self.app = protocol.make_app(settings)
        self._exchange = protocol.control_exchange(settings.names)
        self.withdrawn: Expiring[str] = Expiring(WITHDRAWN_TTL)
        self._sent: Expiring[tuple[str, str | None]] = Expiring(STOP_RESEND)  # (task id, worker) told
        self._background: set[asyncio.Task[None]] = set()

    def send_job(self, task_id: str, ticket: Ticket, order: int) -> None:
        self.app.send_task(
            protocol.TASK_NAME, args=[ticket.to_dict()], kwargs={"order": order}, task_id=task_id
        )

    def withdraw(self, task_ids: list[str]) -> bool:
        """Give up on these tasks for good: every worker stops them, or skips them when they arrive.
        ``False`` when all of them were told so moments ago (nothing sent)."""
        self.withdrawn.add(task_ids)
        return self._stop(task_ids, None)

    def stop_copy(self, task_id: str, worker: str) -> None:
        """Stop one worker's copy of a task that runs, as it should, somewhere else."""
        self._stop([task_id], worker)

    async def close(self, within: float) -> None:
        """Wait (at most ``within`` seconds) for the stops still on their way, then let go of the broker."""
        if self._background:
            await asyncio.wait(self._background, timeout=within)
        await asyncio.to_thread(self.app.close)

    def _stop(self, task_ids: list[str], worker: str | None) -> bool:
        fresh = [t for t in task_ids if self._sent.since((t, worker)) >= STOP_RESEND]
        if not fresh:
            return False
        self._sent.add([(t, worker) for t in fresh])
        task = asyncio.get_running_loop().create_task(self._publish(fresh, worker))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return True

    async def _publish(self, task_ids: list[str], worker: str | None) -> None:
        try:
            await asyncio.to_thread(self._publish_stop, task_ids, worker)
        except Exception as err:
            log.warning("celery queue: could not send a stop for %s: %r", ", ".join(task_ids), err)

    def _publish_stop(self, task_ids: list[str], worker: str | None) -> None:
        with self.app.producer_pool.acquire(block=True, timeout=protocol.CONNECT_TIMEOUT) as producer:
            producer.publish(
                protocol.stop_message(task_ids, worker),
                exchange=self._exchange,
                routing_key="",
                declare=[self._exchange],
                serializer="json",
                retry=True,
                retry_policy=STOP_RETRY,
            )


__all__ = ["BrokerSends", "Event", "Link", "Listener", "decode"]

"""A Celery worker's link to the broker, beside Celery's own consumer: the outbox its jobs' reports go
out on, and the sidecar thread (the bot's stop messages in, heartbeats out, and two watchdogs).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

from kombu import Queue
from kombu.exceptions import OperationalError

from engine.workers import broker as protocol
from engine.workers import wire
from engine.workers.process import keep_connected
from engine.workers.settings import QueueSettings

if TYPE_CHECKING:
    from engine.workers.celery_worker import WorkerRuntime

log = logging.getLogger(__name__)

RECONNECT_DELAY = 1.0  # the sidecar's pause between attempts to reach the broker again
TICK = 0.25  # how often the sidecar looks at its connection, the job and its parent
# How long a job's start or end is pushed at a broker that is down (a broker restart); a progress report is
# not worth holding up the engine for.
FINAL_PATIENCE = 120.0


class Outbox:
    """Publishes a job's events from the thread that runs jobs, on a connection of its own (kombu
    connections are not shared between threads)."""

    def __init__(self, settings: QueueSettings) -> None:
        self._settings = settings
        self._queue = protocol.events_queue(settings.names)
        self._connection = protocol.connect(settings)
        self._lock = threading.Lock()  # the engine thread and the tasks' threads share the connection
        self._errors = (
            OperationalError,  # what kombu raises once its retries are spent
            *self._connection.connection_errors,
            *self._connection.channel_errors,
            OSError,
        )

    def publish(self, body: dict[str, Any], *, final: bool) -> bool:
        """Send one event; ``False`` if the broker could not be reached. A ``final`` one (started, done,
        failed...) is tried again every second for ``FINAL_PATIENCE`` seconds (a broker restart); a
        progress report is tried once."""
        with self._lock:
            return self._publish_patiently(body, final=final)

    def _publish_patiently(self, body: dict[str, Any], *, final: bool) -> bool:
        deadline = time.monotonic() + (FINAL_PATIENCE if final else 0.0)
        attempts = 0
        while True:
            attempts += 1
            try:
                self._publish_once(body)
                if attempts > 1:
                    log.info(
                        "sent %s of job %s after %d attempts", body["kind"], body.get("job_id"), attempts
                    )
                return True
            except self._errors as err:
                if time.monotonic() >= deadline:
                    level = logging.ERROR if final else logging.WARNING
                    log.log(level, "could not send %s of job %s: %r", body["kind"], body.get("job_id"), err)
                    return False
                if attempts == 1:
                    log.warning("the broker is out of reach (%r); trying again every second", err)
            time.sleep(1.0)

    def _publish_once(self, body: dict[str, Any]) -> None:
        producer = self._connection.Producer(serializer="json")
        producer.publish(
            body,
            exchange="",
            routing_key=self._queue.name,
            declare=[self._queue],
            delivery_mode=2,
            retry=True,
            retry_policy={"max_retries": 1},
        )

    def close(self) -> None:
        with self._lock:
            self._connection.release()


class Sidecar(threading.Thread):
    """The worker's background thread: stop messages in, heartbeats out, and two watchdogs."""

    def __init__(self, runtime: WorkerRuntime, *, parent_pid: int) -> None:
        super().__init__(name="stylebot-sidecar", daemon=True)
        self._runtime = runtime
        self._settings = runtime.settings
        self._parent_pid = parent_pid
        self._closing = threading.Event()
        self._next_beat = 0.0
        self._orphaned = False
        self._failures = 0  # attempts in a row to reach the broker that failed

    def close(self) -> None:
        """Say goodbye to the bot and end the thread."""
        self._closing.set()
        self.join(5.0)
        self._runtime.publish(protocol.event(protocol.BYE, self._runtime.name), final=False)

    def run(self) -> None:
        """Serve until closed, reconnecting every second: the bot counts a worker it cannot hear from
        for a few heartbeats as gone, so the heartbeats must come back soon after the broker does."""
        keep_connected(
            self._serve,
            self._closing,
            delay=RECONNECT_DELAY,
            on_error=self._on_error,  # a lost connection, most likely: the watchdogs keep going
            meanwhile=self._watch,
            tick=TICK,
        )

    def _on_error(self, err: Exception) -> None:
        self._failures += 1
        if self._failures == 1 or self._failures % 30 == 0:
            log.warning("control channel: %r; reconnecting every %.0f s", err, RECONNECT_DELAY)

    def _serve(self) -> None:
        names = self._settings.names
        with protocol.connect(self._settings, heartbeat=protocol.KOMBU_HEARTBEAT) as connection:
            connection.ensure_connection(max_retries=1)
            own = f"{names.control}.{self._runtime.name}"
            queue = Queue(
                own, protocol.control_exchange(names), exclusive=True, auto_delete=True, durable=False
            )
            producer = connection.Producer(serializer="json")
            with connection.Consumer([queue], callbacks=[self._on_message], accept=["json"], no_ack=True):
                log.info("control channel: connected")
                self._failures = 0
                while not self._closing.is_set():
                    self._watch()
                    self._beat(producer)
                    try:
                        connection.drain_events(timeout=TICK)
                    except TimeoutError:
                        connection.heartbeat_check()

    def _on_message(self, body: dict[str, Any], _message: Any) -> None:
        target = body.get("worker")
        task_ids = body.get("stop") or []
        if task_ids and target in (None, self._runtime.name):
            self._runtime.on_stop_message([str(t) for t in task_ids])

    def _beat(self, producer: Any) -> None:
        now = time.monotonic()
        if now < self._next_beat:
            return
        interval = self._settings.queue_heartbeat_seconds
        self._next_beat = now + interval
        runs = self._runtime.running()
        body = protocol.event(
            protocol.HEARTBEAT,
            self._runtime.name,
            pid=os.getpid(),
            device=self._runtime.engine.device_name,
            interval=interval,
            task_ids=[run.task_id for run in runs],
            job_ids=[run.job_id for run in runs],
            idle_seconds=0.0 if runs else now - self._runtime.idle_since,
            batch_limits=self._runtime.batch_limits,
        )
        names = self._settings.names
        producer.publish(
            body,
            exchange="",
            routing_key=names.events,
            declare=[protocol.events_queue(names)],
            delivery_mode=1,
            expiration=3 * interval,  # RabbitMQ drops heartbeats nobody read in time
        )

    def _watch(self) -> None:
        """A stopped job that will not stop, or a supervisor that is gone: this process must end."""
        now = time.monotonic()
        for run in self._runtime.running():
            asked = run.stop_asked_at
            if asked is not None and now - asked > self._runtime.cancel_grace:
                log.critical(
                    "%s: still running %.0f s after it was asked to stop; ending this process",
                    run,
                    self._runtime.cancel_grace,
                )
                logging.shutdown()
                os._exit(wire.EXIT_HUNG)
        if not self._orphaned and os.getppid() != self._parent_pid:
            self._orphaned = True
            log.error("the supervisor is gone; shutting down")
            os.kill(os.getpid(), signal.SIGTERM)


__all__ = ["FINAL_PATIENCE", "TICK", "Outbox", "Sidecar"]

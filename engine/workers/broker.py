"""The Celery back end's common ground: the names on the broker (from ``settings``), the Celery app, and the
messages the bot and the workers exchange. Imports neither torch nor the bot, so both sides can use it.

Three things live on the broker, every name starting with ``QUEUE_NAME``:

``<name>.jobs`` (a queue)
    Celery task messages: ``stylize(ticket_dict)`` (a ``wire.Ticket`` by value: the workers may be on other
    machines) with a task id chosen by the bot, JSON only, one task per job. Workers take as many at a
    time as they paint at once (prefetch = their batch size, 1 without batching) and acknowledge each
    when its job has ended (late acks).
``<name>.events`` (a queue the bot alone consumes)
    Worker → bot: ``started``, ``progress``, ``done`` (a ``wire.ResultReport`` with the painting),
    ``failed``, ``released`` (the worker shut down mid-job), ``redelivered`` (the broker handed out a
    task a second time; the worker did not run it), ``heartbeat`` (every ``QUEUE_HEARTBEAT_SECONDS``)
    and ``bye``. Each is a JSON dict built by ``event``.
``<name>.control`` (a fanout exchange; every worker binds a queue of its own)
    Bot → workers: ``{"stop": [task_id, ...], "worker": name or None}``, built by ``stop_message``.

Both queues are durable and fed through the default exchange (routed by the queue's name).

Whoever can publish on the broker can make the bot believe a job ended, with whatever result: the broker
must be private to the bot and its workers (see README). The bot checks every report (``wire``) and never
lets one choose a file name.

Transport differences are settled here, in ``transport_options``: Redis keeps unacknowledged tasks aside
for ``QUEUE_VISIBILITY_TIMEOUT`` seconds and prefixes every key with the queue name (so deployments and
test runs sharing a server never meet); RabbitMQ confirms every publish. AMQP heartbeats are off for
Celery's own connections: a worker computes in the thread that would send them (the ``solo`` pool).
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from celery import Celery
from kombu import Connection, Exchange, Queue
from kombu.exceptions import OperationalError

from engine.workers.settings import Names, QueueSettings
from engine.workers.wire import DONE, FAILED, PROGRESS, STARTED, JobReport, encode

TASK_NAME = "stylebot.stylize"

# Worker → bot message kinds (the ``kind`` field of an event), besides ``wire``'s STARTED, PROGRESS, DONE
# and FAILED.
RELEASED = "released"
REDELIVERED = "redelivered"
HEARTBEAT = "heartbeat"
BYE = "bye"

CONNECT_TIMEOUT = 5.0  # seconds to open a broker connection before it counts as unreachable
KOMBU_HEARTBEAT = 10  # AMQP heartbeat of our own long-lived kombu connections (seconds)


class BrokerUnreachableError(Exception):
    """The broker did not answer: a message for people, in one line."""


def transport_options(settings: QueueSettings) -> dict[str, Any]:
    """Broker transport options, the same for the Celery app and our own kombu connections."""
    if settings.is_redis:
        timeout = settings.queue_visibility_timeout
        return {
            "visibility_timeout": timeout,
            "global_keyprefix": f"{settings.queue_name}:",
            # How often an unacknowledged task past its timeout is looked for; kombu's default sweep
            # (about 100 s) is made for its default timeout of an hour.
            "unacked_restore_interval": max(1.0, min(10.0, timeout / 4)),
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": CONNECT_TIMEOUT,
        }
    return {"confirm_publish": True}


def connect(settings: QueueSettings, *, heartbeat: float = 0) -> Connection:
    """A kombu connection of our own (not from Celery's pools), configured like Celery's."""
    return Connection(
        settings.queue_url,
        heartbeat=heartbeat,
        connect_timeout=CONNECT_TIMEOUT,
        transport_options=transport_options(settings),
    )


def _direct_queue(name: str) -> Queue:
    """A durable queue fed through the default exchange (routed by its name): on RabbitMQ it survives a
    broker restart with its messages, and on Redis it needs no binding, which a restarted Redis forgets."""
    return Queue(name, Exchange(""), routing_key=name, durable=True)


def events_queue(names: Names) -> Queue:
    return _direct_queue(names.events)


def control_exchange(names: Names) -> Exchange:
    return Exchange(names.control, type="fanout", durable=False, auto_delete=False)


def make_app(settings: QueueSettings) -> Celery:
    """The Celery app of both sides: the bot sends with it, ``python -m engine worker`` runs it."""
    names = settings.names
    jobs = _direct_queue(names.jobs)
    app = Celery("stylebot", set_as_current=False)
    app.conf.update(
        broker_url=settings.queue_url,
        broker_transport_options=transport_options(settings),
        broker_connection_timeout=CONNECT_TIMEOUT,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits out a broker outage, however long
        broker_heartbeat=0,
        broker_pool_limit=4,
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_queues=[jobs],
        task_default_queue=names.jobs,
        task_acks_late=True,
        task_reject_on_worker_lost=True,  # for a prefork pool; the solo pool dies with its worker
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0.5, "interval_step": 1.0},
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_pool="solo",
        worker_enable_remote_control=False,  # the control exchange above is how the bot talks to workers
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
        # A job carries on through a broker blip; the copy of its task the broker hands out again is not
        # run (see engine/workers/celery.py), so there is nothing to cancel.
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


def safe_url(settings: QueueSettings) -> str:
    """The broker's URL for logs and messages, its password masked."""
    parts = urlsplit(settings.queue_url)
    if not parts.password:
        return settings.queue_url
    return urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":**@", 1)))


def check_broker(settings: QueueSettings) -> None:
    """Raise ``BrokerUnreachableError`` unless the broker answers within ``CONNECT_TIMEOUT`` seconds."""
    if not settings.queue_url:
        raise BrokerUnreachableError("QUEUE_URL is empty: set it to redis://HOST:6379/0 or amqp://HOST//")
    connection = connect(settings)
    try:
        connection.ensure_connection(max_retries=1, timeout=CONNECT_TIMEOUT)
    except (OperationalError, *connection.connection_errors, OSError) as err:
        raise BrokerUnreachableError(f"the broker at {safe_url(settings)} is unreachable: {err}") from None
    finally:
        connection.release()


def event(kind: str, worker: str, **fields: Any) -> dict[str, Any]:
    """A worker → bot message."""
    return {"kind": kind, "worker": worker, "sent_at": time.time(), **fields}


def report_event(report: JobReport, worker: str, task_id: str) -> dict[str, Any]:
    """A job's report as a worker → bot event: ``wire.encode``'s dict (as on the pipe), plus who sent it
    for which task."""
    return {**encode(report), "worker": worker, "task_id": task_id, "sent_at": time.time()}


def stop_message(task_ids: list[str], worker: str | None = None) -> dict[str, Any]:
    """A bot → workers message: stop these tasks now, and never start them (``worker``: only there)."""
    return {"stop": list(task_ids), "worker": worker}


__all__ = [
    "DONE",
    "FAILED",
    "PROGRESS",
    "STARTED",
    "TASK_NAME",
    "BrokerUnreachableError",
    "Names",
    "QueueSettings",
    "check_broker",
    "connect",
    "control_exchange",
    "event",
    "events_queue",
    "make_app",
    "safe_url",
    "stop_message",
    "transport_options",
]

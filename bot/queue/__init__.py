"""The job queue: one interface (``base.JobQueue``), one dispatcher, two transports chosen by ``QUEUE_URL``.

``ledger`` writes every job state; ``dispatcher.Dispatcher`` keeps the jobs in flight. Empty ``QUEUE_URL``:
``embedded.EmbeddedQueue``, local worker processes (``slots``) fed from the bot's database. ``redis://`` or
``amqp://``: ``celery_queue.CeleryQueue``, Celery workers on other machines (``broker_link``, ``heartbeats``).
"""

"""The job queue: one interface (``base.JobQueue``), two back ends chosen by ``QUEUE_URL``.

Empty ``QUEUE_URL``: ``embedded.EmbeddedQueue``, local worker processes fed from the bot's database.
``redis://`` or ``amqp://``: ``celery_queue.CeleryQueue``, Celery workers on other machines.
"""

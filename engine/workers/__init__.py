"""The processes that run the engine for the bot's job queues, kept apart from the engine library.

``engine/`` (api, optimize, vgg...) is a library and imports nothing from here. This package is what turns
it into workers:

``wire``
    What the bot and a worker tell each other, the same for both transports: the assignment (a list of
    jobs, each with its inputs by reference or by value), the reports (started, progress, done, failed),
    the failure codes of the queue and the exit codes of a worker process. Torch-free.
``runner``
    Building the engine a worker runs (``WorkerOptions``) and running an assignment's jobs with it,
    reporting through whatever transport the worker uses.
``pipe``
    The embedded queue's local worker: a child process of the bot, fed over a pipe.
``settings``, ``broker`` and ``celery``
    The scale-out queue: its settings, the names and messages on the broker (shared with the bot), and
    ``python -m engine worker``, the Celery worker processes.
"""

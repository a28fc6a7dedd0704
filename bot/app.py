"""Builds the python-telegram-bot Application and wires the database, the queue and the handlers.

Start-up (``post_init``): migrate the database, set the command menu, start the queue (which picks up the
jobs of the last run), start the health endpoint and the background fetch of the paintings, deliver results
the last run painted but never sent, start the retention sweep.
Shutdown (``post_shutdown``) stops them in the reverse order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

from telegram import BotCommand, LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, ContextTypes, Defaults, TypeHandler

from bot.config import Settings
from bot.context import KEY, Services, services
from bot.db import Database
from bot.handlers import paint, register
from bot.health import HealthServer, Metrics
from bot.notifier import Notifier
from bot.queue.base import JobQueue
from bot.redaction import protect
from bot.services.albums import AlbumCollector
from bot.services.figures import FigureService
from bot.services.jobs import JobService, Limits
from bot.services.paintings import Paintings
from bot.services.presets import PresetService
from bot.services.retention import Retention, RetentionPolicy
from bot.status import StatusBoard
from bot.texts import LANGUAGES, text
from engine.catalog import load_catalog
from engine.settings import EngineSettings
from engine.style_store import StyleStore

log = logging.getLogger(__name__)

COMMANDS = (
    "start", "styles", "style", "surprise", "strip", "layers", "forming", "settings", "preset", "queue",
    "cancel", "help",
)  # fmt: skip
QueueFactory = Callable[[Settings, Database], JobQueue]
REDELIVERY = "redelivery"  # bot_data key of the task that sends results again until Telegram confirms
REDELIVERY_STOP_TIMEOUT = 10.0


def build_application(settings: Settings, queue_factory: QueueFactory | None = None) -> Application:
    """The whole bot, ready for ``run_polling``; ``queue_factory`` lets tests choose the engine's stand-in."""
    protect(settings.telegram_bot_token.get_secret_value())  # whichever program builds the bot
    api = settings.telegram_api_url
    application = (
        ApplicationBuilder()
        .token(settings.telegram_bot_token.get_secret_value())
        .base_url(f"{api}/bot")
        .base_file_url(f"{api}/file/bot")
        .defaults(
            Defaults(parse_mode=ParseMode.HTML, link_preview_options=LinkPreviewOptions(is_disabled=True))
        )
        .rate_limiter(AIORateLimiter(max_retries=3))
        .concurrent_updates(True)  # a slow download for one user must not hold up everyone else
        .post_init(_post_init)
        .post_shutdown(_post_shutdown)
        .build()
    )
    db = Database(settings.database_url)
    queue = (queue_factory or make_queue)(settings, db)
    catalog = load_catalog()
    metrics = Metrics()
    limits = Limits(settings.max_active_jobs, settings.max_jobs_per_hour, settings.max_queue_length)
    jobs = JobService(
        db, queue, jobs_dir=settings.jobs_dir, limits=limits, max_image_pixels=settings.max_image_pixels
    )
    board = StatusBoard(
        application.bot,
        db,
        interval_private=settings.status_interval_private,
        interval_group=settings.status_interval_group,
    )
    notifier = Notifier(
        application.bot,
        db,
        jobs,
        board,
        metrics,
        results_dir=settings.results_dir,
    )
    application.bot_data[KEY] = Services(
        settings=settings,
        db=db,
        queue=queue,
        jobs=jobs,
        presets=PresetService(db, catalog, settings.max_presets),
        figures=FigureService(db, jobs, catalog, retention=timedelta(days=settings.result_retention_days)),
        notifier=notifier,
        catalog=catalog,
        paintings=Paintings(StyleStore.from_settings(settings, catalog), prefetch=settings.styles_prefetch),
        metrics=metrics,
        albums=AlbumCollector(settings.album_wait_seconds, paint.on_album),
        health=HealthServer(
            metrics,
            queue.status,
            lambda: notifier.counts,
            host=settings.health_host,
            port=settings.health_port,
        ),
        retention=Retention(
            db,
            results_dir=settings.results_dir,
            jobs_dir=settings.jobs_dir,
            policy=RetentionPolicy(
                results=timedelta(days=settings.result_retention_days),
                orphans=timedelta(hours=settings.orphan_input_hours),
                every=timedelta(minutes=settings.retention_sweep_minutes),
            ),
        ),
    )
    application.add_handler(TypeHandler(Update, track_user), group=-1)
    register(application)
    return application


@contextlib.asynccontextmanager
async def running(application: Application) -> AsyncIterator[None]:
    """What ``run_polling`` does, as a context manager: the same hooks in the same order, for running the
    bot inside another program's event loop (the end-to-end tests, the load benchmark)."""
    async with application:
        assert application.post_init is not None
        assert application.post_shutdown is not None
        await application.post_init(application)
        try:
            assert application.updater is not None
            await application.updater.start_polling(
                poll_interval=0.0, timeout=1, allowed_updates=Update.ALL_TYPES
            )
            await application.start()
            try:
                yield
            finally:
                await application.updater.stop()
                await application.stop()
        finally:
            await application.post_shutdown(application)


def make_queue(settings: Settings, db: Database) -> JobQueue:
    """The back end ``QUEUE_URL`` asks for: local worker processes when empty, Celery otherwise."""
    if settings.queue_url:
        from bot.queue.celery_queue import CeleryQueue

        return CeleryQueue(db, settings, results_dir=settings.results_dir)
    from bot.queue.embedded import EmbeddedQueue
    from engine.workers.runner import WorkerOptions

    options = WorkerOptions(
        name="worker",
        device=settings.engine_device,
        engine_settings=settings.model_dump(mode="json", include=set(EngineSettings.model_fields)),
        threads=settings.engine_threads,
        log_level=settings.log_level,
    )
    return EmbeddedQueue(
        db,
        worker_options=options,
        results_dir=settings.results_dir,
        workers=settings.engine_workers,
        stall_seconds=settings.worker_stall_seconds,
    )


async def track_user(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Keep each sender's row (language, name) current; runs before every other handler of the update.
    A chat that sends (an anonymous admin's group, a channel) gets a row of its own: see ``sender_id``."""
    message, user = update.effective_message, update.effective_user
    if update.callback_query is None and message is not None and message.sender_chat is not None:
        chat = message.sender_chat
        await services(context).db.upsert_user(chat.id, chat.username, chat.effective_name, None)
    elif user is not None and not user.is_bot:
        await services(context).db.upsert_user(user.id, user.username, user.first_name, user.language_code)


async def _post_init(application: Application) -> None:
    s = services(application)
    await s.db.migrate()
    await _set_commands(application)
    await s.queue.start(s.notifier)
    await s.health.start()
    s.paintings.start()  # in the background: the bot answers at once, paintings arrive as they come
    # Results not confirmed sent by the last run go out now, and any that fail to go out, later.
    application.bot_data[REDELIVERY] = asyncio.create_task(s.notifier.redeliver_forever(), name="redelivery")
    await s.retention.start()  # tidies results and job inputs now, then every RETENTION_SWEEP_MINUTES
    await s.notifier.queue_changed()
    log.info("Stylebot is up as @%s (queue: %s)", application.bot.username, s.queue.status().backend)


async def _set_commands(application: Application) -> None:
    for language in LANGUAGES:
        commands = [BotCommand(name, text(language, f"command_{name}")) for name in COMMANDS]
        await application.bot.set_my_commands(commands, language_code=None if language == "en" else language)


async def _post_shutdown(application: Application) -> None:
    s = services(application)
    await s.retention.stop()
    redelivery = application.bot_data.pop(REDELIVERY, None)
    if redelivery is not None:  # a send under way is finished and recorded, or it would go out twice
        s.notifier.stop_redelivering()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(redelivery), REDELIVERY_STOP_TIMEOUT)
        redelivery.cancel()
        await asyncio.gather(redelivery, return_exceptions=True)
    await s.albums.close()
    await s.paintings.close()
    with contextlib.suppress(Exception):
        await s.queue.stop()
    await s.notifier.board.close()
    await s.health.stop()
    await s.db.dispose()

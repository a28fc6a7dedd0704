"""Builds the shared core (database, queue, notifier, services) and runs it under every front end.

Start-up: the health endpoint first, then take the database's lease (``bot.db.lease``: while another bot
process holds it, wait, alive and saying so on ``/healthz``), then migrate the database; the front ends
attach (each adds its ``Frontend`` to the notifier); then start the queue (which picks up the jobs of the
last run), the background fetch of the paintings, the redelivery of results the last run painted but never
sent, and the retention sweep; then the endpoint says the process serves.
Shutdown stops them in the reverse order and gives the lease back last, once the queue has put its jobs
back. A process that loses its lease while it runs exits at once with ``EXIT_LEASE_LOST`` (see
``lease_lost``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable
from datetime import timedelta

from bot.config import Settings
from bot.context import Services
from bot.db import Database
from bot.db.lease import lease_for
from bot.health import HealthServer, Metrics
from bot.notifier import Notifier
from bot.queue.base import JobQueue
from bot.services.access import Admins
from bot.services.chats import ChatService
from bot.services.clips import ClipService
from bot.services.figures import FigureService
from bot.services.jobs import JobService, Limits
from bot.services.moderation import ModerationService
from bot.services.paint import PaintService
from bot.services.paintings import Paintings
from bot.services.presets import PresetService
from bot.services.retention import Retention, RetentionPolicy
from bot.services.sharing import SharingService
from bot.services.sketches import INSTANT_SIDE, SketchService
from bot.services.stats import StatsService
from bot.services.style_images import StyleImageService
from bot.services.users import UserService
from engine.catalog import load_catalog
from engine.clips import ClipLimits
from engine.settings import SKETCH_CACHE_FOLDER, EngineSettings
from engine.style_store import StyleStore
from engine.workers.sketcher import SketchPool

log = logging.getLogger(__name__)

QueueFactory = Callable[[Settings, Database], JobQueue]
REDELIVERY_STOP_TIMEOUT = 10.0
EXIT_LEASE_LOST = 75  # sysexits' EX_TEMPFAIL: a supervisor should start the bot again


def build_services(settings: Settings, queue_factory: QueueFactory | None = None) -> Services:
    """The core, ready to start; ``queue_factory`` lets tests choose the engine's stand-in."""
    db = Database(settings.database_url)
    queue = (queue_factory or make_queue)(settings, db)
    catalog = load_catalog()
    metrics = Metrics()
    limits = Limits(settings.max_active_jobs, settings.max_jobs_per_hour, settings.max_queue_length)
    admins = Admins.from_settings(settings)
    jobs = JobService(
        db,
        queue,
        jobs_dir=settings.jobs_dir,
        limits=limits,
        max_image_pixels=settings.max_image_pixels,
        admins=admins,
    )
    offer = settings.sketch_offer_minutes * 60 if settings.sketch_offer_minutes > 0 else None
    notifier = Notifier(db, jobs, metrics, results_dir=settings.results_dir, sketch_offer_seconds=offer)
    paintings = Paintings(StyleStore.from_settings(settings, catalog), prefetch=settings.styles_prefetch)
    sketches = SketchService(
        SketchPool(settings.style_cache_dir / SKETCH_CACHE_FOLDER, threads=settings.sketch_threads),
        db,
        paintings.store,
        notifier,
        queue,
        preview=settings.sketch_preview,
        side=settings.sketch_side,
        instant_side=min(INSTANT_SIDE, settings.output_max_side),
        max_pixels=settings.max_image_pixels,
    )
    jobs.sketches = sketches
    jobs.announce_cancelled = notifier.cancelled
    presets = PresetService(db, catalog, settings.max_presets, admins)
    style_images = StyleImageService(db, max_image_pixels=settings.max_image_pixels)
    paint = PaintService(jobs, presets, style_images, default_quality=settings.default_quality)
    return Services(
        settings=settings,
        db=db,
        queue=queue,
        jobs=jobs,
        presets=presets,
        figures=FigureService(
            db,
            jobs,
            catalog,
            retention=timedelta(days=settings.result_retention_days),
            paintings=paintings,
        ),
        notifier=notifier,
        catalog=catalog,
        paintings=paintings,
        metrics=metrics,
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
        sketches=sketches,
        admins=admins,
        users=UserService(db),
        style_images=style_images,
        paint=paint,
        moderation=ModerationService(
            db, jobs, admins, results_dir=settings.results_dir, jobs_dir=settings.jobs_dir
        ),
        stats=StatsService(db, queue, admins),
        sharing=SharingService(
            db,
            catalog,
            results_dir=settings.results_dir,
            retention=timedelta(days=settings.result_retention_days),
        ),
        clips=ClipService(
            paint,
            limits=ClipLimits(settings.clip_max_seconds, settings.clip_max_fps),
        ),
        chats=ChatService(db),
    )


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


def lease_lost(reason: str) -> None:
    """The lease is gone while this process runs jobs: another process may be recovering them already, so
    this one must not dispatch, deliver or put a single job back. No graceful stop can promise that (the
    stop puts running jobs back in the queue), so the process exits at once, as if killed: its workers see
    their pipe end, and the next holder recovers the jobs. A supervisor starts it again, to wait its turn."""
    log.critical(
        "exiting at once (code %d) so that only one process runs the jobs: %s", EXIT_LEASE_LOST, reason
    )
    logging.shutdown()
    sys.stderr.flush()
    os._exit(EXIT_LEASE_LOST)


class Runtime:
    """The core's life: ``prepare`` before the front ends attach, ``start`` after, ``stop`` at the end.

    ``stopping`` is the process's stop request (SIGTERM): set while ``prepare`` waits for the lease, it ends
    the wait; ``stop`` sets it too."""

    def __init__(self, services: Services, stopping: asyncio.Event | None = None) -> None:
        self.services = services
        self.stopping = stopping or asyncio.Event()
        self.lease = lease_for(services.db.url, on_lost=lease_lost)
        self._redelivery: asyncio.Task[None] | None = None
        self._preparing: asyncio.Task[object] | None = None

    async def prepare(self) -> bool:
        """Take the database's lease, waiting while another bot process holds it, then migrate. ``False``:
        the stop came first; start nothing (no front end either: a second poller gets 409 from Telegram)."""
        self._preparing = asyncio.current_task()
        health = self.services.health
        health.stand_by(lambda: self.lease.holder)
        try:  # before the wait: a standby process answers its liveness probe
            await health.start()
        except OSError as err:  # another bot on this host has the port: try again once this one starts
            log.warning(
                "health endpoint not up while waiting for the database's lease (port %d: %s); "
                "trying again once this process holds it",
                health.port,
                err.strerror or type(err).__name__,
            )
        try:
            if not await self.lease.acquire(self.stopping):
                log.info("stopped before this process held the database's lease; nothing was started")
                return False
        finally:
            self._preparing = None
        health.starting()
        await self.services.db.migrate()
        return True

    async def start(self) -> None:
        s = self.services
        await s.queue.start(s.notifier)
        s.sketches.start()  # the sketch process warms in the background (SKETCH_PREVIEW)
        await s.health.start()  # up since prepare, unless its port was taken then
        s.paintings.start()  # in the background: the bot answers at once, paintings arrive as they come
        # Results not confirmed sent by the last run go out now, and any that fail to go out, later.
        self._redelivery = asyncio.create_task(s.notifier.redeliver_forever(), name="redelivery")
        await s.retention.start()  # tidies results and job inputs now, then every RETENTION_SWEEP_MINUTES
        await s.notifier.queue_changed()
        s.health.serving()
        log.info(
            "Stylebot core is up (front ends: %s; queue: %s)",
            ", ".join(sorted(s.notifier.frontends)) or "none",
            s.queue.status().backend,
        )

    async def stop(self) -> None:
        s = self.services
        self.stopping.set()  # a prepare still waiting for the lease gives up
        preparing = self._preparing
        if preparing is not None and preparing is not asyncio.current_task():
            await asyncio.wait({preparing})  # PTB's post_init, stopped by SIGTERM while it waited
        await s.retention.stop()
        redelivery, self._redelivery = self._redelivery, None
        if redelivery is not None:  # a send under way is finished and recorded, or it would go out twice
            s.notifier.stop_redelivering()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(redelivery), REDELIVERY_STOP_TIMEOUT)
            redelivery.cancel()
            await asyncio.gather(redelivery, return_exceptions=True)
        await s.paintings.close()
        with contextlib.suppress(Exception):
            await s.sketches.close()
        with contextlib.suppress(Exception):
            await s.queue.stop()
        await s.jobs.close()
        for frontend in list(s.notifier.frontends.values()):
            await frontend.close()
        await s.health.stop()
        await self.lease.release()  # last: the next holder finds the jobs as this one left them
        await s.db.dispose()

"""The services every handler needs, kept in ``application.bot_data`` and fetched with ``services()``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from telegram.ext import Application, ContextTypes

from bot.config import Settings
from bot.db import Database
from bot.health import HealthServer, Metrics
from bot.notifier import Notifier
from bot.queue.base import JobQueue
from bot.services.figures import FigureService
from bot.services.jobs import JobService
from bot.services.paintings import Paintings
from bot.services.presets import PresetService
from bot.services.retention import Retention
from engine.catalog import Catalog

if TYPE_CHECKING:
    from bot.handlers.paint import AlbumItem
    from bot.services.albums import AlbumCollector


@dataclass
class Services:
    settings: Settings
    db: Database
    queue: JobQueue
    jobs: JobService
    presets: PresetService
    figures: FigureService
    notifier: Notifier
    catalog: Catalog
    paintings: Paintings
    metrics: Metrics
    albums: AlbumCollector[AlbumItem]
    health: HealthServer
    retention: Retention


KEY = "services"


def services(source: ContextTypes.DEFAULT_TYPE | Application) -> Services:
    """From a handler's context, or from the application itself (start-up and shutdown hooks)."""
    application = source if isinstance(source, Application) else source.application
    return application.bot_data[KEY]

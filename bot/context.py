"""The services every front end shares: one database, one queue, one notifier, whatever platforms run."""

from __future__ import annotations

from dataclasses import dataclass

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
from bot.services.sketches import SketchService
from engine.catalog import Catalog


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
    health: HealthServer
    retention: Retention
    sketches: SketchService

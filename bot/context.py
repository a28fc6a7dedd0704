"""The services every front end shares: one database, one queue, one notifier, whatever platforms run.

A front end calls the services (``jobs``, ``paint``, ``presets``, ``users``, ``figures``, ``sketches``,
``style_images``, ``paintings``, ``moderation``, ``stats``, ``sharing``, ``clips``, ``chats``); ``db`` is
here for the core's own parts, never for a handler.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.config import Settings
from bot.db import Database
from bot.health import HealthServer, Metrics
from bot.notifier import Notifier
from bot.queue.base import JobQueue
from bot.services.access import Admins
from bot.services.chats import ChatService
from bot.services.clips import ClipService
from bot.services.figures import FigureService
from bot.services.jobs import JobService
from bot.services.moderation import ModerationService
from bot.services.paint import PaintService
from bot.services.paintings import Paintings
from bot.services.presets import PresetService
from bot.services.retention import Retention
from bot.services.sharing import SharingService
from bot.services.sketches import SketchService
from bot.services.stats import StatsService
from bot.services.style_images import StyleImageService
from bot.services.users import UserService
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
    admins: Admins
    users: UserService
    style_images: StyleImageService
    paint: PaintService
    moderation: ModerationService
    stats: StatsService
    sharing: SharingService
    clips: ClipService
    chats: ChatService

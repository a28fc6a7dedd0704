"""The real bot, polling a local stand-in for Telegram's Bot API, with real worker processes.

``start_bot`` builds the Application exactly as ``python -m bot`` does
(``bot.telegram.app.build_application``),
points it at the stand-in through ``TELEGRAM_API_URL``, and runs the same start-up and shutdown hooks
``run_polling`` runs. The engine in the workers is the fast fake from ``tests/fakes/engine.py`` unless a
test asks for another factory (the real one included).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.config import Settings
from bot.context import Services
from bot.db import Database
from bot.queue.embedded import EmbeddedQueue
from bot.telegram.app import build_application, running
from bot.telegram.context import services
from engine.catalog import load_catalog
from engine.settings import EngineSettings
from engine.workers.runner import WorkerOptions
from tests.conftest import copy_sqlite
from tests.fakes.telegram_api import Call, FakeTelegram

StartBot = Callable[..., contextlib.AbstractAsyncContextManager[Services]]


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(max_poll_timeout=0.5, wait_timeout=15.0) as server:
        yield server


@pytest.fixture
def settings_for(tmp_path: Path, tg: FakeTelegram, sqlite_template: Path) -> Callable[..., Settings]:
    styles = tmp_path / "styles"
    styles.mkdir(exist_ok=True)
    database_url = copy_sqlite(sqlite_template, tmp_path / "bot.db")  # migrated already

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "telegram_bot_token": tg.token,
            "telegram_api_url": tg.root_url,
            "database_url": database_url,
            "data_dir": tmp_path / "data",
            "styles_dir": styles,
            "style_cache_dir": tmp_path / "stats",
            "styles_prefetch": False,  # the bundled catalog's addresses are on the internet
            "sketch_preview": False,  # the sketch tests (test_sketch.py) turn it on; it costs a process
            "health_port": 0,
            "status_interval_private": 0.3,
            "status_interval_group": 0.6,
            "album_wait_seconds": 0.3,
            "engine_workers": 1,
            "max_image_pixels": 4_000_000,
            **overrides,
        }
        return Settings(**values)

    return make


def paintings_on_disk(settings: Settings, ids: list[str] | None = None) -> list[str]:
    """Put small pictures in the styles folder for ``ids`` (every painting of the catalog by default), as
    if they had been fetched: what "Surprise me" and the gallery's sheets offer."""
    ids = list(load_catalog().ids) if ids is None else ids
    for number, style_id in enumerate(ids):
        Image.new("RGB", (60, 40), (10 * number % 256, 90, 160)).save(settings.styles_dir / f"{style_id}.png")
    return ids


def is_gallery(call: Call) -> bool:
    """A sent gallery: a picture with page buttons under it."""
    markup = call.params.get("reply_markup") or {}
    buttons = [b.get("callback_data", "") for row in markup.get("inline_keyboard", []) for b in row]
    return call.ok and any(data.startswith("gal:") for data in buttons)


def fake_queue(factory: str = "tests.fakes.engine:fake_engine", **queue_options: Any) -> Callable:
    """A queue factory for ``build_application``: the embedded queue, with the engine ``factory``."""

    def make(settings: Settings, db: Database) -> EmbeddedQueue:
        options = WorkerOptions(
            name="worker",
            device="cpu",
            engine_factory=factory,
            engine_settings=settings.model_dump(mode="json", include=set(EngineSettings.model_fields)),
            threads=1,
            log_level="WARNING",
        )
        return EmbeddedQueue(
            db, worker_options=options, results_dir=settings.results_dir, workers=1, **queue_options
        )

    return make


@pytest.fixture
def start_bot(settings_for: Callable[..., Settings]) -> StartBot:
    @contextlib.asynccontextmanager
    async def run(
        settings: Settings | None = None,
        *,
        engine: str = "tests.fakes.engine:fake_engine",
        **queue_options: Any,
    ) -> AsyncIterator[Services]:
        application = build_application(
            settings or settings_for(), queue_factory=fake_queue(engine, **queue_options)
        )
        async with running(application):
            yield services(application)

    return run

"""The real Discord front end (discord.py's own code) against SimCord's in-memory Discord, over the real
core: database, embedded queue, worker process running the fast fake engine (or the real one)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import simcord

from bot.config import Settings
from bot.discord.app import build_client
from bot.runtime import Runtime, build_services
from tests.bot.telegram.e2e.conftest import fake_queue


@pytest.fixture
def discord_settings(tmp_path: Path) -> Callable[..., Settings]:
    styles = tmp_path / "styles"
    styles.mkdir(exist_ok=True)

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "discord_bot_token": "discord.test.token",
            "database_url": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
            "data_dir": tmp_path / "data",
            "styles_dir": styles,
            "style_cache_dir": tmp_path / "stats",
            "styles_prefetch": False,
            "health_port": 0,
            "discord_status_interval": 0.2,
            "engine_workers": 1,
            "max_image_pixels": 4_000_000,
            **overrides,
        }
        return Settings(**values)

    return make


@contextlib.asynccontextmanager
async def discord_bot(
    settings: Settings, *, engine: str = "tests.fakes.engine:fake_engine", **queue_options: Any
) -> AsyncIterator[tuple[simcord.Env, Any]]:
    """The core and the Discord client as ``python -m bot`` runs them; yields SimCord's world and the core."""
    core = build_services(settings, fake_queue(engine, **queue_options))
    runtime = Runtime(core)
    await runtime.prepare()
    client = build_client(settings, core)
    try:
        async with simcord.run(client, check_errors=True) as env:
            await runtime.start()
            try:
                yield env, core
            finally:
                await runtime.stop()
    finally:
        with contextlib.suppress(Exception):
            await core.db.dispose()


async def until(env: simcord.Env, condition: Callable[[], Any], seconds: float = 30.0) -> Any:
    """Real time passes (the worker is a real process); SimCord settles what the bot did meanwhile."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = condition()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time:\n" + env.transcript()[-4000:])
        await asyncio.sleep(0.05)

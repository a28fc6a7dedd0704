"""The real Discord front end (discord.py's own code) against SimCord's in-memory Discord, over the real
core: database, embedded queue, worker process running the fast fake engine (or the real one)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import discord
import pytest
import simcord

from bot.config import Settings
from bot.discord.app import build_client
from bot.runtime import Runtime, build_services
from tests.bot.telegram.e2e.conftest import fake_queue
from tests.conftest import copy_sqlite
from tests.fakes.discord_faults import DiscordFaults
from tests.fakes.engine import GATE, Gate

GATED = "tests.fakes.engine:gated_engine"  # each job waits after its first step for ``gate.release()``


@pytest.fixture
def discord_settings(tmp_path: Path, sqlite_template: Path) -> Callable[..., Settings]:
    styles = tmp_path / "styles"
    styles.mkdir(exist_ok=True)
    database_url = copy_sqlite(sqlite_template, tmp_path / "bot.db")  # migrated already

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "discord_bot_token": "discord.test.token",
            "database_url": database_url,
            "data_dir": tmp_path / "data",
            "styles_dir": styles,
            "style_cache_dir": tmp_path / "stats",
            "styles_prefetch": False,
            "sketch_preview": False,  # Discord shows no sketch of its own yet; spare the process
            "health_port": 0,
            "discord_status_interval": 0.2,
            "engine_workers": 1,
            "max_image_pixels": 4_000_000,
            **overrides,
        }
        return Settings(**values)

    return make


@pytest.fixture
def gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Gate:
    """What the ``GATED`` engine's jobs wait at: the test releases each job when it has done what it races
    against the job (queued another, broke the token). Named in the environment before the world starts,
    so that the worker process inherits it."""
    gate = Gate(tmp_path / "gate")
    monkeypatch.setenv(GATE, str(gate.path))
    return gate


class DiscordBot:
    """SimCord's world and the bot's core; ``restart`` stops the bot (core and client) and starts a new
    one over the same database and data folder, as a redeploy would."""

    def __init__(self, env: simcord.Env, settings: Settings) -> None:
        self.env = env
        self.settings = settings
        self.core: Any = None
        self.runtime: Runtime | None = None

    async def start_core(self, engine: str, **queue_options: Any) -> discord.Client:
        self.core = build_services(self.settings, fake_queue(engine, **queue_options))
        self.runtime = Runtime(self.core)
        await self.runtime.prepare()
        return build_client(self.settings, self.core)

    async def stop_core(self) -> None:
        if self.runtime is not None:
            runtime, self.runtime = self.runtime, None
            await runtime.stop()

    async def restart(self, engine: str = "tests.fakes.engine:fake_engine", **queue_options: Any) -> None:
        await self.stop_core()
        client = await self.start_core(engine, **queue_options)
        await self.env.restart_bot(client)
        assert self.runtime is not None
        await self.runtime.start()


@contextlib.asynccontextmanager
async def discord_bot(
    settings: Settings, *, engine: str = "tests.fakes.engine:fake_engine", **queue_options: Any
) -> AsyncIterator[tuple[simcord.Env, Any]]:
    """The core and the Discord client as ``python -m bot`` runs them; yields SimCord's world and the core."""
    async with discord_world(settings, engine=engine, **queue_options) as bot:
        yield bot.env, bot.core


@contextlib.asynccontextmanager
async def discord_world(
    settings: Settings, *, engine: str = "tests.fakes.engine:fake_engine", **queue_options: Any
) -> AsyncIterator[DiscordBot]:
    """As ``discord_bot``, with the handle that can restart the bot. The core's own tasks (the queue's
    events, the notifier) run on SimCord's clock, as the client's do, so the 15-minute token deadline and
    ``env.advance_time`` mean the same to both."""
    holder = DiscordBot(None, settings)  # type: ignore[arg-type]
    client = await holder.start_core(engine, **queue_options)
    try:
        # DISCORD_SHARD_COUNT unset: SimCord stands in for Discord's recommendation with one shard.
        shard_count = (
            (settings.discord_shard_count or 1) if isinstance(client, discord.AutoShardedClient) else None
        )
        async with simcord.run(client, check_errors=True, shard_count=shard_count) as env:
            holder.env = env
            with env.time_context():
                assert holder.runtime is not None
                await holder.runtime.start()
                try:
                    yield holder
                finally:
                    await holder.stop_core()
    finally:
        with contextlib.suppress(Exception):
            await holder.core.db.dispose()


@contextlib.asynccontextmanager
async def faulty_world(
    settings: Settings, *, seed: int = 0, engine: str = "tests.fakes.engine:fake_engine", **queue_options: Any
) -> AsyncIterator[tuple[DiscordBot, DiscordFaults]]:
    """As ``discord_world``, with a Discord that misbehaves when told to (``DiscordFaults``; off at first)."""
    async with discord_world(settings, engine=engine, **queue_options) as bot:
        faults = DiscordFaults(bot.env, seed=seed)
        try:
            yield bot, faults
        finally:
            faults.close()


async def until(env: simcord.Env, condition: Callable[[], Any], seconds: float = 60.0) -> Any:
    """Real time passes (the worker is a real process); SimCord settles what the bot did meanwhile."""
    deadline = asyncio.get_running_loop().time() + seconds
    while True:
        value = condition()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time:\n" + env.transcript()[-4000:])
        await asyncio.sleep(0.05)


def art_channel(env: simcord.Env) -> tuple[Any, Any, Any]:
    """A guild with a text channel "art" and a member "alice": where most tests paint."""
    guild = env.create_guild()
    channel = guild.create_text_channel("art")
    return guild, channel, guild.add_member(env.create_user("alice"))


def downloaded(env: simcord.Env, attachment: discord.Attachment) -> bytes:
    """An attachment's bytes, as SimCord's CDN holds them."""
    data = env.backend.cdn.get(attachment.url)
    assert data is not None, attachment.url
    return data


def results_for(channel: Any, owner: Any) -> list[Any]:
    """The bot's messages in ``channel`` that mention ``owner`` and carry a picture."""
    return [m for m in channel.history() if m.author.bot and m.attachments and f"<@{owner.id}>" in m.content]


def requests(env: simcord.Env, method: str, fragment: str) -> list[Any]:
    return [r for r in env.http_requests if r.method == method and fragment in r.path]

"""``python -m bot``: run every front end whose token is set, over one core. ``python -m bot migrate``: only
update the database. ``python -m bot sync-commands``: upload Discord's commands (REST only), then exit."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import TYPE_CHECKING

from bot.config import Settings, load_settings, require_a_front_end
from bot.redaction import protect

if TYPE_CHECKING:
    from bot.runtime import QueueFactory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Stylebot, for Telegram and Discord.")
    parser.add_argument("command", nargs="?", choices=("run", "migrate", "sync-commands"), default="run")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    settings = load_settings()
    configure_logging(settings)
    if args.command == "migrate":
        from bot.db import Database

        asyncio.run(_migrate(Database(settings.database_url)))
        return 0
    if args.command == "sync-commands":  # even when unchanged; no core, no gateway
        from bot.discord.app import sync_commands

        return asyncio.run(sync_commands(settings))
    require_a_front_end(settings)
    from bot.discord.app import GatewayEnded
    from bot.telegram.app import PollingEnded

    try:
        asyncio.run(run_all(settings))
    except (PollingEnded, GatewayEnded):  # deaf: logged where it happened; non-zero for compose or systemd
        return 1
    return 0


async def run_all(
    settings: Settings, queue_factory: QueueFactory | None = None, stop: asyncio.Event | None = None
) -> None:
    """Every configured front end over one core, until SIGINT or SIGTERM (or ``stop`` is set)."""
    from bot.runtime import Runtime, build_services

    core = build_services(settings, queue_factory)
    stop = stop or asyncio.Event()
    runtime = Runtime(core, stopping=stop)  # a stop while it waits for the database's lease ends the wait
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if not await runtime.prepare():  # no front end connects before this process holds the lease
            return
        async with contextlib.AsyncExitStack() as stack:  # front ends stop before the core
            if settings.telegram_bot_token is not None:
                from bot.telegram.app import build_application, running

                await stack.enter_async_context(running(build_application(settings, core=core), stop=stop))
            if settings.discord_bot_token is not None:
                from bot.discord.app import running as discord_running

                await stack.enter_async_context(discord_running(settings, core, stop=stop))
            await runtime.start()
            await stop.wait()
    finally:
        await runtime.stop()


async def _migrate(db) -> None:
    try:
        await db.migrate()
    finally:
        await db.dispose()


def configure_logging(settings: Settings) -> None:
    for secret in settings.secrets():
        protect(secret)  # before the first record that could hold it
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per Bot API request otherwise
    logging.getLogger("discord").setLevel(max(logging.INFO, logging.getLogger().level))


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bot``: run the bot (long polling). ``python -m bot migrate``: only update the database."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from telegram import Update

from bot.config import Settings, load_settings
from bot.redaction import protect


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Stylebot, the Telegram bot.")
    parser.add_argument("command", nargs="?", choices=("run", "migrate"), default="run")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    settings = load_settings()
    configure_logging(settings)
    if args.command == "migrate":
        from bot.db import Database

        asyncio.run(_migrate(Database(settings.database_url)))
        return 0
    from bot.app import build_application

    application = build_application(settings)
    application.run_polling(allowed_updates=Update.ALL_TYPES)
    return 0


async def _migrate(db) -> None:
    try:
        await db.migrate()
    finally:
        await db.dispose()


def configure_logging(settings: Settings) -> None:
    protect(settings.telegram_bot_token.get_secret_value())  # before the first record that could hold it
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one INFO line per Bot API request otherwise


if __name__ == "__main__":
    sys.exit(main())

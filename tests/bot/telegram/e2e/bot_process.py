"""``python -m tests.bot.telegram.e2e.bot_process FACTORY``: the bot as ``python -m bot`` runs it (settings
from the environment, ``run_polling`` with its signal handling), its workers running the engine ``FACTORY``
(a fake from ``tests/fakes/engine.py``). For tests that stop the bot the way a service manager does."""

from __future__ import annotations

import sys

from telegram import Update

from bot.__main__ import configure_logging
from bot.config import load_settings
from bot.telegram.app import build_application
from tests.bot.telegram.e2e.conftest import fake_queue


def main(factory: str) -> int:
    settings = load_settings()
    configure_logging(settings)
    application = build_application(settings, queue_factory=fake_queue(factory))
    application.run_polling(allowed_updates=Update.ALL_TYPES)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

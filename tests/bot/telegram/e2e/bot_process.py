"""``python -m tests.bot.telegram.e2e.bot_process FACTORY``: the bot as ``python -m bot`` runs it (settings
from the environment, ``run_all`` with its signal handling and our own polling), its workers running the
engine ``FACTORY`` (a fake from ``tests/fakes/engine.py``). For tests that stop or kill the bot the way a
service manager (or the kernel) does."""

from __future__ import annotations

import asyncio
import sys

from bot.__main__ import configure_logging, run_all
from bot.config import load_settings
from bot.telegram.app import PollingEnded
from tests.bot.telegram.e2e.conftest import fake_queue


def main(factory: str) -> int:
    settings = load_settings()
    configure_logging(settings)
    try:
        asyncio.run(run_all(settings, queue_factory=fake_queue(factory)))
    except PollingEnded:
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

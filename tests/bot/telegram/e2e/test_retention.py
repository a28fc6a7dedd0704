"""While the bot runs, results past their retention and job inputs no job uses are swept away."""

from __future__ import annotations

import asyncio
import os
import time

from tests.bot.telegram.e2e.conftest import StartBot
from tests.fakes import images
from tests.fakes.telegram_api import FakeTelegram


async def test_a_running_bot_sweeps_periodically(tg: FakeTelegram, start_bot: StartBot, settings_for) -> None:
    settings = settings_for(result_retention_days=1, orphan_input_hours=1, retention_sweep_minutes=0.005)
    async with start_bot(settings):
        alice = tg.user("Alice")
        await tg.send_photo(alice, tg.private_chat(alice), images.pattern(), caption="udnie")
        await tg.wait_for("sendPhoto", lambda c: c.ok)
        (result,) = list(settings.results_dir.iterdir())  # this one stays: it is new
        stale = settings.results_dir / "999.png"
        orphan = settings.jobs_dir / "abandoned"
        orphan.mkdir(parents=True)
        (orphan / "content").write_bytes(b"x")
        stale.write_bytes(b"x")
        long_ago = time.time() - 3 * 86400
        for path in (stale, orphan):
            os.utime(path, (long_ago, long_ago))
        for _ in range(100):
            if not stale.exists() and not orphan.exists():
                break
            await asyncio.sleep(0.05)
        assert not stale.exists()
        assert not orphan.exists()
        assert result.exists()

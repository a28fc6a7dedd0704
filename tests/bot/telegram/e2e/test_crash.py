"""A bot process that dies while a handler runs (SIGKILL, out of memory, a lost lease's ``os._exit``) loses
no photo and paints none twice: an update is confirmed to Telegram only once its handler finished
(``bot.telegram.polling``), and a photo whose job was made already makes no second one
(``bot.services.jobs.RepeatedRequest``)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.config import Settings
from tests.bot.telegram.e2e.test_delivery import FAST, SLOW, bot_command, jobs_of, stop_group, until
from tests.fakes import images
from tests.fakes.telegram_api import FakeTelegram


def kill_group(command: subprocess.Popen[bytes]) -> None:
    """SIGKILL to the bot's whole process group: no handler finishes, nothing is confirmed on the way out."""
    os.killpg(command.pid, signal.SIGKILL)
    command.wait(10)


def results(tg: FakeTelegram) -> list[object]:
    return [c for c in tg.calls_to("sendPhoto") if c.ok and "caption" in c.params]


@pytest.mark.timeout(180)
@pytest.mark.parametrize(
    ("held", "made"),
    [("getFile", 0), ("sendMessage", 1)],
    ids=["killed-while-downloading", "killed-after-the-job-was-made"],
)
async def test_a_photo_in_hand_when_the_bot_is_killed_is_painted_once_after_the_restart(
    tg: FakeTelegram, settings_for: Callable[..., Settings], tmp_path: Path, held: str, made: int
) -> None:
    """The photo's handler is held by Telegram (its download, or the status after the job was made) when
    the bot is killed; the restarted bot gets the photo again and it is painted and delivered once."""
    settings = settings_for()
    log = tmp_path / "bot.log"
    alice = tg.user("Alice")
    tg.faults.hold = 30.0
    tg.faults.set(held, share=1.0, kinds=("timeout",))  # no answer for 30 s: the handler is stuck there
    first = bot_command(settings, SLOW, log)
    try:
        await tg.send_photo(alice, tg.private_chat(alice), images.pattern(64, 48), caption="udnie")
        await tg.wait_for(held, lambda c: c.status == 504, timeout=60)
    finally:
        await asyncio.to_thread(kill_group, first)
    assert len(await jobs_of(settings, alice.id)) == made, log.read_text()

    tg.faults.off()
    second = bot_command(settings, FAST, log)
    try:
        await until(lambda: len(results(tg)) >= 1, timeout=60)
        await asyncio.sleep(1.0)  # a second job, were one made, would be painted in this time (FAST)
    finally:
        code = await asyncio.to_thread(stop_group, second)
    assert code == 0, log.read_text()
    jobs = await jobs_of(settings, alice.id)
    assert [job.state for job in jobs] == ["done"], log.read_text()
    assert len(results(tg)) == 1, log.read_text()

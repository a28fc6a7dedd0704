"""Nothing lost between the painting and the user: a result kept before the job is done, sent until
Telegram confirms it (through refusals, failures, restarts), and a graceful stop that costs no attempt."""

from __future__ import annotations

import asyncio
import errno
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot import retrying
from bot.config import Settings
from bot.db import Database
from bot.queue import dispatcher, embedded, ledger
from tests.bot.telegram.e2e.conftest import StartBot
from tests.fakes import images
from tests.fakes.telegram_api import Chat, FakeTelegram, User

ATTEMPTS = 4  # sends of a result through passing failures: the first and one after each of 3 pauses
ROOT = Path(__file__).resolve().parents[4]
SLOW = "tests.fakes.engine:slow_engine"
FAST = "tests.fakes.engine:fake_engine"


async def until(condition: Callable[[], bool], timeout: float = 15.0) -> None:  # noqa: ASYNC109
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110 - calls to the fake Bot API announce nothing
            await asyncio.sleep(0.05)


async def leftover_result(settings: Settings, tg: FakeTelegram, user: User, chat: Chat, label: str) -> int:
    """A job the last run painted and kept but never delivered (it stopped in between)."""
    photo = await tg.send_photo(user, chat, images.pattern(64, 48))
    db = Database(settings.database_url)
    await db.migrate()
    await db.upsert_user(user.id, None, user.first_name, "en", platform="telegram")
    job = await db.create_job(
        user_id=user.id, chat_id=chat.id, chat_type="private", language_code="en",
        source_message_id=photo.message_id, styles=[{"preset": "udnie", "weight": 1.0}], style_label=label,
        settings={}, content_path=str(settings.jobs_dir / "gone" / "content"), platform="telegram",
    )  # fmt: skip
    await db.claim_job(job.id, "worker-0")
    await db.finish_job(job.id, width=64, height=48, engine_seconds=3.0)
    await db.dispose()
    settings.results_dir.mkdir(parents=True, exist_ok=True)
    (settings.results_dir / f"{job.id}.png").write_bytes(images.png(64, 48))
    return job.id


async def delivered_file_id(db: Database, job_id: int) -> str | None:
    """The file id the job's row records once Telegram confirmed the send (it is written just after)."""
    async with asyncio.timeout(10):
        while (job := await db.get_job(job_id)) is None or job.result_file_id is None:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return job.result_file_id


async def test_a_result_that_cannot_be_saved_is_explained(
    tg: FakeTelegram, start_bot: StartBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The painting cannot be put in the results folder (a full disk): the user hears so, and the
    status does not stay at 100 % with a live Cancel button."""

    def full_disk(source: Path, target: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(ledger, "move_durably", full_disk)
    async with start_bot() as services:
        alice = tg.user("Alice")
        await tg.send_photo(alice, tg.private_chat(alice), images.pattern(), caption="udnie")
        final = await tg.wait_for("editMessageText", lambda c: "could not save" in c.params["text"])
        assert not (final.params.get("reply_markup") or {}).get("inline_keyboard")
        job = (await services.db.recent_jobs(alice.id, 1, platform="telegram"))[0]
        assert (job.state, job.error_code) == ("failed", "result_unsaved")
        assert not tg.calls_to("sendPhoto")


async def test_a_caption_over_telegrams_limit_is_cut_to_fit(
    tg: FakeTelegram, start_bot: StartBot, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    alice = tg.user("Alice")
    label = " + ".join(["The Great Wave off Kanagawa"] * 60)  # 1,800 characters
    job_id = await leftover_result(settings, tg, alice, tg.private_chat(alice), label)
    async with start_bot(settings) as services:
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        caption = sent.result["caption"]
        assert caption.startswith("🎨 The Great Wave off Kanagawa + ")
        assert "…" in caption
        assert len(caption.encode("utf-16-le")) // 2 <= 1024
        assert not [c for c in tg.calls_to("sendPhoto") if not c.ok]
        assert await delivered_file_id(services.db, job_id) == sent.result["photo"][-1]["file_id"]


async def test_a_refused_photo_falls_back_to_no_caption_then_to_a_file(
    tg: FakeTelegram, start_bot: StartBot, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    alice = tg.user("Alice")
    job_id = await leftover_result(settings, tg, alice, tg.private_chat(alice), "Udnie")
    tg.fail_next("sendPhoto", times=3, code=400, description="Bad Request: PHOTO_INVALID_DIMENSIONS")
    async with start_bot(settings) as services:
        sent = await tg.wait_for("sendDocument", lambda c: c.ok)
        refused = tg.calls_to("sendPhoto")
        assert [bool(c.params.get("caption")) for c in refused] == [True, False]  # each form once
        assert await delivered_file_id(services.db, job_id) == sent.result["document"]["file_id"]


async def test_a_result_that_could_not_be_sent_goes_out_after_a_restart(
    tg: FakeTelegram,
    start_bot: StartBot,
    settings_for: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Telegram fails (5xx) for every attempt; later, and across a restart, the result still arrives."""
    monkeypatch.setattr(retrying, "PAUSES", (0.05, 0.1, 0.2))
    settings = settings_for()
    alice = tg.user("Alice")
    chat = tg.private_chat(alice)
    tg.fail_next("sendPhoto", times=ATTEMPTS, code=500, description="Internal Server Error")
    async with start_bot(settings) as services:
        await tg.send_photo(alice, chat, images.pattern(), caption="udnie")
        await until(lambda: len(tg.calls_to("sendPhoto")) == ATTEMPTS)
        job = (await services.db.recent_jobs(alice.id, 1, platform="telegram"))[0]
        assert job.state == "done"
        await asyncio.sleep(0.3)
        assert (await services.db.get_job(job.id)).result_file_id is None  # type: ignore[union-attr]
    async with start_bot(settings) as services:
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert await delivered_file_id(services.db, job.id) == sent.result["photo"][-1]["file_id"]


async def test_a_stop_while_sending_loses_nothing(
    tg: FakeTelegram,
    start_bot: StartBot,
    settings_for: Callable[..., Settings],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(retrying, "PAUSES", (60.0,))  # the bot stops while it waits to try again
    monkeypatch.setattr(embedded, "STOP_TIMEOUT", 0.5)
    monkeypatch.setattr(dispatcher, "STOP_TIMEOUT", 0.5)  # the pending send is not waited for 10 s
    settings = settings_for()
    alice = tg.user("Alice")
    tg.fail_next("sendPhoto", code=500, description="Internal Server Error")
    async with start_bot(settings) as services:
        await tg.send_photo(alice, tg.private_chat(alice), images.pattern(), caption="udnie")
        await tg.wait_for("sendPhoto", lambda c: not c.ok)
        job = (await services.db.recent_jobs(alice.id, 1, platform="telegram"))[0]
    async with start_bot(settings) as services:
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert await delivered_file_id(services.db, job.id) == sent.result["photo"][-1]["file_id"]


def bot_command(settings: Settings, factory: str, log: Path) -> subprocess.Popen[bytes]:
    """The bot in a process of its own, in a process group of its own (as a service manager starts it)."""
    assert settings.telegram_bot_token is not None
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "TELEGRAM_BOT_TOKEN": settings.telegram_bot_token.get_secret_value(),
        "TELEGRAM_API_URL": settings.telegram_api_url,
        "DATABASE_URL": settings.database_url,
        "DATA_DIR": str(settings.data_dir),
        "STYLES_DIR": str(settings.styles_dir),
        "STYLE_CACHE_DIR": str(settings.style_cache_dir),
        "HEALTH_PORT": "0",
        "STATUS_INTERVAL_PRIVATE": "0.3",
        "QUEUE_URL": "",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.bot.telegram.e2e.bot_process", factory],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_group(command: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """SIGTERM to the bot's whole process group, as systemd (and a terminal's Ctrl+C) do."""
    os.killpg(command.pid, signal.SIGTERM)
    try:
        return command.wait(timeout)
    finally:
        if command.poll() is None:
            os.killpg(command.pid, signal.SIGKILL)
            command.wait(10)


async def jobs_of(settings: Settings, user_id: int) -> list[Any]:
    db = Database(settings.database_url)
    try:
        return sorted(await db.recent_jobs(user_id, 10, platform="telegram"), key=lambda job: job.id)
    finally:
        await db.dispose()


@pytest.mark.timeout(180)
async def test_a_sigterm_to_the_bots_process_group_loses_no_job_and_no_attempt(
    tg: FakeTelegram, settings_for: Callable[..., Settings], tmp_path: Path
) -> None:
    settings = settings_for()
    log = tmp_path / "bot.log"
    alice = tg.user("Alice")
    chat = tg.private_chat(alice)
    first = bot_command(settings, SLOW, log)
    try:
        for style in ("udnie", "the_scream", "starry_night"):
            await tg.send_photo(alice, chat, images.pattern(64, 48), caption=style)
        await until(lambda: len(tg.calls_to("sendMessage")) >= 3, timeout=60)
        await tg.wait_for("editMessageText", lambda c: "%" in c.params["text"], timeout=60)  # one is running
    finally:
        code = await asyncio.to_thread(stop_group, first)
    assert code == 0, log.read_text()
    jobs = await jobs_of(settings, alice.id)
    assert [(job.state, job.attempts) for job in jobs] == [("queued", 0)] * 3, log.read_text()

    second = bot_command(settings, FAST, log)
    try:
        await until(lambda: len([c for c in tg.calls_to("sendPhoto") if c.ok]) == 3, timeout=60)
    finally:
        await asyncio.to_thread(stop_group, second)
    jobs = await jobs_of(settings, alice.id)
    assert [(job.state, job.attempts) for job in jobs] == [("done", 1)] * 3, log.read_text()
    assert not [c for c in tg.calls_to("editMessageText") if "gave up" in c.params.get("text", "")]

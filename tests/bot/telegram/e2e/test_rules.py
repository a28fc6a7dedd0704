"""The core's rules seen from Telegram (issue 18): a person is (platform, user id), so a Telegram user never
owns a Discord job with the same number nor borrows a Discord admin's exemption; "Surprise me" offers only
paintings on this disk."""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path

from bot.db import Database, JobRecord, JobState
from bot.texts import text
from engine.catalog import load_catalog
from tests.bot.telegram.e2e.conftest import StartBot, paintings_on_disk
from tests.fakes import images
from tests.fakes.telegram_api import Call, FakeTelegram

SLOW = "tests.fakes.engine:slow_engine"


async def discord_job(db: Database, user_id: int, content: Path, *, done: bool) -> JobRecord:
    """A job of the Discord user ``user_id`` (a number a Telegram user also has), queued or done."""
    await asyncio.to_thread(content.write_bytes, images.jpeg(64, 48))
    job = await db.create_job(
        platform="discord", guild_id=555, user_id=user_id, chat_id=777, chat_type="guild",
        language_code="en", source_message_id=1, styles=[{"preset": "udnie", "weight": 1.0}],
        style_label="Udnie", settings={"quality": "draft"}, content_path=str(content),
    )  # fmt: skip
    if done:
        await db.claim_job(job.id, "worker-0")
        await db.finish_job(job.id, width=64, height=48, engine_seconds=1.0)
    return job


async def answer_to(tg: FakeTelegram, query_id: str) -> str:
    call = await tg.wait_for("answerCallbackQuery", lambda c: c.params["callback_query_id"] == query_id)
    return str(call.params.get("text", ""))


async def test_a_telegram_user_cannot_cancel_or_fetch_the_discord_job_of_the_same_number(
    tg: FakeTelegram, start_bot: StartBot, settings_for, tmp_path: Path
) -> None:
    """Button data is easy to forge: ``cancel:<id>`` and ``full:<id>`` naming a Discord job whose owner has
    Alice's number are refused as unknown buttons; the Discord job goes on and no file is sent."""
    settings = settings_for()
    alice = tg.user("Alice")
    chat = tg.private_chat(alice)
    db = Database(settings.database_url)
    await db.migrate()
    queued = await discord_job(db, alice.id, tmp_path / "queued.jpg", done=False)
    finished = await discord_job(db, alice.id, tmp_path / "done.jpg", done=True)
    await db.dispose()
    settings.results_dir.mkdir(parents=True)
    (settings.results_dir / f"{finished.id}.png").write_bytes(images.png(64, 48))
    expired = text("en", "button_expired")
    async with start_bot(settings, engine=SLOW) as services:
        hello = await tg.send_text(alice, chat, "/help")
        sent = await tg.wait_for("sendMessage", lambda c: c.ok and c.params.get("chat_id") == chat.id)
        message = next(m for m in tg.messages_in(chat) if m.message_id == sent.result["message_id"])
        assert hello.message_id != message.message_id
        query = await tg.press_button(alice, message, f"cancel:{queued.id}", force=True)
        assert await answer_to(tg, query.id) == expired
        query = await tg.press_button(alice, message, f"full:{finished.id}", force=True)
        assert await answer_to(tg, query.id) == expired
        await asyncio.sleep(0.3)
        job = await services.jobs.job(queued.id)
        assert job is not None
        assert job.state in JobState.ACTIVE
        assert not tg.calls_to("sendDocument")
        await services.jobs.cancel(queued.id)


async def test_a_discord_admin_id_lifts_no_limit_on_telegram(
    tg: FakeTelegram, start_bot: StartBot, settings_for
) -> None:
    """``ADMIN_IDS=discord:<id>`` names a Discord user: Alice's Telegram id given as a Discord one makes her
    no Telegram admin."""
    alice = tg.user("Alice")
    settings = settings_for(max_active_jobs=1, admin_ids=f"discord:{alice.id}")
    async with start_bot(settings, engine=SLOW) as services:
        chat = tg.private_chat(alice)
        await tg.send_photo(alice, chat, images.pattern(), caption="udnie")
        await tg.wait_for("sendMessage", lambda c: "cancel:" in str(c.params.get("reply_markup")))
        await tg.send_photo(alice, chat, images.pattern(), caption="udnie")
        answer = await tg.wait_for("sendMessage", lambda c: "in progress" in c.params["text"])
        assert "You already have 1" in answer.params["text"]
        await services.jobs.cancel_latest(alice.id, platform="telegram", everything=True)


def surprised(call: Call) -> bool:
    return "Surprise" in call.params.get("text", "") or "tried every" in call.params.get("text", "")


async def test_surprise_offers_only_the_paintings_on_disk(
    tg: FakeTelegram, start_bot: StartBot, settings_for
) -> None:
    """Offline (no fetch), with one painting on disk: "Surprise me" picks it, and the job paints; never a
    painting that would fail with "I couldn't download that painting"."""
    catalog = load_catalog()
    settings = settings_for()
    (only,) = paintings_on_disk(settings, ["great_wave"])
    async with start_bot(settings):
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        for _ in range(2):
            await tg.send_photo(alice, chat, images.pattern(64, 48), caption="/surprise")
            said = await tg.wait_for("sendMessage", surprised)
            found = re.search(r"<b>(.+)</b>", said.params["text"])
            assert found is not None, said.params
            assert html.unescape(found[1]) == catalog.get(only).label
            result = await tg.wait_for("sendPhoto", lambda c: c.ok and "caption" in c.params)
            assert catalog.get(only).title in result.params["caption"]


async def test_surprise_with_no_painting_on_disk_says_so(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot() as services:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_photo(alice, chat, images.pattern(64, 48), caption="/surprise")
        said = await tg.wait_for("sendMessage", lambda c: c.params.get("chat_id") == chat.id)
        assert said.params["text"] == text("en", "surprise_none_ready")
        await tg.send_text(alice, chat, "/surprise")  # alone: on the latest photo, which there is none of
        await tg.wait_for("sendMessage", lambda c: c.params["text"] != said.params["text"])
        assert not await services.db.recent_jobs(alice.id, 5, platform="telegram")

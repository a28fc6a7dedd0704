"""A job's life seen from Telegram: status, cancel, the queue, limits, previews, failures and restarts."""

from __future__ import annotations

import asyncio
import itertools
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.db import Database
from tests.bot.telegram.e2e.conftest import StartBot
from tests.fakes import images
from tests.fakes.telegram_api import Call, FakeTelegram

SLOW = "tests.fakes.engine:slow_engine"


def keyboard_data(call: Call) -> list[str]:
    markup = call.params.get("reply_markup") or {}
    return [
        b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row if "callback_data" in b
    ]


async def status_of(tg: FakeTelegram) -> Call:
    return await tg.wait_for("sendMessage", lambda c: any(d.startswith("cancel:") for d in keyboard_data(c)))


async def test_progress_edits_are_throttled_and_never_unchanged(
    tg: FakeTelegram, start_bot: StartBot, settings_for
) -> None:
    settings = settings_for(status_interval_private=0.5)
    async with start_bot(settings, engine=SLOW):
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_photo(alice, chat, images.pattern(), caption="udnie")
        await status_of(tg)
        await tg.wait_for("editMessageText", lambda c: "%" in c.params["text"])
        await asyncio.sleep(3)
        times = tg.edit_times(chat)
        assert len(times) >= 3
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= 0.45, gaps
        assert not [c for c in tg.calls if not c.ok]  # no "message is not modified"
        edit = tg.calls_to("editMessageText")[-1]
        assert "Painting in the style of Udnie" in edit.params["text"]
        assert "▰" in edit.params["text"]
        assert keyboard_data(edit)[0].startswith("cancel:")


async def test_groups_are_throttled_harder(tg: FakeTelegram, start_bot: StartBot, settings_for) -> None:
    settings = settings_for(status_interval_private=0.2, status_interval_group=1.0)
    async with start_bot(settings, engine=SLOW):
        alice = tg.user("Alice")
        group = tg.group("Friends", [alice, tg.user("Bob")])
        await tg.send_photo(alice, group, images.pattern(), caption="/style@stylebot_test_bot udnie")
        await status_of(tg)
        await asyncio.sleep(3.5)
        times = tg.edit_times(group)
        assert 2 <= len(times) <= 4
        assert min(b - a for a, b in itertools.pairwise(times)) >= 0.95


async def test_cancel_button_only_for_the_owner(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot(engine=SLOW) as services:
        alice, bob = tg.user("Alice"), tg.user("Bob")
        group = tg.group("Friends", [alice, bob])
        await tg.send_photo(alice, group, images.pattern(), caption="/style@stylebot_test_bot udnie")
        status = await status_of(tg)
        message = next(m for m in tg.messages_in(group) if m.message_id == status.result["message_id"])
        query = await tg.press_button(bob, message, keyboard_data(status)[0])
        await tg.wait_for("answerCallbackQuery")
        assert query.answer["text"] == "Only the person who sent the photo can do that."
        await tg.wait_for("editMessageText", lambda c: "%" in c.params["text"])  # it is running
        query = await tg.press_button(alice, message, keyboard_data(status)[0])
        await tg.wait_for("answerCallbackQuery", lambda c: c.params.get("text") == "✖️ Cancelled.")
        final = await tg.wait_for("editMessageText", lambda c: c.params["text"] == "✖️ Cancelled.")
        assert not keyboard_data(final)
        job = (await services.db.recent_jobs(alice.id, 1, platform="telegram"))[0]
        assert job.state == "cancelled"
        await asyncio.sleep(0.5)
        assert not tg.calls_to("sendPhoto")
        assert services.queue.status().busy == 0  # the worker is free again


async def test_cancel_and_queue_commands(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot(engine=SLOW) as services:
        alice, bob = tg.user("Alice"), tg.user("Bob")
        alice_chat, bob_chat = tg.private_chat(alice), tg.private_chat(bob)
        for _ in range(2):
            await tg.send_photo(alice, alice_chat, images.pattern(), caption="udnie")
            await status_of(tg)
        await tg.wait_for("editMessageText", lambda c: "%" in c.params["text"])  # alice's first is running
        await tg.send_photo(bob, bob_chat, images.pattern(), caption="the_scream")
        await status_of(tg)
        await tg.send_text(bob, bob_chat, "/queue")
        answer = await tg.wait_for("sendMessage", lambda c: "waiting" in c.params["text"])
        assert "2 waiting, 1 being painted now" in answer.params["text"]
        assert "The Scream: number 1 in the queue" in answer.params["text"]  # fair: before alice's second
        await tg.send_text(alice, alice_chat, "/cancel all")
        answer = await tg.wait_for("sendMessage", lambda c: "Cancelled" in c.params["text"])
        assert answer.params["text"] == "Cancelled 2 pictures."
        assert await services.db.count_active(alice.id, platform="telegram") == 0
        await tg.send_text(alice, alice_chat, "/cancel")
        assert (await tg.wait_for("sendMessage", lambda c: "nothing" in c.params["text"])).params[
            "text"
        ] == "You have nothing in progress."


async def test_limits(tg: FakeTelegram, start_bot: StartBot, settings_for) -> None:
    settings = settings_for(max_active_jobs=1, max_jobs_per_hour=2)
    async with start_bot(settings, engine=SLOW) as services:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_photo(alice, chat, images.pattern(), caption="udnie")
        await status_of(tg)
        await tg.send_photo(alice, chat, images.pattern(), caption="udnie")
        answer = await tg.wait_for("sendMessage", lambda c: "in progress" in c.params["text"])
        assert "You already have 1 picture in progress" in answer.params["text"]
        await services.jobs.cancel_latest(alice.id, platform="telegram")
        await tg.send_photo(alice, chat, images.pattern(), caption="udnie")
        await status_of(tg)
        await services.jobs.cancel_latest(alice.id, platform="telegram")
        await tg.send_photo(alice, chat, images.pattern(), caption="udnie")
        answer = await tg.wait_for("sendMessage", lambda c: "last hour" in c.params["text"])
        assert "You've made 2 pictures in the last hour" in answer.params["text"]


async def test_admins_are_not_limited(tg: FakeTelegram, start_bot: StartBot, settings_for) -> None:
    alice = tg.user("Alice")
    async with start_bot(settings_for(max_active_jobs=1, admin_ids=str(alice.id)), engine=SLOW):
        chat = tg.private_chat(alice)
        for _ in range(2):
            await tg.send_photo(alice, chat, images.pattern(), caption="udnie")
            await status_of(tg)


async def test_live_preview_turns_the_status_into_a_photo(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot(engine=SLOW) as services:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await services.db.upsert_user(alice.id, None, "Alice", "en", platform="telegram")
        await services.db.update_user_settings(alice.id, {"live_preview": True}, platform="telegram")
        await tg.send_photo(alice, chat, images.pattern(), caption="udnie")
        text_status = await status_of(tg)
        photo_status = await tg.wait_for("sendPhoto", lambda c: c.ok and keyboard_data(c))
        assert "Painting in the style of Udnie" in photo_status.params["caption"]
        await tg.wait_for(
            "deleteMessage", lambda c: c.params["message_id"] == text_status.result["message_id"]
        )
        await tg.wait_for("editMessageMedia", lambda c: c.ok)
        job = (await services.db.recent_jobs(alice.id, 1, platform="telegram"))[0]
        assert job.status_message_id == photo_status.result["message_id"]


async def test_a_429_is_retried_and_the_result_still_arrives(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        tg.fail_next("sendPhoto", retry_after=1)
        await tg.send_photo(alice, tg.private_chat(alice), images.pattern(), caption="udnie")
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        refused = [c for c in tg.calls_to("sendPhoto") if not c.ok]
        assert len(refused) == 1
        assert sent.time - refused[0].time >= 0.9


async def test_a_crashing_worker_ends_in_an_apology(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot(engine="tests.fakes.engine:crash_engine") as services:
        alice = tg.user("Alice")
        await tg.send_photo(alice, tg.private_chat(alice), images.pattern(), caption="udnie")
        retry = await tg.wait_for("editMessageText", lambda c: "stopped unexpectedly" in c.params["text"])
        assert keyboard_data(retry)[0].startswith("cancel:")  # still cancellable while it waits again
        final = await tg.wait_for("editMessageText", lambda c: "gave up" in c.params["text"], timeout=20)
        assert not keyboard_data(final)
        job = (await services.db.recent_jobs(alice.id, 1, platform="telegram"))[0]
        assert (job.state, job.error_code, job.attempts) == ("failed", "worker_lost", 2)


async def test_an_engine_error_is_explained(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot(engine="tests.fakes.engine:offline_engine"):
        alice = tg.user("Alice")
        await tg.send_photo(alice, tg.private_chat(alice), images.pattern(), caption="udnie")
        final = await tg.wait_for("editMessageText", lambda c: "download" in c.params["text"])
        assert final.params["text"].startswith("I couldn't download that painting just now")


async def test_an_unexpected_error_gets_an_apology_with_a_reference(
    tg: FakeTelegram, start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    async with start_bot() as services:

        async def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("the database fell over")

        services.jobs.submit = broken  # type: ignore[method-assign,assignment]  # a submit that fails
        alice = tg.user("Alice")
        await tg.send_photo(alice, tg.private_chat(alice), images.pattern(), caption="udnie")
        answer = await tg.wait_for("sendMessage", lambda c: "Reference" in c.params["text"])
        reference = answer.params["text"].split("<code>")[1].split("</code>")[0]
        assert f"ref {reference}" in caplog.text
        assert f"from user {alice.id}" in caplog.text


async def test_a_restart_loses_nothing(tg: FakeTelegram, start_bot: StartBot) -> None:
    alice = tg.user("Alice")
    chat = tg.private_chat(alice)
    async with start_bot(engine=SLOW):
        await tg.send_photo(alice, chat, images.pattern(64, 48), caption="udnie")
        await status_of(tg)
        await tg.send_photo(alice, chat, images.pattern(64, 48), caption="the_scream")
        await status_of(tg)
        await tg.wait_for("editMessageText", lambda c: "%" in c.params["text"])  # the first one is running
    async with start_bot() as services:  # the same database and data folder, a fast engine now
        await tg.wait_for("editMessageText", lambda c: "I restarted while painting" in c.params["text"])
        sent = [await tg.wait_for("sendPhoto", lambda c: c.ok) for _ in range(2)]
        assert {c.params["caption"].split(" · ")[0] for c in sent} == {"🎨 Udnie", "🎨 The Scream"}
        assert [j.state for j in await services.db.recent_jobs(alice.id, 5, platform="telegram")] == [
            "done",
            "done",
        ]


async def test_a_result_painted_but_never_sent_is_delivered_at_start(
    tg: FakeTelegram, start_bot: StartBot, settings_for, tmp_path: Path
) -> None:
    settings = settings_for()
    alice = tg.user("Alice")
    chat = tg.private_chat(alice)
    photo = await tg.send_photo(alice, chat, images.pattern(64, 48))
    db = Database(settings.database_url)
    await db.migrate()
    await db.upsert_user(alice.id, None, "Alice", "en", platform="telegram")
    job = await db.create_job(
        user_id=alice.id, chat_id=chat.id, chat_type="private", language_code="en",
        source_message_id=photo.message_id, styles=[{"preset": "udnie", "weight": 1.0}], style_label="Udnie",
        settings={}, content_path=str(tmp_path / "gone"), platform="telegram",
    )  # fmt: skip
    await db.claim_job(job.id, "worker-0")
    await db.finish_job(job.id, width=64, height=48, engine_seconds=3.0)
    await db.dispose()
    settings.results_dir.mkdir(parents=True)
    (settings.results_dir / f"{job.id}.png").write_bytes(images.png(64, 48))
    async with start_bot(settings):
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert sent.params["reply_parameters"]["message_id"] == photo.message_id
        await asyncio.sleep(0.2)
    db = Database(settings.database_url)
    stored = await db.get_job(job.id)
    assert stored is not None
    assert stored.result_file_id == sent.result["photo"][-1]["file_id"]
    await db.dispose()


async def test_old_results_are_pruned(tg: FakeTelegram, start_bot: StartBot, settings_for) -> None:
    settings = settings_for(result_retention_days=1)
    settings.results_dir.mkdir(parents=True)
    old, new = settings.results_dir / "1.png", settings.results_dir / "2.png"
    old.write_bytes(b"x")
    new.write_bytes(b"x")
    stamp = datetime.now(UTC).timestamp() - 3 * 86400
    os.utime(old, (stamp, stamp))
    async with start_bot(settings):
        pass
    assert not old.exists()
    assert new.exists()

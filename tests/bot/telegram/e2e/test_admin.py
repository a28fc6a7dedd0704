"""Moderation on Telegram, end to end against the Bot API stand-in: the admins' commands refused for
everyone else, a block and a group switched off that hold across a restart, and Delete under a result for
its owner and the group's administrators only."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from bot.config import Settings
from tests.bot.telegram.e2e.conftest import StartBot
from tests.fakes import images
from tests.fakes.telegram_api import Call, FakeTelegram, Message

SLOW = "tests.fakes.engine:slow_engine"


def says(fragment: str) -> Callable[[Call], bool]:
    return lambda call: fragment in call.params.get("text", "")


def cancelled_in(chat_id: int) -> Callable[[Call], bool]:
    return lambda call: call.params["chat_id"] == chat_id and call.params["text"] == "✖️ Cancelled."


async def test_admin_commands_are_refused_for_everyone_else(
    tg: FakeTelegram, start_bot: StartBot, settings_for: Callable[..., Settings]
) -> None:
    admin, alice = tg.user("Ada"), tg.user("Alice")
    # Alice's number is a Discord admin's: on Telegram she is nobody special.
    settings = settings_for(admin_ids=f"telegram:{admin.id},discord:{alice.id}")
    async with start_bot(settings) as core:
        chat = tg.private_chat(alice)
        for command in ("/stats", f"/block {admin.id}", "/block", f"/unblock {alice.id}"):
            await tg.send_text(alice, chat, command)
            answer = await tg.wait_for("sendMessage")
            assert answer.params["text"] == "Only the bot's admins can do that.", command
        assert not await core.db.is_blocked("telegram", admin.id)

        await tg.send_text(admin, tg.private_chat(admin), "/stats")
        stats = await tg.wait_for("sendMessage")
        assert stats.params["text"].startswith("<b>Statistics</b>")
        assert "Today (UTC): 0 done, 0 failed, 0 cancelled, 0 not finished" in stats.params["text"]
        assert "Workers: 0 of 1 busy" in stats.params["text"]
        await tg.send_text(admin, tg.private_chat(admin), "/block")
        usage = await tg.wait_for("sendMessage")
        assert "<code>/block 123456789</code>" in usage.params["text"]
        bots_message = tg.messages_in(tg.private_chat(admin))[-1]
        await tg.send_text(admin, tg.private_chat(admin), "/block", reply_to=bots_message)  # names no one
        assert "<code>/block 123456789</code>" in (await tg.wait_for("sendMessage")).params["text"]
        assert not await core.db.is_blocked("telegram", tg.bot.id)
        await tg.send_text(admin, tg.private_chat(admin), f"/block {admin.id}")
        assert "admins can't be blocked" in (await tg.wait_for("sendMessage")).params["text"]


async def test_a_block_cancels_refuses_and_holds_across_a_restart(
    tg: FakeTelegram, start_bot: StartBot, settings_for: Callable[..., Settings]
) -> None:
    admin, bob = tg.user("Ada"), tg.user("Bob")
    group = tg.group("Art club", [admin, bob])
    settings = settings_for(admin_ids=str(admin.id))  # a plain number: a Telegram id
    async with start_bot(settings, engine=SLOW) as core:
        photo = await tg.send_photo(bob, group, images.pattern(), caption="/style@stylebot_test_bot udnie")
        await tg.wait_for("sendMessage", says("Starting"))
        await tg.send_photo(bob, tg.private_chat(bob), images.pattern(), caption="udnie")
        await tg.wait_for("sendMessage", says("In the queue"))
        await tg.send_text(admin, group, "/block@stylebot_test_bot", reply_to=photo)  # in reply to Bob
        done = await tg.wait_for("sendMessage", says("Blocked"))
        assert done.params["text"] == (
            f"Blocked <code>{bob.id}</code>: 2 pictures of theirs were cancelled, new ones are refused."
        )
        for chat_id in (group.id, bob.id):  # each status says so
            await tg.wait_for("editMessageText", cancelled_in(chat_id))
        assert [job.state for job in await core.db.recent_jobs(bob.id, platform="telegram")] == [
            "cancelled",
            "cancelled",
        ]
        await tg.send_text(admin, group, f"/block@stylebot_test_bot {bob.id}")
        assert "was blocked already" in (await tg.wait_for("sendMessage", says("blocked"))).params["text"]

    async with start_bot(settings, engine=SLOW) as core:
        await tg.send_photo(bob, tg.private_chat(bob), images.pattern(), caption="udnie")
        refused = await tg.wait_for("sendMessage", says("blocked you"))
        assert refused.params["text"] == "Sorry, you can't use this bot: its admins have blocked you."
        assert len(await core.db.recent_jobs(bob.id, platform="telegram")) == 2  # nothing new
        await tg.send_text(admin, tg.private_chat(admin), f"/unblock {bob.id}")
        assert "Unblocked" in (await tg.wait_for("sendMessage", says("blocked"))).params["text"]

    async with start_bot(settings, engine=SLOW) as core:
        await tg.send_photo(bob, tg.private_chat(bob), images.pattern(), caption="udnie")
        await tg.wait_for("sendMessage", says("Starting"))
        await tg.send_text(admin, tg.private_chat(admin), f"/unblock {bob.id}")
        assert "wasn't blocked" in (await tg.wait_for("sendMessage", says("blocked"))).params["text"]


def menu(tg: FakeTelegram, scope: str, language: str = "") -> list[str]:
    key = (json.dumps({"type": scope}, sort_keys=True), language)
    return [command["command"] for command in tg.commands[key]]


async def test_only_groups_administrators_see_the_switch_in_their_menu(
    tg: FakeTelegram, start_bot: StartBot
) -> None:
    async with start_bot():
        for language in ("", "ru"):
            public = menu(tg, "default", language)
            assert not {"bot_off", "bot_on", "stats", "block", "unblock"} & set(public)
            assert menu(tg, "all_chat_administrators", language) == [*public, "bot_off", "bot_on"]


async def test_a_groups_admins_switch_the_bot_off_and_on_across_a_restart(
    tg: FakeTelegram, start_bot: StartBot, settings_for: Callable[..., Settings]
) -> None:
    owner, admin, member = tg.user("Olga"), tg.user("Ada"), tg.user("Max")
    group = tg.group("Art club", [member], admins=[admin], owner=owner)
    settings = settings_for()
    async with start_bot(settings):
        await tg.send_text(member, group, "/bot_off@stylebot_test_bot")
        refused = await tg.wait_for("sendMessage")
        assert refused.params["text"] == "Only this group's admins can switch me off or on here."
        await tg.send_text(member, tg.private_chat(member), "/bot_off")
        assert "for groups and servers" in (await tg.wait_for("sendMessage")).params["text"]
        await tg.send_text(admin, group, "/bot_off@stylebot_test_bot")
        assert "switched off here now" in (await tg.wait_for("sendMessage")).params["text"]
        await tg.send_text(owner, group, "/bot_off@stylebot_test_bot")
        assert "already switched off" in (await tg.wait_for("sendMessage")).params["text"]

    async with start_bot(settings) as core:
        await tg.send_photo(member, group, images.pattern(), caption="/style@stylebot_test_bot udnie")
        refused = await tg.wait_for("sendMessage")
        assert "I'm switched off here" in refused.params["text"]
        await tg.send_photo(member, tg.private_chat(member), images.pattern(), caption="udnie")
        await tg.wait_for("sendPhoto", lambda c: c.ok)  # the group's switch is the group's only
        await tg.send_text(owner, group, "/bot_on@stylebot_test_bot")
        assert "switched on here again" in (await tg.wait_for("sendMessage", says("switched"))).params["text"]

    async with start_bot(settings) as core:
        await tg.send_photo(member, group, images.pattern(), caption="/style@stylebot_test_bot udnie")
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok and c.params["chat_id"] == group.id)
        assert "Udnie" in sent.params["caption"]
        assert [job.state for job in await core.db.recent_jobs(member.id, platform="telegram")] == [
            "done",
            "done",
        ]


async def test_a_switch_telegram_cannot_check_is_refused_not_crashed(
    tg: FakeTelegram, start_bot: StartBot, settings_for: Callable[..., Settings]
) -> None:
    """Someone posting as a channel, or a member Telegram no longer knows: getChatMember fails, and the
    answer is the plain refusal rather than the error handler's apology."""
    member = tg.user("Max")
    group = tg.group("Art club", [member])
    async with start_bot(settings_for()):
        tg.fail_next("getChatMember", code=400, description="Bad Request: user not found")
        await tg.send_text(member, group, "/bot_off@stylebot_test_bot")
        refused = await tg.wait_for("sendMessage")
        assert refused.params["text"] == "Only this group's admins can switch me off or on here."


def result_in(tg: FakeTelegram, call: Call) -> Message:
    chat = tg.chats[call.params["chat_id"]]
    return next(m for m in tg.messages_in(chat) if m.message_id == call.result["message_id"])


def stored(results: Path, job_id: int) -> list[str]:
    return [path.name for path in results.glob(f"{job_id}.*")]


async def test_delete_by_the_owner_or_a_group_admin_refused_for_another_member(
    tg: FakeTelegram, start_bot: StartBot, settings_for: Callable[..., Settings]
) -> None:
    alice, bob, admin = tg.user("Alice"), tg.user("Bob"), tg.user("Ada")
    group = tg.group("Art club", [alice, bob], admins=[admin])
    settings = settings_for()
    async with start_bot(settings) as core:
        for _ in range(2):
            await tg.send_photo(alice, group, images.pattern(), caption="/style@stylebot_test_bot udnie")
        first = await tg.wait_for("sendPhoto", lambda c: c.ok)
        second = await tg.wait_for("sendPhoto", lambda c: c.ok)
        # Each result replies to the photo it paints.
        jobs = {j.source_message_id: j for j in await core.db.recent_jobs(alice.id, platform="telegram")}
        first_job = jobs[first.params["reply_parameters"]["message_id"]]
        second_job = jobs[second.params["reply_parameters"]["message_id"]]
        assert stored(settings.results_dir, first_job.id)

        # Bob may not; nothing changes.
        query = await tg.press_button(bob, result_in(tg, first), f"del:{first_job.id}")
        await tg.wait_for("answerCallbackQuery")
        assert "Only the person who sent the photo or this chat's admins" in query.answer["text"]
        assert not result_in(tg, first).deleted
        assert stored(settings.results_dir, first_job.id)

        # The owner may: the message goes, and the painting on disk.
        query = await tg.press_button(alice, result_in(tg, first), f"del:{first_job.id}")
        await tg.wait_for("deleteMessage", lambda c: c.params["message_id"] == first.result["message_id"])
        await tg.wait_for("answerCallbackQuery", lambda c: c.params.get("text") == "Deleted.")
        assert result_in(tg, first).deleted
        assert stored(settings.results_dir, first_job.id) == []
        assert stored(settings.results_dir, second_job.id)

        # The group's administrator may (one who can delete messages).
        await tg.press_button(admin, result_in(tg, second), f"del:{second_job.id}")
        await tg.wait_for("deleteMessage", lambda c: c.params["message_id"] == second.result["message_id"])
        assert result_in(tg, second).deleted
        assert stored(settings.results_dir, second_job.id) == []
        member_checks = [c for c in tg.calls_to("getChatMember") if c.params["user_id"] == alice.id]
        assert member_checks == []  # the owner's own press asked Telegram nothing


async def test_delete_when_telegram_keeps_the_message(
    tg: FakeTelegram, start_bot: StartBot, settings_for: Callable[..., Settings]
) -> None:
    """Telegram lets a bot delete its messages only for a while: the painting still goes from the disk and
    the owner is told to delete the message; a message already gone is what was asked."""
    alice = tg.user("Alice")
    chat = tg.private_chat(alice)
    settings = settings_for()
    async with start_bot(settings) as core:
        for _ in range(2):
            await tg.send_photo(alice, chat, images.pattern(), caption="udnie")
        results = [await tg.wait_for("sendPhoto", lambda c: c.ok) for _ in range(2)]
        for _ in range(2):  # each status goes once its painting is sent: before the faults are armed
            await tg.wait_for("deleteMessage", lambda c: c.ok)
        jobs = {j.source_message_id: j for j in await core.db.recent_jobs(alice.id, platform="telegram")}
        old, gone = (jobs[call.params["reply_parameters"]["message_id"]] for call in results)

        tg.fail_next("deleteMessage", code=400, description="Bad Request: message can't be deleted")
        query = await tg.press_button(alice, result_in(tg, results[0]), f"del:{old.id}")
        await tg.wait_for("answerCallbackQuery")
        assert "couldn't delete the message" in query.answer["text"]
        assert not result_in(tg, results[0]).deleted
        assert stored(settings.results_dir, old.id) == []

        tg.fail_next("deleteMessage", code=400, description="Bad Request: message to delete not found")
        query = await tg.press_button(alice, result_in(tg, results[1]), f"del:{gone.id}")
        await tg.wait_for("answerCallbackQuery")
        assert query.answer["text"] == "Deleted."
        assert stored(settings.results_dir, gone.id) == []

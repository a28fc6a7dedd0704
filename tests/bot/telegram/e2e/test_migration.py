"""A group upgraded to a supergroup while its job waits: Telegram gives the supergroup a new id, and every
call naming the old one answers 400 "group chat was upgraded to a supergroup chat" with
``migrate_to_chat_id`` (PTB's ``ChatMigrated``). The bot moves the group's jobs, defaults and switch to
the new id (``ChatService.moved``), from the service message or from the first refused call, and the
painting reaches the supergroup. Before, the result was sent to the old id again and again, never
arriving, and the group's /bot_off and defaults stayed behind."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from bot.config import Settings
from bot.db import NO_MESSAGE, Database, JobRecord
from tests.bot.telegram.e2e.conftest import StartBot
from tests.bot.telegram.e2e.test_delivery import until
from tests.fakes import images
from tests.fakes.telegram_api import Call, Chat, FakeTelegram, Message, User

MUTE = "tests.fakes.engine:mute_engine"  # a worker that never starts: the job waits in the queue
STYLE = "/style@stylebot_test_bot udnie"


def to(chat: Chat) -> Callable[[Call], bool]:
    return lambda call: call.params.get("chat_id") == chat.id


def is_result_in(chat: Chat) -> Callable[[Call], bool]:
    return lambda call: call.ok and call.params.get("chat_id") == chat.id and "caption" in call.params


def cancels(message: Message) -> bool:
    return any(data.startswith("cancel:") for data in message.button_data)


async def job_of(settings: Settings, user: User) -> JobRecord:
    db = Database(settings.database_url)
    try:
        (job,) = await db.recent_jobs(user.id, 10, platform="telegram")
        return job
    finally:
        await db.dispose()


async def waiting_job(
    tg: FakeTelegram, start_bot: StartBot, settings: Settings, alice: User, group: Chat
) -> None:
    """Alice's photo in the basic group makes a job whose status is up there, and which waits (the
    worker never starts) while the bot runs."""
    async with start_bot(settings, engine=MUTE, start_timeout=60.0):
        await tg.send_photo(alice, group, images.pattern(64, 48), caption=STYLE)
        status = await tg.wait_for("sendMessage", to(group))
        assert status.ok
        assert "cancel:" in str(status.params["reply_markup"])


@pytest.mark.timeout(120)
async def test_a_group_upgraded_unannounced_gets_its_painting_in_the_supergroup(
    tg: FakeTelegram,
    start_bot: StartBot,
    settings_for: Callable[..., Settings],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The bot never saw the service messages: the status edit meets the old id's refusal, the group
    moves, the status is put up afresh in the supergroup (the old one cannot be edited), then the painting
    comes there and the status goes."""
    settings = settings_for()
    alice = tg.user("Alice")
    group = tg.group("Club", [alice], supergroup=False)
    await waiting_job(tg, start_bot, settings, alice, group)
    supergroup = await tg.upgrade_group(group, alice, announce=False)

    caplog.set_level(logging.INFO)
    async with start_bot(settings) as core:
        result = await tg.wait_for("sendPhoto", is_result_in(supergroup), timeout=30)
        await until(lambda: not [m for m in tg.messages_in(supergroup) if not m.deleted and cancels(m)])
        job = await core.jobs.job((await job_of(settings, alice)).id)
    assert job is not None
    assert job.chat_id == supergroup.id
    assert job.result_file_id == result.result["photo"][-1]["file_id"]
    assert job.source_message_id == NO_MESSAGE  # the photo's id names nothing in the supergroup
    assert "reply_parameters" not in result.params
    refused = [c for c in tg.calls if to(group)(c) and not c.ok]
    assert refused  # the bot learned it from Telegram's answer
    assert all(c.result is None and "upgraded to a supergroup" in (c.error or "") for c in refused)
    assert not [c for c in tg.calls_to("sendPhoto") if to(group)(c)]  # never the result to the old id
    assert f"job {job.id} (user {alice.id}): chat {group.id} is supergroup {supergroup.id}" in caplog.text


@pytest.mark.timeout(120)
async def test_the_service_message_moves_the_job_the_switch_and_the_defaults(
    tg: FakeTelegram, start_bot: StartBot, settings_for: Callable[..., Settings]
) -> None:
    """The service messages come: the group's waiting job, its default style and its being switched off
    move to the supergroup at once; the job's painting arrives there and the switch holds there."""
    settings = settings_for()
    alice, admin = tg.user("Alice"), tg.user("Ada")
    group = tg.group("Club", [alice], admins=[admin], supergroup=False)
    await waiting_job(tg, start_bot, settings, alice, group)

    async with start_bot(settings, engine=MUTE, start_timeout=60.0) as core:
        await core.db.set_chat_defaults(group.id, None, {"quality": "draft"}, admin.id, platform="telegram")
        await tg.send_text(admin, group, "/bot_off@stylebot_test_bot")
        assert "switched off here now" in (await tg.wait_for("sendMessage", to(group))).params["text"]
        supergroup = await tg.upgrade_group(group, admin)
        await until(lambda: not tg.pending_updates)  # the service messages were handled
        assert (await job_of(settings, alice)).chat_id == supergroup.id
        assert await core.db.get_chat_defaults(supergroup.id, platform="telegram") is not None
        assert await core.db.get_chat_defaults(group.id, platform="telegram") is None
        assert not await core.db.is_chat_enabled("telegram", supergroup.id)

    async with start_bot(settings):
        await tg.wait_for("sendPhoto", is_result_in(supergroup), timeout=30)
        await tg.send_photo(alice, supergroup, images.pattern(64, 48), caption=STYLE)
        refused = await tg.wait_for("sendMessage", to(supergroup))
        assert "I'm switched off here" in refused.params["text"]
    assert not [c for c in tg.calls_to("sendPhoto") if to(group)(c)]


@pytest.mark.timeout(120)
async def test_full_resolution_under_a_moved_result_quotes_no_old_message(
    tg: FakeTelegram, start_bot: StartBot, settings_for: Callable[..., Settings]
) -> None:
    """Full resolution pressed under a result left in the old group, after the job moved: the file goes to
    the supergroup, quoting nothing (the pressed message's id is the old group's; there it names another
    message, or none)."""
    settings = settings_for()
    alice = tg.user("Alice")
    group = tg.group("Club", [alice], supergroup=False)
    async with start_bot(settings):
        await tg.send_photo(alice, group, images.pattern(64, 48), caption=STYLE)
        sent = await tg.wait_for("sendPhoto", is_result_in(group), timeout=30)
        result = next(m for m in tg.messages_in(group) if m.message_id == sent.result["message_id"])
        supergroup = await tg.upgrade_group(group, alice)
        await until(lambda: not tg.pending_updates)  # the service messages moved the job
        assert (await job_of(settings, alice)).chat_id == supergroup.id
        await tg.press_button(alice, result, result.button_data[0])
        document = await tg.wait_for("sendDocument", lambda c: c.ok)
    assert document.params["chat_id"] == supergroup.id
    assert "reply_parameters" not in document.params

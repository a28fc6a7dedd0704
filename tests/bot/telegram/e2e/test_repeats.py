"""A request Telegram sends again makes no second job. Polling confirms an update only once its handler
finished (``bot.telegram.polling``), so a bot that dies after the job was made but before the
confirmation gets the same update again after its restart (a webhook is re-sent likewise). Every job
keeps the request that made it (``jobs.request_key``: the message or the button press), and a repeat
finds that job: no second job, no second result, nothing new said (its status is put up if it never
was). Before, only a photo's own caption was recognised: a /style reply or a gallery button made a
twin."""

from __future__ import annotations

from collections.abc import Callable

from bot.config import Settings
from bot.db import Database, JobRecord
from tests.bot.telegram.e2e.conftest import StartBot, is_gallery, paintings_on_disk
from tests.bot.telegram.e2e.test_delivery import until
from tests.fakes import images
from tests.fakes.telegram_api import Call, CallbackQuery, FakeTelegram, Message, User


def results(tg: FakeTelegram) -> list[Call]:
    return [c for c in tg.calls_to("sendPhoto") if c.ok and "caption" in c.params and not is_gallery(c)]


async def jobs_of(settings: Settings, user: User) -> list[JobRecord]:
    db = Database(settings.database_url)
    try:
        return await db.recent_jobs(user.id, 10, platform="telegram")
    finally:
        await db.dispose()


async def sent_again_after_a_restart(
    tg: FakeTelegram, start_bot: StartBot, settings: Settings, request: Message | CallbackQuery
) -> list[Call]:
    """The bot restarts and Telegram sends ``request``'s update again, as after a crash before its
    confirmation; the calls the bot made to the request's chat meanwhile."""
    update = tg.update_of(request)
    before = len(tg.calls)
    await tg.deliver_again(update)
    async with start_bot(settings):
        await until(lambda: not tg.pending_updates)  # confirmed: its handler finished
    chat = request.message.chat if isinstance(request, CallbackQuery) else request.chat
    return [c for c in tg.calls[before:] if c.params.get("chat_id") == chat.id]


async def test_a_style_reply_sent_again_after_a_restart_makes_no_second_job(
    tg: FakeTelegram, start_bot: StartBot, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    alice = tg.user("Alice")
    chat = tg.private_chat(alice)
    async with start_bot(settings):
        photo = await tg.send_photo(alice, chat, images.pattern(64, 48), caption="udnie")
        await tg.wait_for("sendPhoto", lambda c: c.ok and "caption" in c.params)
        command = await tg.send_text(alice, chat, "/style starry_night", reply_to=photo)
        await until(lambda: len(results(tg)) == 2)
    assert len(await jobs_of(settings, alice)) == 2

    said = await sent_again_after_a_restart(tg, start_bot, settings, command)

    jobs = await jobs_of(settings, alice)
    assert [job.state for job in jobs] == ["done", "done"]  # before: a third job, painted and sent again
    assert jobs[0].request_key == f"message:{chat.id}:{command.message_id}"
    assert len(results(tg)) == 2
    assert said == []  # nothing new said


async def test_a_gallery_press_sent_again_after_a_restart_makes_no_second_job(
    tg: FakeTelegram, start_bot: StartBot, settings_for: Callable[..., Settings]
) -> None:
    settings = settings_for()
    paintings_on_disk(settings)
    alice = tg.user("Alice")
    chat = tg.private_chat(alice)
    async with start_bot(settings):
        await tg.send_photo(alice, chat, images.pattern(64, 48))
        await tg.wait_for("sendPhoto", is_gallery)
        press = await tg.press_button(alice, tg.messages_in(chat)[-1], "pick:udnie")
        await until(lambda: len(results(tg)) == 1)

    said = await sent_again_after_a_restart(tg, start_bot, settings, press)

    jobs = await jobs_of(settings, alice)
    assert [job.state for job in jobs] == ["done"]  # before: a second job from the same press
    assert jobs[0].request_key == f"callback:{press.id}"
    assert len(results(tg)) == 1
    assert said == []

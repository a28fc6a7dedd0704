"""Sharing end to end against the stand-in: inline mode lists a person's recent paintings (photos and files
alike, by the file id Telegram gave them) to send into any chat, filtered and paged; a deep link
t.me/<bot>?start=<style> picks that style for the next photo; a result painted with catalog paintings
offers its style as such a link, one painted with someone's own picture does not."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import pytest

from bot.context import Services
from bot.frontend import TELEGRAM
from bot.services import sharing
from bot.telegram.handlers.inline import INLINE_START
from bot.texts import text
from tests.bot.telegram.e2e.conftest import StartBot
from tests.bot.telegram.e2e.test_admin import result_in, stored
from tests.bot.telegram.e2e.test_delivery import delivered_file_id
from tests.fakes import clips, images
from tests.fakes.telegram_api import Call, User
from tests.fakes.telegram_inline import InlineTelegram

BOT = "stylebot_test_bot"


@pytest.fixture
async def tg() -> AsyncIterator[InlineTelegram]:
    """The stand-in with inline mode and deep links (replaces the plain one of conftest)."""
    async with InlineTelegram(max_poll_timeout=0.5, wait_timeout=15.0) as server:
        yield server


def job_of(call: Call) -> int:
    """The job a sent result belongs to, from its Another style button."""
    rows = call.params["reply_markup"]["inline_keyboard"]
    data = next(
        b["callback_data"] for row in rows for b in row if b.get("callback_data", "").startswith("again:")
    )
    return int(data.split(":")[1])


async def paint(
    tg: InlineTelegram, core: Services, user: User, caption: str, method: str = "sendPhoto"
) -> int:
    """``user`` sends a photo captioned ``caption``; the job id once its result is confirmed sent."""
    await tg.send_photo(user, tg.private_chat(user), images.pattern(64, 48), caption=caption)
    sent = await tg.wait_for(method, lambda c: c.ok and "again:" in str(c.params.get("reply_markup")))
    job_id = job_of(sent)
    await delivered_file_id(core.db, job_id)
    return job_id


def urls(markup: dict | None) -> list[str]:
    return [b["url"] for row in (markup or {}).get("inline_keyboard", []) for b in row if "url" in b]


async def test_inline_mode_lists_recent_paintings_to_send_into_any_chat(
    tg: InlineTelegram, start_bot: StartBot
) -> None:
    async with start_bot() as core:
        alice, bob = tg.user("Alice"), tg.user("Bob")
        night = await paint(tg, core, alice, "starry_night")
        await core.users.change(alice.id, "result_as", "document", platform=TELEGRAM)
        wave = await paint(tg, core, alice, "great_wave + udnie", method="sendDocument")

        everything = await tg.wait_for_answer(await tg.send_inline_query(alice, ""))
        assert [r["id"] for r in everything.results] == [str(wave), str(night)]  # newest first
        assert [r["type"] for r in everything.results] == ["document", "photo"]
        assert everything.is_personal
        assert (everything.cache_time, everything.button) == (10, None)
        photo = everything.results[1]
        assert photo["caption"] == f"The Starry Night, painted by @{BOT}"
        assert urls(photo["reply_markup"]) == [f"https://t.me/{BOT}?start=starry_night"]
        assert urls(everything.results[0]["reply_markup"]) == [f"https://t.me/{BOT}?start=great_wave-udnie"]

        typed = await tg.wait_for_answer(await tg.send_inline_query(alice, "STARRY"))
        assert [r["id"] for r in typed.results] == [str(night)]

        group = tg.group("Friends", [alice, bob])
        posted = await tg.choose_result(alice, group, await tg.send_inline_query(alice, "wave"), str(wave))
        assert posted.document is not None
        assert (posted.caption or "").startswith("The Great Wave off Kanagawa + Udnie")

        nothing = await tg.wait_for_answer(await tg.send_inline_query(bob, ""))  # Bob painted nothing
        assert nothing.results == []
        assert nothing.button == {"text": text("en", "inline_paint_one"), "start_parameter": INLINE_START}
        assert not [c for c in tg.calls if not c.ok and c.method != "getUpdates"]


async def test_inline_pages_follow_next_offset(
    tg: InlineTelegram, start_bot: StartBot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sharing, "PAGE_SIZE", 1)
    async with start_bot() as core:
        alice = tg.user("Alice")
        first = await paint(tg, core, alice, "udnie")
        second = await paint(tg, core, alice, "the_scream")

        page = await tg.wait_for_answer(await tg.send_inline_query(alice, ""))
        assert ([r["id"] for r in page.results], page.next_offset) == ([str(second)], "1")
        page = await tg.wait_for_answer(await tg.send_inline_query(alice, "", offset=page.next_offset))
        assert ([r["id"] for r in page.results], page.next_offset) == ([str(first)], "")
        assert page.button is None  # a later page that is empty says nothing either


async def test_a_result_deleted_with_its_delete_button_leaves_the_list(
    tg: InlineTelegram, start_bot: StartBot
) -> None:
    async with start_bot() as core:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        kept = await paint(tg, core, alice, "udnie")
        deleted = await paint(tg, core, alice, "the_scream")
        listed = await tg.wait_for_answer(await tg.send_inline_query(alice, ""))
        assert [r["id"] for r in listed.results] == [str(deleted), str(kept)]

        result = next(m for m in tg.messages_in(chat) if f"again:{deleted}" in m.button_data)
        await tg.press_button(alice, result, f"del:{deleted}", force=True)  # the owner's Delete
        await tg.wait_for("deleteMessage", lambda c: c.ok and c.params["message_id"] == result.message_id)

        listed = await tg.wait_for_answer(await tg.send_inline_query(alice, ""))
        assert [r["id"] for r in listed.results] == [str(kept)]


async def test_a_deep_link_picks_the_style_for_the_next_photo(
    tg: InlineTelegram, start_bot: StartBot
) -> None:
    async with start_bot():
        bob = tg.user("Bob", language_code="ru")
        chat = tg.private_chat(bob)
        await tg.open_link(bob, f"https://t.me/{BOT}?start=starry_night")
        chosen = await tg.wait_for("sendMessage", lambda c: c.params["chat_id"] == bob.id)
        assert chosen.params["text"] == text("ru", "start_chosen", style="The Starry Night")

        await tg.send_photo(bob, chat, images.pattern(64, 48))  # no caption: the style the link chose
        sent = await tg.wait_for(
            "sendPhoto", lambda c: c.ok and "again:" in str(c.params.get("reply_markup"))
        )
        assert sent.params["caption"].startswith("🎨 The Starry Night")

        await tg.send_photo(bob, chat, images.pattern(64, 48))  # the link chose for one photo only
        gallery = await tg.wait_for(
            "sendPhoto", lambda c: c.ok and "gal:" in str(c.params.get("reply_markup"))
        )
        assert gallery.params["chat_id"] == bob.id


async def test_links_that_name_no_painting_get_the_greeting(
    tg: InlineTelegram, start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    async with start_bot():
        carol = tg.user("Carol")
        greeting = text("en", "start", name="Carol", bot=BOT)
        await tg.open_link(carol, f"https://t.me/{BOT}?start=not_a_painting")
        unknown = await tg.wait_for("sendMessage", lambda c: c.params["chat_id"] == carol.id)
        assert unknown.params["text"] == f"{text('en', 'start_unknown_link')}\n\n{greeting}"
        await tg.open_link(carol, f"https://t.me/{BOT}?start={INLINE_START}")  # inline's "Paint one"
        plain = await tg.wait_for("sendMessage", lambda c: c.params["chat_id"] == carol.id)
        assert plain.params["text"] == greeting

        await tg.send_photo(carol, tg.private_chat(carol), images.pattern(64, 48))
        await tg.wait_for("sendPhoto", lambda c: c.ok and "gal:" in str(c.params.get("reply_markup")))
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_a_result_offers_its_style_as_a_link_unless_it_is_someones_picture(
    tg: InlineTelegram, start_bot: StartBot
) -> None:
    async with start_bot() as core:
        alice, dave = tg.user("Alice"), tg.user("Dave")
        chat = tg.private_chat(alice)
        await paint(tg, core, alice, "udnie + udnie + starry_night")
        result = tg.calls_to("sendPhoto")[-1]
        link = f"https://t.me/{BOT}?start=udnie-udnie-starry_night"
        assert urls(result.params["reply_markup"]) == [link]

        await tg.send_album(alice, chat, [images.pattern(64, 48), images.jpeg(40, 40, (0, 0, 255))])
        own = await tg.wait_for("sendPhoto", lambda c: c.ok and "again:" in str(c.params.get("reply_markup")))
        assert urls(own.params["reply_markup"]) == []  # Alice's own picture travels in no link
        await delivered_file_id(core.db, job_of(own))
        listed = await tg.wait_for_answer(await tg.send_inline_query(alice, ""))
        assert listed.results[0].get("reply_markup") is None  # nor in the inline list

        await tg.open_link(dave, link)  # whoever sees the link gets the same blend, weights and all
        await tg.wait_for("sendMessage", lambda c: c.params["chat_id"] == dave.id)
        await tg.send_photo(dave, tg.private_chat(dave), images.pattern(64, 48))
        sent = await tg.wait_for(
            "sendPhoto",
            lambda c: (
                c.ok and c.params["chat_id"] == dave.id and "again:" in str(c.params.get("reply_markup"))
            ),
        )
        jobs = await core.db.recent_jobs(dave.id, 1, platform=TELEGRAM)
        assert jobs[0].id == job_of(sent)
        assert [(r["preset"], r["weight"]) for r in jobs[0].styles] == [("udnie", 2.0), ("starry_night", 1.0)]


async def test_an_inline_answer_telegram_refuses_is_one_line_and_the_next_query_works(
    tg: InlineTelegram, start_bot: StartBot, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.telegram.handlers.inline")
    async with start_bot() as core:
        alice = tg.user("Alice")
        night = await paint(tg, core, alice, "starry_night")
        said = len(tg.calls_to("sendMessage"))
        tg.fail_next(
            "answerInlineQuery",
            code=400,
            description="Bad Request: query is too old and response timeout expired or query ID is invalid",
        )
        await tg.send_inline_query(alice, "")
        refused = await tg.wait_for("answerInlineQuery")
        assert not refused.ok
        again = await tg.wait_for_answer(await tg.send_inline_query(alice, ""))
        assert [r["id"] for r in again.results] == [str(night)]
        assert len(tg.calls_to("sendMessage")) == said  # no apology anywhere: an inline query has no chat
    lines = [r for r in caplog.records if "inline answer not given" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.INFO]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_inline_mode_lists_a_delivered_clip_as_an_animation(
    tg: InlineTelegram, start_bot: StartBot
) -> None:
    """A clip sent back with sendAnimation (a CgAC... file id) is offered as a cached MPEG-4 animation;
    once its owner deletes it, it is gone from the list (reviewer2 #5)."""
    async with start_bot() as core:
        alice = tg.user("Alice")
        await tg.send_video(
            alice, tg.private_chat(alice), clips.mp4(4), width=64, height=48, duration=1, caption="udnie"
        )
        sent = await tg.wait_for("sendAnimation", lambda c: c.ok)
        rows = sent.params["reply_markup"]["inline_keyboard"]
        delete = next(
            b["callback_data"] for row in rows for b in row if b["callback_data"].startswith("del:")
        )
        job_id = int(delete.split(":")[1])
        file_id = await delivered_file_id(core.db, job_id)
        assert file_id.startswith("CgAC")

        query = await tg.send_inline_query(alice, "udnie")
        answer = await tg.wait_for_answer(query)
        assert [(r["id"], r["type"], r["mpeg4_file_id"]) for r in answer.results] == [
            (str(job_id), "mpeg4_gif", file_id)
        ]
        group = tg.group("Friends", [alice])
        posted = await tg.choose_result(alice, group, query, str(job_id))
        assert posted.animation is not None

        await tg.press_button(alice, result_in(tg, sent), delete)
        await tg.wait_for("answerCallbackQuery", lambda c: c.params.get("text") == "Deleted.")
        assert stored(core.settings.results_dir, job_id) == []  # the clip's file went too
        gone = await tg.wait_for_answer(await tg.send_inline_query(alice, "udnie"))
        assert gone.results == []

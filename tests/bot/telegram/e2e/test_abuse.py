"""Nobody acts for someone else, and forged or repeated input gets a polite answer, never an apology."""

from __future__ import annotations

import asyncio

import pytest

from tests.bot.telegram.e2e.conftest import StartBot, is_gallery
from tests.fakes import images
from tests.fakes.telegram_api import FakeTelegram

BOT = "stylebot_test_bot"


def no_apology(tg: FakeTelegram) -> None:
    """The generic apology is for bugs; none of these inputs is one."""
    answers = ("sendMessage", "answerCallbackQuery")
    texts = [c.params.get("text") or "" for c in tg.calls if c.method in answers]
    assert not [t for t in texts if "went wrong on my side" in t]


async def test_full_resolution_only_for_the_owner(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice, bob = tg.user("Alice"), tg.user("Bob")
        group = tg.group("Friends", [alice, bob])
        await tg.send_photo(alice, group, images.pattern(), caption=f"/style@{BOT} udnie")
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        result = next(m for m in tg.messages_in(group) if m.message_id == sent.result["message_id"])
        button = result.button_data[0]
        assert button.startswith("full:")
        query = await tg.press_button(bob, result, button)  # on Alice's result in the group
        await tg.wait_for("answerCallbackQuery")
        assert query.answer["text"] == "Only the person who sent the photo can do that."
        # ... nor by forging the button on a message of his own chat
        bob_chat = tg.private_chat(bob)
        await tg.send_text(bob, bob_chat, "/help")
        await tg.wait_for("sendMessage", lambda c: c.params["chat_id"] == bob_chat.id)
        query = await tg.press_button(bob, tg.messages_in(bob_chat)[-1], button, force=True)
        await tg.wait_for("answerCallbackQuery")
        assert query.answer["text"] == "Only the person who sent the photo can do that."
        await asyncio.sleep(0.3)
        assert not tg.calls_to("sendDocument")
        await tg.press_button(alice, result, button)
        await tg.wait_for("sendDocument", lambda c: c.ok)


@pytest.mark.parametrize(
    "data", ["cancel:99999999999999999999999999", "full:99999999999999999999999999", "cancel:2147483648"]
)
async def test_forged_buttons_with_huge_numbers_have_expired(
    tg: FakeTelegram, start_bot: StartBot, data: str
) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_text(alice, chat, "/help")
        await tg.wait_for("sendMessage")
        query = await tg.press_button(alice, tg.messages_in(chat)[-1], data, force=True)
        await tg.wait_for("answerCallbackQuery")
        assert query.answer["text"] == "This button has expired."
        no_apology(tg)


async def test_editing_a_caption_or_command_starts_nothing(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot() as services:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        photo = await tg.send_photo(alice, chat, images.pattern(), caption="udnie")
        await tg.wait_for("sendPhoto", lambda c: c.ok)
        await tg.edit(photo, "starry_night")
        command = await tg.send_text(alice, chat, "/queue")
        await tg.wait_for("sendMessage", lambda c: "Nothing is waiting" in c.params["text"])
        await tg.edit(command, "/style udnie")  # now a command that would paint, had it been sent so
        other = await tg.send_photo(alice, chat, images.pattern(), caption="/preset use nothing")
        await tg.edit(other, "/preset use nothing_either")
        await asyncio.sleep(1.0)
        assert len(await services.db.recent_jobs(alice.id, platform="telegram")) == 1
        assert len(tg.calls_to("sendPhoto")) == 1
        texts = [c.params["text"] for c in tg.calls_to("sendMessage")]
        assert sum("no preset called" in t for t in texts) == 1  # the edit was not answered
        assert not any("Send a photo with the caption" in t for t in texts)
        no_apology(tg)


async def test_own_style_waits_per_chat(tg: FakeTelegram, start_bot: StartBot) -> None:
    """The own-style button pressed in a group, then in private: each chat styles its own photo."""
    async with start_bot():
        alice, bob = tg.user("Alice"), tg.user("Bob")
        group, private = tg.group("Friends", [alice, bob]), tg.private_chat(alice)
        group_photo = await tg.send_photo(alice, group, images.pattern(64, 48), caption=f"/style@{BOT}")
        await tg.wait_for("sendPhoto", lambda c: is_gallery(c) and c.params["chat_id"] == group.id)
        group_gallery = tg.messages_in(group)[-1]
        await tg.press_button(alice, group_gallery, "own")
        await tg.wait_for("editMessageCaption", lambda c: "Send me the picture" in c.params["caption"])
        private_photo = await tg.send_photo(alice, private, images.jpeg(80, 60, (10, 200, 30)))
        await tg.wait_for("sendPhoto", lambda c: is_gallery(c) and c.params["chat_id"] == private.id)
        await tg.press_button(alice, tg.messages_in(private)[-1], "own")
        await tg.wait_for("editMessageCaption", lambda c: "Send me the picture" in c.params["caption"])
        await tg.send_photo(alice, group, images.jpeg(40, 40, (250, 200, 0)), reply_to=group_gallery)
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert sent.params["chat_id"] == group.id
        assert sent.params["reply_parameters"]["message_id"] == group_photo.message_id
        assert tg.downloaded(group_photo.file_id) != tg.downloaded(private_photo.file_id)
        assert private_photo.file_id not in [c.params.get("file_id") for c in tg.calls_to("getFile")]
        await tg.send_photo(alice, private, images.jpeg(40, 40, (0, 0, 250)))
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert sent.params["chat_id"] == private.id
        assert sent.params["reply_parameters"]["message_id"] == private_photo.message_id


async def test_a_transient_download_failure_is_retried(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        tg.fail_next("getFile", code=502, description="Bad Gateway", times=2)
        await tg.send_photo(alice, chat, images.pattern(), caption="udnie")
        await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert [c.status for c in tg.calls_to("getFile")] == [502, 502, 200]
        no_apology(tg)


async def test_a_lasting_download_failure_is_explained(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot() as services:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        tg.fail_next("getFile", code=502, description="Bad Gateway", times=10)
        await tg.send_photo(alice, chat, images.pattern(), caption="udnie")
        answer = await tg.wait_for("sendMessage")
        assert "couldn't fetch your picture from Telegram" in answer.params["text"]
        assert len(tg.calls_to("getFile")) == 3
        assert not await services.db.recent_jobs(alice.id, platform="telegram")
        no_apology(tg)


FIVE = ["udnie", "starry_night", "great_wave", "the_scream", "the_kiss"]


async def test_a_blend_of_more_than_four_styles_is_refused_everywhere(
    tg: FakeTelegram, start_bot: StartBot
) -> None:
    async with start_bot() as services:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        group = tg.group("Friends", [alice], admins=[alice])

        async def refused() -> None:
            answer = await tg.wait_for("sendMessage")
            assert "at most 4 different" in answer.params["text"], answer.params["text"]

        await tg.send_photo(alice, chat, images.pattern(), caption=" + ".join(FIVE))  # a caption
        await refused()
        photo = await tg.send_photo(alice, chat, images.pattern())
        await tg.wait_for("sendPhoto", is_gallery)
        await tg.send_text(alice, chat, "/style " + " + ".join(FIVE), reply_to=photo)  # a reply
        await refused()
        await tg.send_text(alice, chat, "/preset save five " + " ".join(FIVE))  # saving such a preset
        await refused()
        await services.db.save_preset(
            alice.id, "old", [{"preset": p} for p in FIVE], {}, platform="telegram"
        )  # saved long ago
        await tg.send_photo(alice, chat, images.pattern(), caption="/preset use old")
        await refused()
        await services.db.set_chat_defaults(
            group.id, [{"preset": p} for p in FIVE], {}, alice.id, platform="telegram"
        )
        await tg.send_photo(alice, group, images.pattern(), caption=f"/style@{BOT}")  # a group default
        await refused()
        assert not await services.db.recent_jobs(alice.id, platform="telegram")
        no_apology(tg)
        # the same painting over and over is one painting
        await tg.send_photo(alice, chat, images.pattern(), caption=" + ".join(["udnie"] * 300))
        await tg.wait_for("sendPhoto", lambda c: c.ok)
        (job,) = await services.db.recent_jobs(alice.id, platform="telegram")
        assert job.styles == [{"preset": "udnie", "weight": 300.0}]


SLOW = "tests.fakes.engine:slow_engine"


async def test_anonymous_admins_are_their_group(tg: FakeTelegram, start_bot: StartBot) -> None:
    """Every anonymous admin writes as one Telegram account: the bot keys them by their group."""
    async with start_bot(engine=SLOW) as services:
        alice = tg.user("Alice")
        first, second = tg.group("First", [alice]), tg.group("Second", [alice])
        await tg.send_as(first, first, f"/style@{BOT} udnie", image=images.pattern())
        await tg.send_as(second, second, f"/style@{BOT} udnie", image=images.pattern())
        await tg.wait_for("sendMessage", lambda c: c.params["chat_id"] == first.id)
        await tg.wait_for("sendMessage", lambda c: c.params["chat_id"] == second.id)
        await tg.send_as(first, first, f"/cancel@{BOT} all")
        done = await tg.wait_for("sendMessage", lambda c: c.params["text"].startswith("Cancelled"))
        assert done.params["text"] == "Cancelled 1 picture."
        assert done.params["chat_id"] == first.id
        (theirs,) = await services.db.recent_jobs(second.id, platform="telegram")
        assert theirs.state in ("queued", "running")  # the other group's job lives on
        assert (await services.db.recent_jobs(first.id, platform="telegram"))[0].state == "cancelled"

        await tg.send_as(first, first, f"/preset@{BOT} save ours udnie")  # a foreign key failed here
        assert "Saved preset <b>ours</b>" in (await tg.wait_for("sendMessage")).params["text"]
        await tg.send_as(second, second, f"/preset@{BOT} list")
        assert "no presets yet" in (await tg.wait_for("sendMessage")).params["text"]
        await tg.send_as(first, first, f"/preset@{BOT} chat ours")  # anonymous admins are admins
        assert "default style is now" in (await tg.wait_for("sendMessage")).params["text"]
        no_apology(tg)


async def test_posting_as_a_channel_is_the_channels_own_identity(
    tg: FakeTelegram, start_bot: StartBot
) -> None:
    async with start_bot() as services:
        alice = tg.user("Alice")
        group, news = tg.group("Friends", [alice]), tg.channel("News")
        await tg.send_as(news, group, f"/style@{BOT} udnie", image=images.pattern())
        await tg.wait_for("sendPhoto", lambda c: c.ok and c.params["chat_id"] == group.id)
        (job,) = await services.db.recent_jobs(news.id, platform="telegram")
        assert job.chat_id == group.id
        no_apology(tg)


async def test_channel_posts_are_ignored(tg: FakeTelegram, start_bot: StartBot) -> None:
    """The bot has no business posting in a channel; a photo there used to hit an assertion."""
    async with start_bot() as services:
        news = tg.channel("News")
        post = await tg.send_as(news, news, "udnie", image=images.pattern())
        await tg.send_as(news, news, "/style udnie", image=images.pattern())
        await tg.edit(post, "starry_night")
        await asyncio.sleep(1.0)
        assert not [
            c for c in tg.calls if c.method not in ("getUpdates", "getMe", "setMyCommands", "deleteWebhook")
        ]
        assert not await services.db.recent_jobs(news.id, platform="telegram")

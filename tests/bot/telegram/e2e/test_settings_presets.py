"""``/settings`` buttons and named presets, kept in the bot's database."""

from __future__ import annotations

from engine.protocol import settings_from_dict
from tests.bot.telegram.e2e.conftest import StartBot, is_gallery
from tests.fakes import images
from tests.fakes.telegram_api import FakeTelegram


async def test_settings_buttons_change_and_keep_the_users_choices(
    tg: FakeTelegram, start_bot: StartBot
) -> None:
    async with start_bot() as services:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_text(alice, chat, "/settings")
        first = await tg.wait_for("sendMessage")
        assert "Quality: normal" in first.params["text"]
        menu = tg.messages_in(chat)[-1]
        await tg.press_button(alice, menu, f"set:{alice.id}:q:draft")
        edit = await tg.wait_for("editMessageText")
        assert "Quality: draft (fast)" in edit.params["text"]
        await tg.press_button(alice, menu, f"set:{alice.id}:q:draft")  # already chosen: no edit, no error
        await tg.wait_for("answerCallbackQuery", lambda c: c.params.get("text") == "Saved.")
        for data in (f"set:{alice.id}:s:wild", f"set:{alice.id}:c:luminance", f"set:{alice.id}:r:document"):
            await tg.press_button(alice, menu, data)
            await tg.wait_for("editMessageText")
        assert not [c for c in tg.calls if not c.ok]
        user = await services.db.get_user(alice.id, platform="telegram")
        assert user is not None
        assert user.settings == {
            "quality": "draft",
            "strength": 0.9,
            "preserve_colors": "luminance",
            "result_as": "document",
            "live_preview": False,
            "sketch": True,
        }
        # the next job uses them: a file instead of a photo, and the engine gets the settings
        await tg.send_photo(alice, chat, images.pattern(), caption="udnie")
        await tg.wait_for("sendDocument", lambda c: c.ok)
        job = (await services.db.recent_jobs(alice.id, 1, platform="telegram"))[0]
        engine_settings = settings_from_dict(job.settings)
        assert (engine_settings.quality, engine_settings.strength, engine_settings.preserve_colors) == (
            "draft",
            0.9,
            "luminance",
        )


async def test_someone_elses_settings_buttons(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice, bob = tg.user("Alice"), tg.user("Bob")
        group = tg.group("Friends", [alice, bob])
        await tg.send_text(alice, group, "/settings@stylebot_test_bot")
        await tg.wait_for("sendMessage")
        query = await tg.press_button(bob, tg.messages_in(group)[-1], f"set:{alice.id}:q:high")
        await tg.wait_for("answerCallbackQuery")
        assert "someone else's settings" in query.answer["text"]


async def test_presets_save_list_use_delete(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot() as services:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)

        async def say(text: str, reply_to=None) -> str:
            """The bot's answer to this very command (not a status message of an earlier job)."""
            sent = await tg.send_text(alice, chat, text, reply_to=reply_to)
            answer = await tg.wait_for(
                "sendMessage",
                lambda c: c.params.get("reply_parameters", {}).get("message_id") == sent.message_id,
            )
            return answer.params["text"]

        assert "Paint a picture first" in await say("/preset save calm")
        assert "Saved preset <b>calm</b>: Water Lilies" in await say("/preset save calm water_lilies")
        assert "id of a painting" in await say("/preset save udnie")
        assert "1 to 32 letters" in await say("/preset save bad/name")
        own = await tg.send_photo(
            alice, chat, images.jpeg(60, 60, (0, 120, 255)), caption="/preset save mine"
        )
        assert "Saved preset <b>mine</b>: your image" in (await tg.wait_for("sendMessage")).params["text"]
        del own
        style_image = await tg.send_photo(alice, chat, images.jpeg(60, 60, (255, 0, 0)))
        await tg.wait_for("sendPhoto", is_gallery)  # the gallery for that photo
        assert "Saved preset <b>red</b>: your image" in await say("/preset save red", reply_to=style_image)
        listing = await say("/preset list")
        assert "<code>calm</code>: Water Lilies" in listing
        assert "<code>red</code>: your image" in listing

        photo = await tg.send_photo(alice, chat, images.pattern(64, 48), caption="/preset use calm")
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert sent.params["caption"].startswith("🎨 calm · ")
        assert sent.params["reply_parameters"]["message_id"] == photo.message_id
        await tg.send_photo(alice, chat, images.pattern(64, 48), caption="red")  # a preset name as caption
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        job = (await services.db.recent_jobs(alice.id, 1, platform="telegram"))[0]
        assert job.styles[0]["image"] == 0  # the saved image was downloaded by its file id
        assert "Deleted preset <b>calm</b>" in await say("/preset delete calm")
        assert "no preset called <b>calm</b>" in await say("/preset delete calm")
        assert "Reply to a photo with" in await say("/preset use red")


async def test_group_default_style_set_by_admins(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        admin, member = tg.user("Ada"), tg.user("Max")
        group = tg.group("Art club", [admin, member], admins=[admin])
        await tg.send_text(admin, tg.private_chat(admin), "/preset save club great_wave")
        await tg.wait_for("sendMessage")
        await tg.send_text(member, group, "/preset chat club")
        assert "Only the group's admins" in (await tg.wait_for("sendMessage")).params["text"]
        await tg.send_text(admin, group, "/preset chat club")
        assert "default style is now <b>The Great Wave" in (await tg.wait_for("sendMessage")).params["text"]
        photo = await tg.send_photo(member, group, images.pattern(), caption="/style@stylebot_test_bot")
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert "The Great Wave" in sent.params["caption"]
        assert sent.params["reply_parameters"]["message_id"] == photo.message_id
        await tg.send_text(admin, group, "/preset chat off")
        cleared = await tg.wait_for("sendMessage", lambda c: "default style" in c.params["text"])
        assert "no default style any more" in cleared.params["text"]

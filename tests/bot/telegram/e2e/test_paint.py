"""Photos in, paintings out: every way to ask, end to end over HTTP with real polling."""

from __future__ import annotations

import asyncio
import io

import numpy as np
from PIL import Image

from engine.catalog import load_catalog
from tests.bot.telegram.e2e.conftest import StartBot, is_gallery
from tests.fakes import images
from tests.fakes.engine import invert
from tests.fakes.telegram_api import Call, FakeTelegram


def picture(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def painted(tg: FakeTelegram, call: Call) -> np.ndarray:
    """The picture the bot sent (as a photo or a file)."""
    result = call.result
    file_id = result["photo"][-1]["file_id"] if "photo" in result else result["document"]["file_id"]
    return picture(tg.downloaded(file_id))


def negative_of(tg: FakeTelegram, message) -> np.ndarray:
    """What the fake engine paints for a photo: its negative."""
    return picture(invert(tg.downloaded(message.file_id)))


async def test_start_and_command_menu(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        menus = {c.params.get("language_code") for c in tg.calls_to("setMyCommands")}
        assert menus == {None, "ru"}
        alice = tg.user("Alice")
        await tg.send_text(alice, tg.private_chat(alice), "/start")
        assert "Hi Alice!" in (await tg.wait_for("sendMessage")).params["text"]
        boris = tg.user("Борис", language_code="ru")
        await tg.send_text(boris, tg.private_chat(boris), "/start")
        assert "Привет, Борис!" in (await tg.wait_for("sendMessage")).params["text"]
        await tg.send_text(boris, tg.private_chat(boris), "/help")
        assert "/preset save" in (await tg.wait_for("sendMessage")).params["text"]


async def test_photo_with_a_style_caption(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        source = await tg.send_photo(
            alice, tg.private_chat(alice), images.pattern(64, 48), caption="/style starry_night"
        )
        status = await tg.wait_for("sendMessage")
        assert status.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"].startswith("cancel:")
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert sent.params["caption"].startswith("🎨 The Starry Night · ")
        assert sent.params["reply_parameters"]["message_id"] == source.message_id
        assert np.array_equal(painted(tg, sent), negative_of(tg, source))
        await tg.wait_for("deleteMessage", lambda c: c.params["message_id"] == status.result["message_id"])


async def test_just_the_id_or_title_as_caption_and_blends(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_photo(alice, chat, images.pattern(), caption="Great Wave")
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert "The Great Wave off Kanagawa" in sent.params["caption"]
        await tg.send_photo(alice, chat, images.pattern(), caption="starry_night + udnie")
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert "The Starry Night + Udnie" in sent.params["caption"]


async def test_an_image_file_keeps_full_resolution(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        big = images.pattern(1600, 1200, fmt="PNG")
        await tg.send_document(alice, chat, big, "photo.png", "image/png", caption="udnie")
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert painted(tg, sent).shape == (960, 1280, 3)  # a photo: Telegram's own, smaller copy
        result = next(m for m in tg.messages_in(chat) if m.message_id == sent.result["message_id"])
        await tg.press_button(alice, result, result.button_data[0])
        document = await tg.wait_for("sendDocument", lambda c: c.ok)
        assert document.params["reply_parameters"]["message_id"] == result.message_id
        assert np.array_equal(painted(tg, document), picture(invert(big)))  # the painter's 1600x1200, exactly


async def test_reply_to_a_photo_with_a_style_command(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        photo = await tg.send_photo(alice, chat, images.pattern(64, 48))
        await tg.wait_for("sendPhoto", is_gallery)  # the gallery for the uncaptioned photo
        await tg.send_text(alice, chat, "/style shipwreck", reply_to=photo)
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert sent.params["reply_parameters"]["message_id"] == photo.message_id
        assert "The Shipwreck" in sent.params["caption"]
        assert np.array_equal(painted(tg, sent), negative_of(tg, photo))


async def test_reply_with_a_second_photo_uses_it_as_the_style(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        photo = await tg.send_photo(alice, chat, images.pattern(64, 48))
        await tg.wait_for("sendPhoto", is_gallery)
        await tg.send_photo(alice, chat, images.jpeg(50, 50, (10, 200, 10)), caption="/style", reply_to=photo)
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert sent.params["reply_parameters"]["message_id"] == photo.message_id
        assert np.array_equal(painted(tg, sent), negative_of(tg, photo))
        assert "your image" in sent.params["caption"]


async def test_album_of_two_is_one_job_and_one_result(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot() as services:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        first, _ = await tg.send_album(
            alice, chat, [images.pattern(64, 48), images.jpeg(40, 40, (0, 0, 255))]
        )
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert np.array_equal(painted(tg, sent), negative_of(tg, first))
        await asyncio.sleep(0.6)  # longer than the album wait: a second job would have been queued by now
        assert len([c for c in tg.calls_to("sendPhoto") if c.ok]) == 1
        jobs = await services.db.recent_jobs(alice.id, 10, platform="telegram")
        assert len(jobs) == 1
        assert jobs[0].styles[0]["image"] == 0


async def test_album_of_three_is_explained(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        await tg.send_album(alice, tg.private_chat(alice), [images.pattern()] * 3)
        sent = await tg.wait_for("sendMessage")
        assert "exactly two photos" in sent.params["text"]


async def test_the_gallery_is_a_picture_with_numbered_buttons_paged_and_picked(
    tg: FakeTelegram, start_bot: StartBot, settings_for
) -> None:
    settings = settings_for()
    for n, style_id in enumerate(load_catalog().ids[:10]):  # page 1 and part of page 2 on disk
        Image.new("RGB", (120, 90), (20 * n, 200 - 15 * n, 90)).save(settings.styles_dir / f"{style_id}.png")
    async with start_bot(settings):
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        photo = await tg.send_photo(alice, chat, images.pattern(64, 48))
        sent = await tg.wait_for("sendPhoto", is_gallery)
        assert sent.params["caption"] == "Pick a painting for this photo (page 1 of 3):"
        assert sent.params["reply_parameters"]["message_id"] == photo.message_id
        gallery = tg.messages_in(chat)[-1]
        rows = gallery.inline_keyboard
        numbered = [b["text"] for row in rows[:-2] for b in row]
        assert numbered[:2] == ["1. The Starry Night", "2. The Great Wave off…"]
        assert [label.split(".")[0] for label in numbered] == [str(n) for n in range(1, 9)]
        assert [b["callback_data"] for b in rows[-1]] == ["surp", "own"]
        first_page = picture(tg.downloaded(gallery.file_id))
        assert first_page.shape[1] > first_page.shape[0]  # four tiles a row, two rows

        await tg.press_button(alice, gallery, "gal:1")
        edit = await tg.wait_for("editMessageMedia")
        assert edit.ok
        assert edit.params["media"]["caption"] == "Pick a painting for this photo (page 2 of 3):"
        second_page = picture(tg.downloaded(gallery.file_id))
        assert not np.array_equal(first_page, second_page)  # another picture, not only other buttons
        assert gallery.button_data[0] == f"pick:{load_catalog().ids[8]}"

        await tg.press_button(alice, gallery, "gal:1")  # the page it is on: nothing to edit, no error
        await tg.press_button(alice, gallery, "gal:0")
        back = await tg.wait_for("editMessageMedia")
        assert isinstance(back.params["media"]["media"], str)  # page 1 again: its upload, by file id
        assert np.array_equal(picture(tg.downloaded(gallery.file_id)), first_page)

        await tg.press_button(alice, gallery, "pick:the_scream")
        status = await tg.wait_for("editMessageCaption")  # the gallery picture now carries the status
        assert status.ok
        assert status.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"].startswith("cancel:")
        result = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert "The Scream" in result.params["caption"]
        assert np.array_equal(painted(tg, result), negative_of(tg, photo))
        await tg.wait_for("deleteMessage", lambda c: c.params["message_id"] == gallery.message_id)
        assert not [c for c in tg.calls if not c.ok]  # no refused edit along the way
        assert len(tg.calls_to("editMessageMedia")) == 2


async def test_a_refused_pick_says_why_on_the_gallery_picture(
    tg: FakeTelegram, start_bot: StartBot, settings_for
) -> None:
    async with start_bot(settings_for(max_active_jobs=1), engine="tests.fakes.engine:slow_engine"):
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_photo(alice, chat, images.pattern(64, 48), caption="udnie")  # takes the only slot
        await tg.wait_for("sendMessage", lambda c: "cancel:" in str(c.params.get("reply_markup")))
        await tg.send_photo(alice, chat, images.pattern(64, 48))
        await tg.wait_for("sendPhoto", is_gallery)
        gallery = tg.messages_in(chat)[-1]
        await tg.press_button(alice, gallery, "pick:udnie")
        refused = await tg.wait_for("editMessageCaption")
        assert refused.ok
        assert "You already have 1 picture in progress" in refused.params["caption"]
        assert gallery.button_data == []  # no buttons left to press on a refusal


async def test_a_picked_jobs_status_stays_on_the_gallery_picture_across_a_restart(
    tg: FakeTelegram, start_bot: StartBot, settings_for
) -> None:
    settings = settings_for()
    alice = tg.user("Alice")
    chat = tg.private_chat(alice)
    async with start_bot(settings, engine="tests.fakes.engine:slow_engine"):
        await tg.send_photo(alice, chat, images.pattern(64, 48))
        await tg.wait_for("sendPhoto", is_gallery)
        gallery = tg.messages_in(chat)[-1]
        shown = gallery.message_id
        await tg.press_button(alice, gallery, "pick:udnie")
        await tg.wait_for("editMessageCaption", lambda c: "%" in c.params["caption"])  # progress, on it
    earlier = len(tg.calls)
    async with start_bot(settings, engine="tests.fakes.engine:slow_engine"):
        # The "I restarted" notice may already have reached the picture while the bot stopped; the new
        # process does not know that, and Telegram then answers its identical edit with "not modified",
        # which the status board rightly ignores. Any other refusal (a text edit of a picture) fails here.
        after = await tg.wait_for(
            "editMessageCaption",
            lambda c: (
                c.params["message_id"] == shown
                and tg.calls.index(c) >= earlier
                and "not modified" not in (c.error or "")
            ),
        )
        assert after.ok
        assert not gallery.deleted
    assert not [c for c in tg.calls if c.method == "editMessageText" and c.ok]  # never sent to a picture


async def test_gallery_own_style_conversation(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        photo = await tg.send_photo(alice, chat, images.pattern(64, 48))
        await tg.wait_for("sendPhoto", is_gallery)
        await tg.press_button(alice, tg.messages_in(chat)[-1], "own")
        prompt = await tg.wait_for("editMessageCaption")
        assert "Send me the picture" in prompt.params["caption"]
        assert "reply_markup" not in prompt.params  # the gallery's buttons are gone
        await tg.send_text(alice, chat, "hmm?")
        assert "isn't a picture" in (await tg.wait_for("sendMessage")).params["text"]
        await tg.send_photo(alice, chat, images.jpeg(40, 40, (250, 200, 0)))
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert sent.params["reply_parameters"]["message_id"] == photo.message_id
        assert np.array_equal(painted(tg, sent), negative_of(tg, photo))


async def test_gallery_buttons_of_someone_elses_photo(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice, bob = tg.user("Alice"), tg.user("Bob")
        group = tg.group("Friends", [alice, bob])
        photo = await tg.send_photo(alice, group, images.pattern(), caption="/style@stylebot_test_bot")
        await tg.wait_for("sendPhoto", lambda c: "Pick a painting" in c.params["caption"])
        gallery = tg.messages_in(group)[-1]
        assert gallery.reply_to is photo
        query = await tg.press_button(bob, gallery, "pick:udnie")
        await tg.wait_for("answerCallbackQuery")
        assert query.answer["text"] == "This is someone else's photo."


async def test_groups_answer_commands_addressed_to_the_bot_only(
    tg: FakeTelegram, start_bot: StartBot
) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        group = tg.group("Friends", [alice, tg.user("Bob")])
        await tg.send_photo(alice, group, images.pattern(), caption="/style@some_other_bot udnie")
        await tg.send_text(alice, group, "/unknowncmd")
        await asyncio.sleep(0.5)
        assert not tg.calls_to("sendMessage")
        await tg.send_photo(alice, group, images.pattern(), caption="/style@stylebot_test_bot udnie")
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert "Udnie" in sent.params["caption"]
        await tg.send_text(alice, group, "/unknowncmd@stylebot_test_bot")
        assert (
            "I don't know /unknowncmd"
            in (await tg.wait_for("sendMessage", lambda c: "know" in c.params["text"])).params["text"]
        )


async def test_reply_in_a_group_with_the_style_command(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice, bob = tg.user("Alice"), tg.user("Bob")
        group = tg.group("Friends", [alice, bob])
        photo = await tg.send_photo(
            bob, group, images.pattern(64, 48), caption="/style@stylebot_test_bot udnie"
        )
        await tg.wait_for("sendPhoto", lambda c: c.ok)
        await tg.send_text(alice, group, "/style@stylebot_test_bot the_scream", reply_to=photo)
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert "The Scream" in sent.params["caption"]
        assert sent.params["reply_parameters"]["message_id"] == photo.message_id


async def test_styles_sends_the_contact_sheet_and_the_list(
    tg: FakeTelegram, start_bot: StartBot, settings_for
) -> None:
    settings = settings_for()
    Image.new("RGB", (120, 90), (200, 30, 30)).save(settings.styles_dir / "udnie.png")
    async with start_bot(settings):
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_text(alice, chat, "/styles")
        sheet = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert "/style id" in sheet.params["caption"]
        listing = await tg.wait_for("sendMessage")
        assert (
            "<code>starry_night</code>: The Starry Night, Vincent van Gogh (1889)" in listing.params["text"]
        )
        await tg.send_text(alice, chat, "/styles")
        again = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert isinstance(again.params["photo"], str)  # the uploaded sheet is reused by its file id

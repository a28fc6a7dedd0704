"""Every wrong input gets a clear, friendly reply, and the bot keeps serving afterwards."""

from __future__ import annotations

import io
import zlib

import pytest
from PIL import Image

from tests.bot.telegram.e2e.conftest import StartBot, is_gallery
from tests.fakes import images
from tests.fakes.telegram_api import FakeTelegram

# a zTXt chunk that inflates to 8 MB, past Pillow's limit for text
TEXT_BOMB = images.streamed_png(
    64, 64, chunks=(images.png_chunk(b"zTXt", b"Comment\0\0" + zlib.compress(b"a" * 8 * 2**20, 9)),)
)


def png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 90, 90)).save(buffer, "PNG")
    return buffer.getvalue()


async def answer_to(tg: FakeTelegram) -> str:
    return (await tg.wait_for("sendMessage")).params["text"]


@pytest.mark.parametrize(
    ("data", "name", "mime", "expected"),
    [
        (b"%PDF-1.7 a report", "report.pdf", "application/pdf", "isn't an image I can read"),
        (images.jpeg(200, 200)[:400], "cut.jpg", "image/jpeg", "seems damaged or incomplete"),
        (b"not really a png", "fake.png", "image/png", "I can't read that image"),
        (png(1, 1), "pixel.png", "image/png", "too small or too narrow"),
        (png(3000, 2000), "huge.png", "image/png", "too many pixels"),  # the test bot's limit is 4 MP
        (png(1000, 40), "strip.png", "image/png", "too small or too narrow"),
        (TEXT_BOMB, "bomb.png", "image/png", "seems damaged or incomplete"),  # an error escaped before
        (images.streamed_png(7000, 7000, bit_depth=16), "deep.png", "image/png", "too many pixels"),
    ],
)
async def test_bad_files(
    tg: FakeTelegram, start_bot: StartBot, data: bytes, name: str, mime: str, expected: str
) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_document(alice, chat, data, name, mime, caption="starry_night")
        assert expected in await answer_to(tg)
        await tg.send_photo(alice, chat, images.pattern(), caption="starry_night")  # still serving
        await tg.wait_for("sendPhoto", lambda c: c.ok)


async def test_a_file_over_telegrams_download_limit(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        blob = b"\xff\xd8" + b"\0" * (21 * 2**20)
        await tg.send_document(alice, tg.private_chat(alice), blob, "big.jpg", "image/jpeg", caption="udnie")
        assert "up to 20 MB" in await answer_to(tg)
        assert not tg.calls_to("getFile")  # refused before trying the download


async def test_unknown_style_lists_close_matches(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        await tg.send_photo(alice, tg.private_chat(alice), images.pattern(), caption="/style stary nite")
        text = await answer_to(tg)
        assert "I don't know the painting “stary nite”" in text
        assert "<code>starry_night</code>" in text


async def test_style_command_without_a_photo(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        await tg.send_text(alice, tg.private_chat(alice), "/style starry_night")
        assert "Send a photo with the caption" in await answer_to(tg)


async def test_unknown_command_and_chatter_in_private(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_text(alice, chat, "/paintme")
        assert "I don't know /paintme" in await answer_to(tg)
        await tg.send_text(alice, chat, "hello there")
        assert "Send me a photo" in await answer_to(tg)


async def test_buttons_of_old_messages(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_photo(alice, chat, images.pattern(), caption="udnie")
        await tg.wait_for("sendPhoto", lambda c: c.ok)
        status = next(
            m for m in tg.messages_in(chat) if m.button_data and m.button_data[0].startswith("cancel:")
        )
        query = await tg.press_button(alice, status, status.button_data[0], force=True)  # it was deleted
        await tg.wait_for("answerCallbackQuery")
        assert query.answer["text"] == "That picture is already finished."
        query = await tg.press_button(alice, status, "cancel:99999", force=True)
        await tg.wait_for("answerCallbackQuery")
        assert query.answer["text"] == "This button has expired."
        query = await tg.press_button(alice, status, "from-an-old-version", force=True)
        await tg.wait_for("answerCallbackQuery")
        assert query.answer["text"] == "This button has expired."


async def test_a_deleted_gallery_photo(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        photo = await tg.send_photo(alice, chat, images.pattern())
        await tg.wait_for("sendPhoto", is_gallery)
        gallery = tg.messages_in(chat)[-1]
        photo.deleted = True  # the user deleted the photo; the gallery now replies to nothing
        query = await tg.press_button(alice, gallery, "pick:udnie")
        await tg.wait_for("answerCallbackQuery")
        assert query.answer["text"] == "I can't find that photo any more. Please send it again."

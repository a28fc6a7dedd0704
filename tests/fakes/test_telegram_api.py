"""Tests of the Telegram stand-in itself, driven by PTB's own client as the bot would drive it."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any

import httpx
import pytest
from telegram import (
    Bot,
    BotCommand,
    CallbackQuery,
    ChatMemberAdministrator,
    ChatMemberLeft,
    ChatMemberMember,
    ChatMemberOwner,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputMediaDocument,
    InputMediaPhoto,
    Message,
    ReplyKeyboardMarkup,
    ReplyParameters,
    Update,
)
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    EndPointNotFound,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TimedOut,
)
from telegram.ext import ApplicationBuilder, CommandHandler, ContextTypes
from telegram.request import HTTPXRequest

from tests.fakes import images
from tests.fakes.telegram_api import NOT_MODIFIED, Chat, FakeTelegram, User, parse_html, parse_markdown_v2

BUTTON = InlineKeyboardMarkup([[InlineKeyboardButton("Again", callback_data="again")]])


def message_in(update: Update) -> Message:
    """The update's message: what these tests send always has one."""
    assert update.message is not None
    return update.message


def query_of(update: Update) -> CallbackQuery:
    assert update.callback_query is not None
    return update.callback_query


def peer(chat: Chat) -> User:
    """The user of a private chat."""
    assert chat.peer is not None
    return chat.peer


def as_message(result: Message | bool) -> Message:
    """An edit of a bot's message returns the message (``True`` only for inline messages)."""
    assert isinstance(result, Message)
    return result


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(max_poll_timeout=2, wait_timeout=2) as server:
        yield server


@pytest.fixture
async def bot(tg: FakeTelegram) -> AsyncIterator[Bot]:
    async with Bot(
        tg.token, base_url=f"{tg.root_url}/bot", base_file_url=f"{tg.root_url}/file/bot"
    ) as client:
        yield client


@pytest.fixture
async def chat(tg: FakeTelegram) -> Chat:
    """Alice's private chat, known to the bot because she has written there."""
    alice = tg.user("Alice")
    chat = tg.private_chat(alice)
    await tg.send_text(alice, chat, "hi")
    tg.pending_updates.clear()
    return chat


async def refusal(tg: FakeTelegram, action: Awaitable[Any], kind: type[Exception] = BadRequest) -> str:
    """Telegram's raw description of the refusal PTB raised as `kind` (PTB recapitalizes its copy)."""
    with pytest.raises(kind):
        await action
    assert tg.calls[-1].error is not None
    return tg.calls[-1].error


# -- identity, tokens, transport ----------------------------------------------------------------


async def test_get_me_describes_the_bot(bot: Bot) -> None:
    me = await bot.get_me()
    assert (me.id, me.is_bot, me.first_name, me.username) == (123, True, "Stylebot", "stylebot_test_bot")
    assert me.can_join_groups
    assert not me.can_read_all_group_messages
    assert not me.supports_inline_queries


async def test_a_wrong_token_is_unauthorized(tg: FakeTelegram) -> None:
    client = Bot("123:WRONG", base_url=f"{tg.root_url}/bot")
    with pytest.raises(InvalidToken):
        await client.initialize()
    assert (tg.calls[-1].status, tg.calls[-1].error) == (401, "Unauthorized")


async def test_unknown_methods_are_not_found(tg: FakeTelegram, bot: Bot) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{tg.root_url}/bot{tg.token}/sendPigeon")
    assert answer.status_code == 404
    assert answer.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
    with pytest.raises(EndPointNotFound):
        await bot.do_api_request("sendPigeon")


async def test_json_urlencoded_and_query_parameters_are_all_accepted(tg: FakeTelegram, chat: Chat) -> None:
    url = f"{tg.root_url}/bot{tg.token}"
    async with httpx.AsyncClient() as http:
        markup = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
        as_json = await http.post(
            f"{url}/sendMessage", json={"chat_id": chat.id, "text": "j", "reply_markup": markup}
        )
        as_form = await http.post(f"{url}/SENDMESSAGE", data={"chat_id": str(chat.id), "text": "f"})
        as_query = await http.get(f"{url}/sendMessage", params={"chat_id": chat.id, "text": "q"})
    assert [a.json()["result"]["text"] for a in (as_json, as_form, as_query)] == ["j", "f", "q"]
    assert as_json.json()["result"]["reply_markup"] == markup
    assert [c.method for c in tg.calls[-3:]] == ["sendMessage"] * 3
    assert tg.calls[-2].params["chat_id"] == chat.id  # form strings are typed back


# -- long polling -------------------------------------------------------------------------------


async def test_long_polling_returns_as_soon_as_an_update_arrives(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user("Alice")
    poll = asyncio.create_task(bot.get_updates(timeout=2))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await tg.send_text(alice, tg.private_chat(alice), "/start")
    updates = await poll
    assert time.monotonic() - started < 0.5
    assert message_in(updates[0]).text == "/start"
    assert getattr(message_in(updates[0]).from_user, "language_code", None) == "en"


async def test_long_polling_waits_out_its_timeout_capped_by_the_server() -> None:
    async with (
        FakeTelegram(max_poll_timeout=0.4) as tg,
        Bot(tg.token, base_url=f"{tg.root_url}/bot") as client,
    ):
        started = time.monotonic()
        assert await client.get_updates(timeout=5) == ()
        assert 0.35 < time.monotonic() - started < 0.8


async def test_offset_confirms_and_drops_earlier_updates_and_limit_caps(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user("Alice")
    chat = tg.private_chat(alice)
    for text in ("one", "two", "three"):
        await tg.send_text(alice, chat, text)
    ids = [u.update_id for u in await bot.get_updates()]
    assert ids == sorted(ids)
    assert len(set(ids)) == 3
    assert [message_in(u).text for u in await bot.get_updates(offset=ids[1], limit=1)] == ["two"]
    assert [message_in(u).text for u in await bot.get_updates()] == ["two", "three"]  # "one" is gone
    assert await bot.get_updates(offset=ids[2] + 1) == ()
    await tg.send_text(alice, chat, "four")
    assert [message_in(u).text for u in await bot.get_updates()] == ["four"]


async def test_allowed_updates_filters_and_sticks(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    sent = await bot.send_message(chat.id, "pick", reply_markup=BUTTON)
    await tg.press_button(peer(chat), tg.messages_in(chat)[0], "again")
    await tg.send_text(peer(chat), chat, "text")
    (update,) = await bot.get_updates(allowed_updates=["message"])
    assert message_in(update).text == "text"
    await tg.press_button(peer(chat), tg.messages_in(chat)[0], "again")
    assert await bot.get_updates(offset=update.update_id + 1) == ()  # the setting persists, as Telegram's
    assert sent.message_id == 2


async def test_a_second_poller_terminates_the_first(tg: FakeTelegram, bot: Bot) -> None:
    first = asyncio.create_task(bot.get_updates(timeout=2))
    await asyncio.sleep(0.1)
    async with Bot(tg.token, base_url=f"{tg.root_url}/bot") as second_instance:
        assert await second_instance.get_updates(timeout=0) == ()
    with pytest.raises(Conflict, match="terminated by other getUpdates request"):
        await first


async def test_delete_webhook_can_drop_pending_updates(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user("Alice")
    await tg.send_text(alice, tg.private_chat(alice), "old")
    assert await bot.delete_webhook(drop_pending_updates=True)
    assert await bot.get_updates() == ()


# -- users' messages ------------------------------------------------------------------------------


async def test_commands_get_bot_command_entities(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user("Алиса", language_code="ru")
    chat = tg.private_chat(alice)
    await tg.send_text(alice, chat, "/style@stylebot_test_bot van_gogh")
    await tg.send_text(alice, chat, "🎨 /help")
    first, second = await bot.get_updates()
    assert message_in(first).parse_entities() == {message_in(first).entities[0]: "/style@stylebot_test_bot"}
    assert message_in(second).entities[0].offset == 3  # UTF-16 units: the emoji counts twice
    assert getattr(message_in(first).from_user, "language_code", None) == "ru"


async def test_privacy_mode_hides_group_chatter(tg: FakeTelegram, bot: Bot) -> None:
    alice, bob = tg.user("Alice"), tg.user("Bob")
    group = tg.group("Painters", [alice, bob], admins=[alice])
    chatter = await tg.send_text(bob, group, "nice weather")
    await tg.send_text(bob, group, "/paint@other_bot")
    await tg.send_text(bob, group, "/paint@stylebot_test_bot")
    await tg.send_photo(bob, group, images.jpeg(), caption="/paint")
    sent = await bot.send_message(group.id, "Send me a photo")
    await tg.send_text(alice, group, "here", reply_to=tg.messages_in(group)[0])
    texts = [message_in(u).text or message_in(u).caption for u in await bot.get_updates()]
    assert texts == ["/paint@stylebot_test_bot", "/paint", "here"]
    assert not chatter.delivered
    assert sent.chat.type == "supergroup"


async def test_albums_arrive_as_separate_updates_sharing_a_media_group(tg: FakeTelegram, bot: Bot) -> None:
    alice = tg.user("Alice")
    album = await tg.send_album(
        alice, tg.private_chat(alice), [images.jpeg(), images.png(), images.jpeg()], "3"
    )
    updates = await bot.get_updates()
    assert len(updates) == 3 == len(album)
    assert len({message_in(u).media_group_id for u in updates}) == 1
    assert message_in(updates[0]).media_group_id
    assert [message_in(u).caption for u in updates] == ["3", None, None]


# -- sending --------------------------------------------------------------------------------------


async def test_send_message_answers_a_telegram_message(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    first = await bot.send_message(chat.id, "<b>Hi</b> &amp; welcome", parse_mode="HTML", reply_markup=BUTTON)
    reply = await bot.send_message(chat.id, "again", reply_parameters=ReplyParameters(first.message_id))
    assert first.text == "Hi & welcome"
    assert first.entities[0].type == "bold"
    assert first.entities[0].length == 2
    assert getattr(first.from_user, "username", None) == "stylebot_test_bot"
    assert first.chat.id == chat.id
    assert first.reply_markup == BUTTON
    assert getattr(reply.reply_to_message, "message_id", None) == first.message_id
    assert [m.text for m in tg.messages_in(chat)] == ["Hi & welcome", "again"]


async def test_chats_must_be_known_and_not_blocking(tg: FakeTelegram, bot: Bot) -> None:
    bob = tg.user("Bob")
    chat = tg.private_chat(bob)
    assert await refusal(tg, bot.send_message(chat.id, "hello")) == "Bad Request: chat not found"
    assert await refusal(tg, bot.send_message(-42, "hello")) == "Bad Request: chat not found"
    await tg.send_text(bob, chat, "/start")
    assert (await bot.send_message(chat.id, "hello")).text == "hello"
    tg.block(bob)
    description = await refusal(tg, bot.send_message(chat.id, "hello"), Forbidden)
    assert description == "Forbidden: bot was blocked by the user"


@pytest.mark.parametrize(
    ("kwargs", "description"),
    [
        ({"text": ""}, "Bad Request: message text is empty"),
        ({"text": " \n "}, "Bad Request: message text is empty"),
        ({"text": "<b></b>", "parse_mode": "HTML"}, "Bad Request: message text is empty"),
        ({"text": "x" * 4097}, "Bad Request: message is too long"),
        (
            {"text": "x", "reply_parameters": ReplyParameters(999)},
            "Bad Request: message to be replied not found",
        ),
        (
            {
                "text": "x",
                "reply_markup": InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="é" * 33)]]),
            },
            "Bad Request: BUTTON_DATA_INVALID",
        ),
        (
            {"text": "x", "reply_markup": {"inline_keyboard": [[{"text": "plain"}]]}},
            "Bad Request: can't parse inline keyboard button: "
            "Text buttons are unallowed in the inline keyboard",
        ),
        (
            {"text": "<b>x", "parse_mode": "HTML"},
            "Bad Request: can't parse entities: Can't find end tag corresponding to start tag b",
        ),
    ],
)
async def test_send_message_refusals(
    tg: FakeTelegram, bot: Bot, chat: Chat, kwargs: dict[str, Any], description: str
) -> None:
    assert await refusal(tg, bot.send_message(chat.id, **kwargs)) == description


async def test_limits_are_inclusive(bot: Bot, chat: Chat) -> None:
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="d" * 64)]])
    assert len((await bot.send_message(chat.id, "x" * 4096, reply_markup=markup)).text or "") == 4096
    assert len((await bot.send_photo(chat.id, images.jpeg(), caption="c" * 1024)).caption or "") == 1024


async def test_replying_to_a_missing_message_can_be_allowed(bot: Bot, chat: Chat) -> None:
    reply = ReplyParameters(999, allow_sending_without_reply=True)
    assert (await bot.send_message(chat.id, "x", reply_parameters=reply)).reply_to_message is None


@pytest.mark.parametrize(
    ("html", "error"),
    [
        ("<foo>x</foo>", 'Unsupported start tag "foo" at byte offset 0'),
        ("é</b>", "Unexpected end tag at byte offset 2"),
        ("<b>x</i>", 'Unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
        ("<b", "Unclosed start tag at byte offset 0"),
        ('<a href="x>y', "Unclosed start tag at byte offset 0"),
        ("<span>x</span>", 'Tag "span" must have class "tg-spoiler" at byte offset 0'),
    ],
)
def test_html_errors_are_tdlibs(html: str, error: str) -> None:
    with pytest.raises(Exception, match="^" + error.replace("(", r"\(")):
        parse_html(html)


def test_html_gives_plain_text_and_utf16_entities() -> None:
    text, entities = parse_html(
        '🙂 <i>a <a href="https://t.me">b</a></i> &lt;3 <pre><code class="language-py">x</code></pre>'
    )
    assert text == "🙂 a b <3 x"
    assert entities == [
        {"type": "italic", "offset": 3, "length": 3},
        {"type": "text_link", "offset": 5, "length": 1, "url": "https://t.me"},
        {"type": "pre", "offset": 10, "length": 1, "language": "py"},
    ]


def test_markdown_v2_is_strict_about_reserved_characters() -> None:
    assert parse_markdown_v2(r"*Done*\! [see](https://t.me/x\)y) ||s||") == (
        "Done! see s",
        [
            {"type": "bold", "offset": 0, "length": 4},
            {"type": "text_link", "offset": 6, "length": 3, "url": "https://t.me/x)y"},
            {"type": "spoiler", "offset": 10, "length": 1},
        ],
    )
    with pytest.raises(
        Exception, match=r"Character '\.' is reserved and must be escaped with the preceding '\\'"
    ):
        parse_markdown_v2("Done.")
    with pytest.raises(Exception, match="Can't find end of Italic entity at byte offset 0"):
        parse_markdown_v2("_open")


async def test_send_chat_action(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    assert await bot.send_chat_action(chat.id, "upload_photo")
    description = await refusal(tg, bot.send_chat_action(chat.id, "painting"))
    assert description == "Bad Request: wrong parameter action in request"


# -- files ---------------------------------------------------------------------------------------


async def test_a_users_photo_round_trips_through_get_file(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    original = images.pattern(640, 480)
    message = await tg.send_photo(peer(chat), chat, original, caption="paint me")
    (update,) = await bot.get_updates()
    sizes = message_in(update).photo
    assert [(s.width, s.height) for s in sizes] == [(90, 68), (320, 240), (640, 480)]
    file = await bot.get_file(sizes[-1].file_id)
    assert bytes(await file.download_as_bytearray()) == original
    assert images.size_of(bytes(await (await bot.get_file(sizes[0].file_id)).download_as_bytearray())) == (
        90,
        68,
    )
    assert message.file_id == sizes[-1].file_id


async def test_large_photos_are_downscaled_like_telegram(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    await tg.send_photo(peer(chat), chat, images.pattern(2000, 1000))
    (update,) = await bot.get_updates()
    assert [(s.width, s.height) for s in message_in(update).photo] == [
        (90, 45),
        (320, 160),
        (800, 400),
        (1280, 640),
    ]


async def test_a_bots_photo_upload_can_be_read_back(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    painting = images.pattern(300, 200, "PNG")
    sent = await bot.send_photo(
        chat.id, painting, caption="<i>Starry</i>", parse_mode="HTML", reply_markup=BUTTON
    )
    assert (sent.photo[-1].width, sent.photo[-1].height) == (300, 200)
    assert sent.caption == "Starry"
    assert sent.caption_entities[0].type == "italic"
    assert tg.downloaded(sent.photo[-1].file_id) == painting
    again = await bot.send_photo(chat.id, sent.photo[-1].file_id)  # by file_id, as bots resend
    assert again.photo[-1].file_id == sent.photo[-1].file_id


async def test_documents_keep_their_name_and_type(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    data = images.png(10, 10)
    sent = await bot.send_document(chat.id, data, filename="painting.png", caption="full size")
    assert sent.document is not None
    assert (sent.document.file_name, sent.document.mime_type, sent.document.file_size) == (
        "painting.png",
        "image/png",
        len(data),
    )
    assert tg.downloaded(sent.document.file_id) == data
    upload = await tg.send_document(peer(chat), chat, b"%PDF", "cv.pdf", "application/pdf")
    assert upload.document is not None
    file = await bot.get_file(upload.document["file_id"])
    assert bytes(await file.download_as_bytearray()) == b"%PDF"


@pytest.mark.parametrize(
    ("photo", "description"),
    [
        (b"not an image", "Bad Request: IMAGE_PROCESS_FAILED"),
        (images.jpeg(2100, 100), "Bad Request: PHOTO_INVALID_DIMENSIONS"),
        (images.jpeg(9000, 1100), "Bad Request: PHOTO_INVALID_DIMENSIONS"),
        (b"\xff" * (10 * 1024 * 1024 + 1), "Bad Request: PHOTO_SAVE_FILE_INVALID"),
        ("AgACAgIAAxkBAAnope", "Bad Request: wrong file identifier/HTTP URL specified"),
    ],
)
async def test_photo_refusals(
    tg: FakeTelegram, bot: Bot, chat: Chat, photo: bytes | str, description: str
) -> None:
    assert await refusal(tg, bot.send_photo(chat.id, photo)) == description


async def test_get_file_refuses_big_and_unknown_files(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    big = await tg.send_document(
        peer(chat), chat, b"0" * (20 * 1024 * 1024 + 1), "big.bin", "application/zip"
    )
    assert big.document is not None
    assert await refusal(tg, bot.get_file(big.document["file_id"])) == "Bad Request: file is too big"
    assert await refusal(tg, bot.get_file("nope")) == "Bad Request: invalid file_id"


async def test_send_media_group(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    media = [
        InputMediaPhoto(images.jpeg(), caption="<b>before</b>", parse_mode="HTML"),
        InputMediaPhoto(images.png()),
    ]
    sent = await bot.send_media_group(chat.id, media)
    assert len(sent) == 2
    assert sent[0].media_group_id == sent[1].media_group_id is not None
    assert (sent[0].caption, sent[1].caption) == ("before", None)
    assert [m.media_group_id for m in tg.messages_in(chat)] == [sent[0].media_group_id] * 2
    too_many = bot.send_media_group(chat.id, [InputMediaPhoto(images.jpeg())] * 11)
    assert await refusal(tg, too_many) == "Bad Request: too many messages to send as an album"
    mixed = bot.send_media_group(chat.id, [InputMediaPhoto(images.jpeg()), InputMediaDocument(b"x")])
    assert await refusal(tg, mixed) == "Bad Request: document can't be mixed with other media types"
    broken = bot.send_media_group(chat.id, [InputMediaPhoto(images.jpeg()), InputMediaPhoto(b"junk")])
    assert await refusal(tg, broken) == (
        'Bad Request: failed to send message #2 with the error message "IMAGE_PROCESS_FAILED"'
    )


# -- editing and deleting -------------------------------------------------------------------------


async def test_edits_change_state_and_refuse_no_ops(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    sent = await bot.send_message(chat.id, "Painting… 10%", reply_markup=BUTTON)
    await bot.edit_message_text("Painting… 50%", chat.id, sent.message_id, reply_markup=BUTTON)
    same = bot.edit_message_text("Painting… 50%", chat.id, sent.message_id, reply_markup=BUTTON)
    assert await refusal(tg, same) == f"Bad Request: {NOT_MODIFIED}"
    done = as_message(await bot.edit_message_text("Done", chat.id, sent.message_id))  # the keyboard goes
    assert done.reply_markup is None
    assert done.edit_date is not None
    (state,) = tg.messages_in(chat)
    assert (state.text, state.edit_count, state.reply_markup) == ("Done", 2, None)
    assert [h["text"] for h in state.history] == ["Painting… 10%", "Painting… 50%"]
    same_markup = bot.edit_message_reply_markup(chat.id, sent.message_id, reply_markup=None)
    assert await refusal(tg, same_markup) == f"Bad Request: {NOT_MODIFIED}"
    assert as_message(
        await bot.edit_message_reply_markup(chat.id, sent.message_id, reply_markup=BUTTON)
    ).reply_markup


async def test_edit_refusals(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    text = await bot.send_message(chat.id, "text")
    photo = await bot.send_photo(chat.id, images.jpeg(), caption="old")
    keyboard = await bot.send_message(chat.id, "pick", reply_markup=ReplyKeyboardMarkup([["Monet"]]))
    users = await tg.send_text(peer(chat), chat, "mine")
    too_long = "Bad Request: message caption is too long"
    no_text, no_caption, no_media = (
        f"Bad Request: there is no {what} in the message to edit" for what in ("text", "caption", "media")
    )
    expected = [
        (bot.edit_message_text("x", chat.id, 999), "Bad Request: message to edit not found"),
        (bot.edit_message_text("x", chat.id, users.message_id), "Bad Request: message can't be edited"),
        (bot.edit_message_text("x", chat.id, keyboard.message_id), "Bad Request: message can't be edited"),
        (bot.edit_message_text("x", chat.id, photo.message_id), no_text),
        (bot.edit_message_caption(chat.id, text.message_id, caption="x"), no_caption),
        (bot.edit_message_media(InputMediaPhoto(images.jpeg()), chat.id, text.message_id), no_media),
        (bot.edit_message_text("x" * 4097, chat.id, text.message_id), "Bad Request: message is too long"),
        (bot.edit_message_caption(chat.id, photo.message_id, caption="é" * 1025), too_long),
        (bot.edit_message_caption(chat.id, photo.message_id, caption="old"), f"Bad Request: {NOT_MODIFIED}"),
    ]  # fmt: skip
    for action, description in expected:
        assert await refusal(tg, action) == description


async def test_edit_caption_and_media(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    sent = await bot.send_photo(chat.id, images.jpeg(), caption="10%")
    assert (
        as_message(await bot.edit_message_caption(chat.id, sent.message_id, caption="done")).caption == "done"
    )
    final = images.pattern(100, 80)
    edited = as_message(
        await bot.edit_message_media(InputMediaPhoto(final, caption="final"), chat.id, sent.message_id)
    )
    assert tg.downloaded(edited.photo[-1].file_id) == final
    assert edited.caption == "final"
    same = bot.edit_message_media(
        InputMediaPhoto(edited.photo[-1].file_id, caption="final"), chat.id, sent.message_id
    )
    assert await refusal(tg, same) == f"Bad Request: {NOT_MODIFIED}"
    assert tg.messages_in(chat)[0].edit_count == 2


async def test_delete(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    sent = await bot.send_message(chat.id, "bye")
    assert await bot.delete_message(chat.id, sent.message_id)
    assert tg.messages_in(chat)[0].deleted
    assert (
        await refusal(tg, bot.delete_message(chat.id, sent.message_id))
        == "Bad Request: message to delete not found"
    )
    edit = bot.edit_message_text("x", chat.id, sent.message_id)
    assert await refusal(tg, edit) == "Bad Request: message to edit not found"
    alice = peer(chat)
    group = tg.group("G", [alice])
    theirs = await tg.send_text(alice, group, "/paint")
    description = await refusal(tg, bot.delete_message(group.id, theirs.message_id))
    assert description == "Bad Request: message can't be deleted"  # the bot is no admin there


# -- buttons ------------------------------------------------------------------------------------


async def test_pressing_a_button_and_answering_it(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    await bot.send_message(chat.id, "pick", reply_markup=BUTTON)
    (message,) = tg.messages_in(chat)
    query = await tg.press_button(peer(chat), message, "again")
    (update,) = await bot.get_updates()
    assert query_of(update).data == "again"
    assert getattr(query_of(update).message, "message_id", None) == message.message_id
    assert query_of(update).from_user.id == peer(chat).id
    assert await query_of(update).answer("Queued!")
    assert query.answered
    assert query.answer == {"text": "Queued!", "show_alert": False, "url": None}
    stale = bot.answer_callback_query(query.id)
    assert await refusal(tg, stale) == (
        "Bad Request: query is too old and response timeout expired or query ID is invalid"
    )
    assert "query ID is invalid" in await refusal(tg, bot.answer_callback_query("12345"))


async def test_only_existing_buttons_can_be_pressed(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    await bot.send_message(chat.id, "pick", reply_markup=BUTTON)
    (message,) = tg.messages_in(chat)
    with pytest.raises(AssertionError, match="no live button"):
        await tg.press_button(peer(chat), message, "forged")
    await tg.press_button(peer(chat), message, "forged", force=True)
    assert query_of((await bot.get_updates())[0]).data == "forged"


# -- groups, admins, commands ---------------------------------------------------------------------


async def test_chat_members_tell_admins_apart(tg: FakeTelegram, bot: Bot) -> None:
    owner, admin, member, outsider = (tg.user(name) for name in ("Olga", "Anna", "Mark", "Zed"))
    group = tg.group("Art club", [member], admins=[admin], owner=owner)
    assert isinstance(await bot.get_chat_member(group.id, owner.id), ChatMemberOwner)
    assert isinstance(await bot.get_chat_member(group.id, admin.id), ChatMemberAdministrator)
    assert isinstance(await bot.get_chat_member(group.id, member.id), ChatMemberMember)
    assert isinstance(await bot.get_chat_member(group.id, outsider.id), ChatMemberLeft)
    assert {m.user.id for m in await bot.get_chat_administrators(group.id)} == {owner.id, admin.id}
    assert await refusal(tg, bot.get_chat_member(group.id, 5)) == "Bad Request: user not found"
    info = await bot.get_chat(group.id)
    assert (info.type, info.title) == ("supergroup", "Art club")


async def test_my_commands_round_trip_per_language(tg: FakeTelegram, bot: Bot) -> None:
    assert await bot.set_my_commands([BotCommand("style", "Pick a style")])
    assert await bot.set_my_commands([BotCommand("style", "Выбрать стиль")], language_code="ru")
    assert [c.description for c in await bot.get_my_commands()] == ["Pick a style"]
    assert [c.description for c in await bot.get_my_commands(language_code="ru")] == ["Выбрать стиль"]
    invalid = bot.set_my_commands([BotCommand("Style", "x")])
    assert await refusal(tg, invalid) == "Bad Request: BOT_COMMAND_INVALID"


# -- rate limits and observation ----------------------------------------------------------------


async def test_fail_next_answers_429_once(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    tg.fail_next("sendMessage", retry_after=3)
    with pytest.raises(RetryAfter, match="Retry in 3"):
        await bot.send_message(chat.id, "x")
    assert tg.calls[-1].status == 429
    assert tg.calls[-1].error == "Too Many Requests: retry after 3"
    assert (await bot.send_message(chat.id, "x")).text == "x"
    tg.fail_next("sendMessage", code=403, description="Forbidden: bot was kicked from the supergroup chat")
    await refusal(tg, bot.send_message(chat.id, "x"), Forbidden)


async def test_edit_rate_is_measured_and_can_be_enforced(bot: Bot, chat: Chat, tg: FakeTelegram) -> None:
    sent = await bot.send_message(chat.id, "0")
    for n in range(1, 4):
        await bot.edit_message_text(str(n), chat.id, sent.message_id)
    assert tg.max_edits_in_window(chat, 1.0) == 3
    assert len(tg.edit_times(chat)) == 3
    tg.edit_limit = (3, 60.0)
    with pytest.raises(RetryAfter):
        await bot.edit_message_text("4", chat.id, sent.message_id)


# -- faults ------------------------------------------------------------------------------------


async def test_faults_are_off_by_default_and_each_kind_looks_like_the_real_failure(
    tg: FakeTelegram, bot: Bot, chat: Chat
) -> None:
    for _ in range(20):
        await bot.send_message(chat.id, "fine")
    assert not tg.faults.injected
    tg.faults.set("sendMessage", share=1.0, kinds=["429"], retry_after=4)
    with pytest.raises(RetryAfter, match="Retry in 4"):
        await bot.send_message(chat.id, "x")
    tg.faults.off()
    tg.faults.set("sendMessage", share=1.0, kinds=["5xx"])
    with pytest.raises(NetworkError, match=r"Bad Gateway \(502\)") as failed:
        await bot.send_message(chat.id, "x")
    assert not isinstance(failed.value, BadRequest)
    tg.faults.off()
    tg.faults.set("sendMessage", share=1.0, kinds=["lost"])
    with pytest.raises(NetworkError, match="disconnected") as failed:
        await bot.send_message(chat.id, "carried out")
    assert not isinstance(failed.value, TimedOut)
    assert [m.text for m in tg.messages_in(chat)][-1] == "carried out"  # Telegram has sent it
    assert tg.calls[-1].ok
    assert tg.calls[-1].lost
    assert tg.faults.injected == {
        ("sendMessage", "429"): 1,
        ("sendMessage", "5xx"): 1,
        ("sendMessage", "lost"): 1,
    }
    assert [m.text for m in tg.messages_in(chat)].count("x") == 0  # neither 429 nor 502 carried anything out


async def test_a_timeout_holds_the_answer_past_the_clients_patience_and_sends_nothing(
    tg: FakeTelegram, chat: Chat
) -> None:
    tg.faults.hold = 1.0
    tg.faults.set("sendMessage", share=1.0, kinds=["timeout"])
    request = HTTPXRequest(read_timeout=0.3)
    async with Bot(tg.token, base_url=f"{tg.root_url}/bot", request=request) as impatient:
        with pytest.raises(TimedOut):
            await impatient.send_message(chat.id, "never sent")
    assert "never sent" not in [m.text for m in tg.messages_in(chat)]
    assert tg.calls_to("sendMessage")[-1].status == 504


async def test_faults_hit_the_share_asked_for_deterministically_and_spare_polling(
    bot: Bot, chat: Chat, tg: FakeTelegram
) -> None:
    async def run(seed: int) -> list[int]:
        async with FakeTelegram(fault_seed=seed) as other:
            friend = other.user("Alice")
            place = other.private_chat(friend)
            await other.send_text(friend, place, "hi")
            other.faults.set(share=0.3, kinds=["5xx"])
            other.faults.set("sendMessage", share=0.2, kinds=["429"])
            async with Bot(other.token, base_url=f"{other.root_url}/bot") as client:
                for _ in range(5):
                    await client.get_updates(timeout=0)
                statuses = []
                for n in range(200):
                    with contextlib.suppress(NetworkError, RetryAfter):
                        await client.send_message(place.id, str(n))
                    statuses.append(other.calls[-1].status)
            assert all(call.ok for call in other.calls_to("getUpdates"))
            return statuses

    first, again = await run(7), await run(7)
    assert first == again
    assert 60 <= first.count(502) + first.count(429) <= 140  # half the calls, give or take
    assert first.count(429) > 10
    assert first.count(502) > 30


async def test_faults_can_be_set_from_another_process(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    async with httpx.AsyncClient(base_url=tg.root_url) as client:
        answer = await client.post(
            "/_faults", json={"method": "editMessageText", "share": 1, "kinds": ["429"]}
        )
        assert answer.json()["rules"] == {
            "editmessagetext": [{"share": 1.0, "kinds": ["429"], "retry_after": 1}]
        }
        assert (await client.post("/_faults", json={"share": 2})).status_code == 400
        sent = await bot.send_message(chat.id, "a")
        with pytest.raises(RetryAfter):
            await bot.edit_message_text("b", chat.id, sent.message_id)
        assert (await client.get("/_faults")).json()["injected"] == {"editMessageText 429": 1}
        await client.post("/_faults", json={"off": True})
    assert as_message(await bot.edit_message_text("b", chat.id, sent.message_id)).text == "b"


async def test_a_deleted_message_and_a_blocked_user_refuse_edits(
    tg: FakeTelegram, bot: Bot, chat: Chat
) -> None:
    sent = await bot.send_message(chat.id, "status")
    tg.delete_message(chat, sent.message_id)
    assert await refusal(tg, bot.edit_message_text("x", chat.id, sent.message_id)) == (
        "Bad Request: message to edit not found"
    )
    other = await bot.send_message(chat.id, "status")
    tg.block(peer(chat))
    description = await refusal(tg, bot.edit_message_text("x", chat.id, other.message_id), Forbidden)
    assert description == "Forbidden: bot was blocked by the user"


async def test_wait_for_takes_calls_from_the_past_then_the_future(
    tg: FakeTelegram, bot: Bot, chat: Chat
) -> None:
    await bot.send_message(chat.id, "first")
    assert (await tg.wait_for("sendMessage")).params["text"] == "first"
    later = asyncio.create_task(tg.wait_for("sendmessage", lambda c: c.params["text"] == "third"))
    await bot.send_message(chat.id, "second")
    await bot.send_message(chat.id, "third")
    assert (await later).result["text"] == "third"
    assert (await tg.wait_for("sendMessage")).params["text"] == "second"
    with pytest.raises(AssertionError, match="no matching sendMessage"):
        await tg.wait_for("sendMessage", timeout=0.1)


# -- a real PTB application -----------------------------------------------------------------------


async def test_a_ptb_application_answers_start_over_real_polling(tg: FakeTelegram) -> None:
    async def start(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        assert update.effective_message is not None
        await update.effective_message.reply_text("Hello! Send me a photo.")

    app = (
        ApplicationBuilder()
        .token(tg.token)
        .base_url(f"{tg.root_url}/bot")
        .base_file_url(f"{tg.root_url}/file/bot")
        .build()
    )
    app.add_handler(CommandHandler("start", start))
    alice = tg.user("Alice")
    chat = tg.private_chat(alice)
    assert app.updater is not None
    async with app:
        await app.start()
        await app.updater.start_polling(poll_interval=0, timeout=1)
        command = await tg.send_text(alice, chat, "/start")
        reply = await tg.wait_for("sendMessage")
        await app.updater.stop()
        await app.stop()
    assert reply.ok
    assert reply.params["chat_id"] == chat.id
    assert command.delivered
    assert tg.messages_in(chat)[0].text == "Hello! Send me a photo."
    assert tg.pending_updates == []  # the final getUpdates confirmed the /start update


# -- a group upgraded to a supergroup, an update sent again ---------------------------------------


async def test_an_upgraded_group_answers_as_telegram_does_and_announces_both_ids(
    tg: FakeTelegram, bot: Bot
) -> None:
    """The old id answers every method 400 with ``parameters.migrate_to_chat_id`` (PTB: ``ChatMigrated``);
    the bot gets the two service messages, even in privacy mode; the new chat takes messages."""
    alice = tg.user("Alice")
    group = tg.group("Club", [alice], supergroup=False)
    status = await bot.send_message(group.id, "queued")
    supergroup = await tg.upgrade_group(group, alice)
    assert supergroup.type == "supergroup"
    assert str(supergroup.id).startswith("-100")
    for call in (bot.send_message(group.id, "done"), bot.edit_message_text("x", group.id, status.message_id)):
        with pytest.raises(ChatMigrated) as migrated:
            await call
        assert migrated.value.new_chat_id == supergroup.id
    assert tg.calls[-1].error == "Bad Request: group chat was upgraded to a supergroup chat"
    updates = await bot.get_updates(timeout=0)
    notices = [message_in(u) for u in updates]
    assert [(m.chat.id, m.migrate_to_chat_id, m.migrate_from_chat_id) for m in notices] == [
        (group.id, supergroup.id, None),
        (supergroup.id, None, group.id),
    ]
    sent = await bot.send_message(supergroup.id, "here")
    assert sent.message_id == 2  # the supergroup counts its own messages, after its notice
    with pytest.raises(AssertionError, match="supergroup now"):
        await tg.send_text(alice, group, "hello?")
    quiet = await tg.upgrade_group(tg.group("Quiet", [alice], supergroup=False), alice, announce=False)
    assert await bot.get_updates(offset=updates[-1].update_id + 1, timeout=0) == ()
    assert quiet.type == "supergroup"


async def test_an_update_is_sent_again_as_it_was(tg: FakeTelegram, bot: Bot, chat: Chat) -> None:
    message = await tg.send_text(peer(chat), chat, "/start")
    (first,) = await bot.get_updates(timeout=0)
    await bot.get_updates(offset=first.update_id + 1, timeout=0)  # confirmed
    await tg.deliver_again(tg.update_of(message))
    (again,) = await bot.get_updates(timeout=0)
    assert again.to_dict() == first.to_dict()

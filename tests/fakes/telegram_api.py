"""A local stand-in for Telegram's Bot API server, for end-to-end tests.

Tests run the real bot (real HTTP, real long polling) against this server instead of
api.telegram.org: the bot takes its root from TELEGRAM_API_URL, as for a self-hosted
telegram-bot-api, so requests arrive at ``/bot<token>/<method>`` and downloads at
``/file/bot<token>/<file_path>``. The server keeps a small model of Telegram's world (users,
chats, messages, files), answers the methods the bot uses with Telegram's shapes and Telegram's
own error texts (from telegram-bot-api and TDLib), and gives tests helpers to play users and to
observe the bot::

    async with FakeTelegram() as tg:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        ...  # start the bot with TELEGRAM_API_URL=tg.root_url
        await tg.send_text(alice, chat, "/start")
        call = await tg.wait_for("sendMessage")
        assert call.params["chat_id"] == chat.id

Like Telegram, the bot sees a private chat only once its user has written there, and (privacy mode,
as getMe says) sees in groups only commands, mentions of itself and replies to its messages.

A Telegram that misbehaves, for the tests of issue 19: ``tg.faults.set("sendPhoto", share=0.1,
kinds=["429", "5xx", "timeout", "lost"])`` fails a seeded share of calls the way the real one does (see
``Faults``), also from another process through ``POST /_faults``; ``tg.block(user)`` and
``tg.delete_message(chat, message_id)`` play a user who blocked the bot and a deleted message.
Users send clips too (issue 21): ``send_animation`` (a GIF, sent by Telegram as an MP4 animation with a
document beside it), ``send_video`` and ``send_video_note`` (a round video message).
Not modelled: webhooks, inline mode, channels, audio/stickers, payments, forum topics.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import json
import logging
import math
import mimetypes
import random
import re
import socket
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

log = logging.getLogger(__name__)

MB = 1024 * 1024
MAX_TEXT, MAX_CAPTION, MAX_CALLBACK_DATA, MAX_ALERT = 4096, 1024, 64, 200
MAX_PHOTO_BYTES, MAX_DOWNLOAD_BYTES, MAX_UPLOAD_BYTES = 10 * MB, 20 * MB, 50 * MB
PHOTO_SIDES = (90, 320, 800, 1280)  # Telegram's s/m/x/y sizes; bots never see the 2560 one
CHAT_ACTIONS = frozenset({
    "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
    "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note",
})  # fmt: skip
BUTTON_ACTIONS = (
    "url", "callback_data", "web_app", "login_url", "switch_inline_query", "switch_inline_query_current_chat",
    "switch_inline_query_chosen_chat", "copy_text", "callback_game", "pay",
)  # fmt: skip
OPT_IN_UPDATES = frozenset({"chat_member", "message_reaction", "message_reaction_count"})
# Form fields arrive as strings; these are turned back into what the client meant.
INT_FIELDS = frozenset({
    "chat_id", "message_id", "user_id", "offset", "limit", "timeout", "reply_to_message_id",
    "message_thread_id", "cache_time",
})  # fmt: skip
BOOL_FIELDS = frozenset({
    "allow_sending_without_reply", "show_alert", "drop_pending_updates", "disable_notification",
    "protect_content", "has_spoiler", "disable_content_type_detection", "show_caption_above_media",
})  # fmt: skip
JSON_FIELDS = frozenset({
    "reply_markup", "reply_parameters", "media", "entities", "caption_entities", "allowed_updates",
    "commands", "scope", "link_preview_options", "message_ids",
})  # fmt: skip
ADMIN_RIGHTS = {
    "can_be_edited": False, "is_anonymous": False, "can_manage_chat": True, "can_delete_messages": True,
    "can_manage_video_chats": True, "can_restrict_members": True, "can_promote_members": False,
    "can_change_info": True, "can_invite_users": True, "can_post_stories": False, "can_edit_stories": False,
    "can_delete_stories": False, "can_pin_messages": True, "can_manage_topics": False,
}  # fmt: skip
NO_GIFTS = {
    "unlimited_gifts": False, "limited_gifts": False, "unique_gifts": False, "premium_subscription": False,
    "gifts_from_channels": False,
}  # fmt: skip
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly the same "
    "as a current content and reply markup of the message"
)
QUERY_INVALID = "query is too old and response timeout expired or query ID is invalid"
CONFLICT = "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running"
FAULT_KINDS = ("429", "5xx", "timeout", "lost")
UNFAULTED = frozenset({"getupdates", "getme"})  # "*" spares these: the bot's start and its polling
BAD_GATEWAY_PAGE = (  # what Telegram's front (nginx) answers when the Bot API server behind it is down
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1>"
    "</center>\r\n<hr><center>nginx/1.18.0</center>\r\n</body>\r\n</html>\r\n"
)


class ApiError(Exception):
    """A refusal, answered as Telegram does: HTTP status = error_code, plus the description."""

    def __init__(
        self,
        code: int,
        description: str,
        retry_after: int | None = None,
        *,
        migrate_to_chat_id: int | None = None,
    ) -> None:
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after
        self.migrate_to_chat_id = migrate_to_chat_id

    def body(self) -> dict[str, Any]:
        """Telegram's error answer; ``parameters`` (its ResponseParameters) only where there are some."""
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        if self.migrate_to_chat_id is not None:
            body["parameters"] = {"migrate_to_chat_id": self.migrate_to_chat_id}
        return body


def _bad(description: str) -> ApiError:
    return ApiError(400, f"Bad Request: {description}")


def _too_many(retry_after: int) -> ApiError:
    return ApiError(429, f"Too Many Requests: retry after {retry_after}", retry_after)


def _upgraded(chat: Chat) -> ApiError:
    """What every method naming a group that became a supergroup answers: the new id to use instead."""
    return ApiError(
        400, "Bad Request: group chat was upgraded to a supergroup chat", migrate_to_chat_id=chat.migrated_to
    )


def _u16(text: str) -> int:
    """Length in UTF-16 code units: the unit of Telegram's entity offsets."""
    return len(text.encode("utf-16-le")) // 2


# ---------------------------------------------------------------------------------------------
# Data model


@dataclass(eq=False)
class User:
    """A Telegram account; `blocked` makes the bot's sends to it fail as when a user blocks a bot."""

    id: int
    first_name: str
    username: str | None = None
    language_code: str | None = "en"
    last_name: str | None = None
    is_bot: bool = False
    blocked: bool = False

    def to_api(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "is_bot": self.is_bot, "first_name": self.first_name}
        for key in ("last_name", "username", "language_code"):
            if getattr(self, key):
                out[key] = getattr(self, key)
        return out


@dataclass(eq=False)
class Chat:
    """A private chat or a group; `known` is False until the bot may see it (a user wrote there)."""

    id: int
    type: str
    title: str | None = None
    peer: User | None = None
    members: set[int] = field(default_factory=set)
    admins: set[int] = field(default_factory=set)
    owner: int | None = None
    bot_is_admin: bool = False
    known: bool = False
    last_message_id: int = 0
    migrated_to: int | None = (
        None  # a group upgraded to a supergroup: the supergroup's id (``upgrade_group``)
    )

    def to_api(self) -> dict[str, Any]:
        if self.peer is None:
            return {"id": self.id, "type": self.type, "title": self.title}
        out: dict[str, Any] = {"id": self.id, "type": "private", "first_name": self.peer.first_name}
        for key in ("last_name", "username"):
            if getattr(self.peer, key):
                out[key] = getattr(self.peer, key)
        return out


@dataclass(eq=False)
class StoredFile:
    """Bytes behind a file_id, as served by getFile and the download route."""

    file_id: str
    file_unique_id: str
    data: bytes
    file_path: str
    downloads: int = 0


@dataclass(eq=False)
class Upload:
    """A file part of a multipart request."""

    name: str
    filename: str | None
    content_type: str | None
    data: bytes

    def __repr__(self) -> str:
        return f"Upload({self.name!r}, {self.filename!r}, {len(self.data)} bytes)"


@dataclass(eq=False)
class Message:
    """The current state of a message; edits keep the earlier states in `history`."""

    message_id: int
    chat: Chat
    sender: User
    date: int
    text: str | None = None
    entities: list[dict[str, Any]] | None = None
    caption: str | None = None
    caption_entities: list[dict[str, Any]] | None = None
    photo: list[dict[str, Any]] | None = None
    document: dict[str, Any] | None = None
    animation: dict[str, Any] | None = None  # with `document` too, as Telegram sends animations
    video: dict[str, Any] | None = None
    video_note: dict[str, Any] | None = None
    media_group_id: str | None = None
    reply_to: Message | None = None
    reply_markup: dict[str, Any] | None = None
    sender_chat: Chat | None = None  # an anonymous admin's group, or the channel someone posts as
    migrate_to_chat_id: int | None = None  # service messages of a group's upgrade (``upgrade_group``)
    migrate_from_chat_id: int | None = None
    deleted: bool = False
    delivered: bool = False  # for users' messages: whether the bot got an update for it
    edit_count: int = 0
    edit_date: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def from_bot(self) -> bool:
        return self.sender.is_bot

    @property
    def inline_keyboard(self) -> list[list[dict[str, Any]]]:
        return (self.reply_markup or {}).get("inline_keyboard") or []

    @property
    def button_data(self) -> list[str]:
        """Every callback_data on the message's inline keyboard, row by row."""
        return [b["callback_data"] for row in self.inline_keyboard for b in row if "callback_data" in b]

    @property
    def file_id(self) -> str | None:
        """The largest photo's or the document's file_id, for `FakeTelegram.downloaded`."""
        if self.photo:
            return self.photo[-1]["file_id"]
        return self.document["file_id"] if self.document else None

    def to_api(self, *, with_reply: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "message_id": self.message_id,
            "from": self.sender.to_api(),
            "chat": self.chat.to_api(),
            "date": self.date,
        }
        if self.sender_chat is not None:
            out["sender_chat"] = self.sender_chat.to_api()
            if self.chat.type == "channel":  # channel posts have no author
                del out["from"]
        if self.edit_date is not None:
            out["edit_date"] = self.edit_date
        if self.media_group_id is not None:
            out["media_group_id"] = self.media_group_id
        if with_reply and self.reply_to is not None and not self.reply_to.deleted:  # deleted ones are dropped
            out["reply_to_message"] = self.reply_to.to_api(with_reply=False)
        fields = (
            "text", "entities", "photo", "document", "animation", "video", "video_note", "caption",
            "caption_entities", "migrate_to_chat_id", "migrate_from_chat_id",
        )  # fmt: skip
        out.update({key: getattr(self, key) for key in fields if getattr(self, key) is not None})
        if self.inline_keyboard:  # Telegram echoes only inline keyboards
            out["reply_markup"] = {"inline_keyboard": self.inline_keyboard}
        return out


@dataclass(eq=False)
class Call:
    """One request the bot made, as the server saw it and answered it."""

    method: str
    params: dict[str, Any]
    files: dict[str, Upload]
    time: float  # time.monotonic() on arrival
    status: int = 200
    result: Any = None
    error: str | None = None
    claimed: bool = False  # already returned by a wait_for
    lost: bool = False  # carried out, but the answer never reached the bot (``Faults`` "lost")

    @property
    def ok(self) -> bool:
        return self.status == 200


@dataclass(eq=False)
class CallbackQuery:
    """A button press; `answer` is what the bot's answerCallbackQuery said."""

    id: str
    user: User
    message: Message
    data: str
    created: float
    answered: bool = False
    answer: dict[str, Any] = field(default_factory=dict)  # what answerCallbackQuery said, once ``answered``


# ---------------------------------------------------------------------------------------------
# Telegram's text formatting: ports of TDLib's parse_html and parse_markdown_v2 (MessageEntity.cpp)


class _ParseError(Exception):
    pass


_SPACES = " \t\r\n\0\v"
_HTML_ENTITY = re.compile(r"&(?:#x([0-9a-fA-F]*)|#([0-9]*)|([a-zA-Z]*));?")
_NAMED = {"lt": "<", "gt": ">", "amp": "&", "quot": '"'}
_HTML_TYPES = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "tg-spoiler": "spoiler",
    "span": "spoiler", "blockquote": "blockquote", "code": "code", "pre": "pre", "a": "text_link",
    "tg-emoji": "custom_emoji",
}  # fmt: skip


def _html_entity(text: str, i: int) -> tuple[str, int] | None:
    """The character an &-reference at text[i] stands for and where it ends, or None if it is not one."""
    m = _HTML_ENTITY.match(text, i)
    if m is None:
        return None
    hex_digits, digits, name = m.groups()
    if name is not None:
        return (_NAMED[name], m.end()) if name in _NAMED else None
    number, span = (int(hex_digits, 16), 3 + len(hex_digits)) if hex_digits is not None else (0, 0)
    if digits is not None:
        number, span = int(digits or "0"), 2 + len(digits)
    if number == 0 or number >= 0x10FFFF or span >= 10:
        return None
    return chr(number), m.end()


def parse_html(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Plain text and entities of HTML-formatted text, failing with TDLib's own messages."""
    n = len(text)

    def at(i: int) -> str:
        return text[i] if i < n else "\0"

    def off(i: int) -> int:
        return len(text[:i].encode())

    out: list[str] = []
    u16 = 0
    stack: list[tuple[str, str, int, int]] = []  # tag, argument, utf-16 offset, len(out)
    entities: list[dict[str, Any]] = []
    i = 0
    while i < n:
        c = text[i]
        decoded = _html_entity(text, i) if c == "&" else None
        if decoded is not None:
            out.append(decoded[0])
            u16 += _u16(decoded[0])
            i = decoded[1]
            continue
        if c != "<":
            out.append(c)
            u16 += _u16(c)
            i += 1
            continue
        begin = i
        i += 1
        if at(i) != "/":
            while at(i) not in _SPACES and at(i) != ">":
                i += 1
            if i >= n:
                raise _ParseError(f"Unclosed start tag at byte offset {off(begin)}")
            tag = text[begin + 1 : i].lower()
            if tag not in _HTML_TYPES:
                raise _ParseError(f'Unsupported start tag "{tag}" at byte offset {off(begin)}')
            argument = ""
            while at(i) != ">":
                while i < n and at(i) in _SPACES:
                    i += 1
                if at(i) == ">":
                    break
                name_begin = i
                while at(i) not in _SPACES and at(i) not in "=>":
                    i += 1
                name = text[name_begin:i]
                if not name:
                    raise _ParseError(f'Empty attribute name in the tag "{tag}" at byte offset {off(begin)}')
                while i < n and at(i) in _SPACES:
                    i += 1
                if tag == "blockquote" and name == "expandable" and at(i) != "=":
                    argument = "expandable"
                    continue
                if at(i) != "=":
                    raise _ParseError(
                        f'Expected equal sign in declaration of an attribute of the tag "{tag}" '
                        f"at byte offset {off(begin)}"
                    )
                i += 1
                while i < n and at(i) in _SPACES:
                    i += 1
                if i >= n:
                    raise _ParseError(f'Unclosed start tag "{tag}" at byte offset {off(begin)}')
                if at(i) not in "'\"":
                    token_begin = i
                    while at(i).isascii() and (at(i).isalnum() or at(i) in ".-"):
                        i += 1
                    value = text[token_begin:i].lower()
                    if at(i) not in _SPACES and at(i) != ">":
                        raise _ParseError(f"Unexpected end of name token at byte offset {off(token_begin)}")
                else:
                    quote, chars = at(i), []
                    i += 1
                    while i < n and at(i) != quote:
                        decoded = _html_entity(text, i) if at(i) == "&" else None
                        if decoded is not None:
                            chars.append(decoded[0])
                            i = decoded[1]
                        else:
                            chars.append(at(i))
                            i += 1
                    i += at(i) == quote
                    value = "".join(chars)
                if i >= n:
                    raise _ParseError(f"Unclosed start tag at byte offset {off(begin)}")
                if (tag, name) in (("a", "href"), ("tg-emoji", "emoji-id")):
                    argument = value
                elif tag == "code" and name == "class" and value.startswith("language-"):
                    argument = value[9:]
                elif tag == "span" and name == "class" and value.startswith("tg-"):
                    argument = value[3:]
            if tag == "span" and argument != "spoiler":
                raise _ParseError(f'Tag "span" must have class "tg-spoiler" at byte offset {off(begin)}')
            stack.append((tag, argument, u16, len(out)))
            i += 1
            continue
        if not stack:
            raise _ParseError(f"Unexpected end tag at byte offset {off(begin)}")
        while at(i) not in _SPACES and at(i) != ">":
            i += 1
        end_tag = text[begin + 2 : i].lower()
        while i < n and at(i) in _SPACES:
            i += 1
        if at(i) != ">":
            raise _ParseError(f"Unclosed end tag at byte offset {off(begin)}")
        tag, argument, start, start_len = stack[-1]
        if end_tag and end_tag != tag:
            raise _ParseError(
                f'Unmatched end tag at byte offset {off(begin)}, expected "</{tag}>", found "</{end_tag}>"'
            )
        stack.pop()
        i += 1
        if u16 == start:
            continue
        entity: dict[str, Any] = {"type": _HTML_TYPES[tag], "offset": start, "length": u16 - start}
        if tag == "a":
            entity["url"] = argument or "".join(out[start_len:])
        elif tag == "tg-emoji":
            if not argument.isdigit() or int(argument) == 0:
                raise _ParseError("Invalid custom emoji identifier specified")
            entity["custom_emoji_id"] = argument
        elif tag == "blockquote" and argument:
            entity["type"] = "expandable_blockquote"
        elif tag in (
            "pre",
            "code",
        ):  # <pre><code class="language-x">, either way round: a pre with a language
            prev = entities[-1] if entities else None
            same_span = prev is not None and (prev["offset"], prev["length"]) == (start, u16 - start)
            if (
                prev
                and same_span
                and {prev["type"], tag} == {"pre", "code"}
                and (argument or "language" in prev)
            ):
                prev.update(type="pre", language=argument or prev["language"])
                continue
            if argument:
                entity["language"] = argument
        entities.append(entity)
    if stack:
        raise _ParseError(f"Can't find end tag corresponding to start tag {stack[-1][0]}")
    for entity in entities:
        if entity["type"] == "code":
            entity.pop("language", None)
    return "".join(out), sorted(entities, key=lambda e: (e["offset"], -e["length"]))


_MD_TYPES = {
    "Bold": "bold", "Italic": "italic", "Underline": "underline", "Strikethrough": "strikethrough",
    "Spoiler": "spoiler", "Code": "code", "Pre": "pre", "TextUrl": "text_link",
}  # fmt: skip


def parse_markdown_v2(text: str) -> tuple[str, list[dict[str, Any]]]:
    """Plain text and entities of MarkdownV2 text (no blockquotes or custom emoji), as TDLib parses it."""
    n = len(text)

    def at(i: int) -> str:
        return text[i] if i < n else "\0"

    out: list[str] = []
    u16 = 0
    stack: list[tuple[str, str, int, int, int]] = []  # type, language, utf-16 offset, byte offset, len(out)
    entities: list[dict[str, Any]] = []
    i = 0
    while i < n:
        c = text[i]
        if c == "\\" and "\0" < at(i + 1) <= "~":
            out.append(at(i + 1))
            u16 += 1
            i += 2
            continue
        in_code = bool(stack) and stack[-1][0] in ("Code", "Pre")
        if c not in ("`" if in_code else "_*[]()~`>#+-=|{}.!"):
            out.append(c)
            u16 += _u16(c)
            i += 1
            continue
        top = stack[-1][0] if stack else None
        ends = {
            "Bold": c == "*",
            "Italic": c == "_" and at(i + 1) != "_",
            "Underline": c == "_" and at(i + 1) == "_",
            "Strikethrough": c == "~",
            "Spoiler": c == "|" and at(i + 1) == "|",
            "Code": c == "`",
            "Pre": text.startswith("```", i),
            "TextUrl": c == "]",
        }.get(top or "", False)
        if not ends:
            begin, language = i, ""
            if c == "_" and at(i + 1) == "_":
                kind, i = "Underline", i + 1
            elif c == "|" and at(i + 1) == "|":
                kind, i = "Spoiler", i + 1
            elif c in "_*~[":
                kind = {"_": "Italic", "*": "Bold", "~": "Strikethrough", "[": "TextUrl"}[c]
            elif text.startswith("```", i):
                kind, i = "Pre", i + 3
                end = i
                while at(end) not in _SPACES and at(end) != "`":
                    end += 1
                if end != i and end < n and at(end) != "`":
                    language, i = text[i:end], end
                if at(i) in "\r\n":
                    i += 2 if at(i + 1) in "\r\n" and at(i + 1) != at(i) else 1
                i -= 1
            elif c == "`":
                kind = "Code"
            else:
                raise _ParseError(f"Character '{c}' is reserved and must be escaped with the preceding '\\'")
            stack.append((kind, language, u16, len(text[:begin].encode()), len(out)))
            i += 1
            continue
        kind, language, start, _, start_len = stack.pop()
        url = ""
        if kind in ("Underline", "Spoiler"):
            i += 1
        elif kind == "Pre":
            i += 2
        elif kind == "TextUrl":
            if at(i + 1) != "(":
                url = "".join(out[start_len:])
            else:
                i += 2
                url_begin, chars = i, []
                while i < n and text[i] != ")":
                    if text[i] == "\\" and "\0" < at(i + 1) <= "~":
                        chars.append(text[i + 1])
                        i += 2
                        continue
                    chars.append(text[i])
                    i += 1
                if at(i) != ")":
                    raise _ParseError(
                        f"Can't find end of a URL at byte offset {len(text[:url_begin].encode())}"
                    )
                url = "".join(chars)
        i += 1
        if u16 == start:
            continue
        entity: dict[str, Any] = {"type": _MD_TYPES[kind], "offset": start, "length": u16 - start}
        if url:
            entity["url"] = url
        if language:
            entity["language"] = language
        entities.append(entity)
    if stack:
        raise _ParseError(f"Can't find end of {stack[-1][0]} entity at byte offset {stack[-1][3]}")
    return "".join(out), sorted(entities, key=lambda e: (e["offset"], -e["length"]))


def _trim(text: str, entities: list[dict[str, Any]]) -> tuple[str, list[dict[str, Any]]]:
    """Telegram strips surrounding whitespace from texts and captions; entities move along."""
    stripped = text.strip()
    if stripped == text:
        return text, entities
    lead, end = _u16(text[: len(text) - len(text.lstrip())]), _u16(stripped)
    kept = []
    for entity in entities:
        start = max(entity["offset"] - lead, 0)
        stop = min(entity["offset"] + entity["length"] - lead, end)
        if stop > start:
            kept.append({**entity, "offset": start, "length": stop - start})
    return stripped, kept


_COMMAND = re.compile(r"(?<![\w/<>])/[a-zA-Z0-9_]{1,64}(?:@[a-zA-Z0-9_]{3,32})?(?![\w/<>])")


def command_entities(text: str) -> list[dict[str, Any]]:
    """bot_command entities as Telegram sets them on users' messages, `/cmd@botname` included."""
    return [
        {"type": "bot_command", "offset": _u16(text[: m.start()]), "length": _u16(m.group())}
        for m in _COMMAND.finditer(text)
    ]


# ---------------------------------------------------------------------------------------------
# Request parameters


class Params:
    """A request's parameters, typed the way the handlers need them."""

    def __init__(self, values: dict[str, Any], uploads: dict[str, Upload]) -> None:
        self.values, self.uploads = values, uploads

    def get(self, key: str, default: Any = None) -> Any:
        value = self.values.get(key)
        return default if value is None else value

    def string(self, key: str) -> str | None:
        value = self.values.get(key)
        return None if value is None else str(value)

    def integer(self, key: str, *, required: bool = False) -> int | None:
        value = self.values.get(key)
        if value is None or value == "":
            if required:
                raise _bad(f'parameter "{key}" is required')
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            raise _bad(f'field "{key}" must be a valid Number') from None

    def flag(self, key: str) -> bool:
        value = self.values.get(key)
        return value is True or str(value).lower() == "true"


def _coerce(key: str, value: Any, from_form: bool) -> Any:
    if key in JSON_FIELDS and isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            what = "reply keyboard markup" if key == "reply_markup" else key
            raise _bad(f"can't parse {what} JSON object") from None
    if from_form and key in INT_FIELDS:
        try:
            return int(value)
        except ValueError:
            return value
    if from_form and key in BOOL_FIELDS:
        return value.lower() == "true"
    return value


async def _read_params(request: web.Request) -> tuple[dict[str, Any], dict[str, Upload]]:
    """Merges the query string and a JSON, urlencoded or multipart body, as Telegram accepts all four."""
    values = {key: _coerce(key, value, True) for key, value in request.query.items()}
    uploads: dict[str, Upload] = {}
    if request.content_type == "application/json" and request.can_read_body:
        try:
            body = await request.json()
        except ValueError:
            raise _bad("can't parse JSON encoded request") from None
        if not isinstance(body, dict):
            raise _bad("can't parse JSON encoded request")
        values.update({key: _coerce(key, value, False) for key, value in body.items()})
    elif request.can_read_body:
        form = await request.post()
        for key, value in form.items():
            if isinstance(value, web.FileField):
                uploads[key] = Upload(key, value.filename, value.content_type, value.file.read())
            else:
                values[key] = _coerce(key, value, True)
    for key, upload in uploads.items():
        values.setdefault(key, upload)  # a file sent directly as the parameter's value
    return values, uploads


Handler = Callable[[Params], Awaitable[Any]]


# ---------------------------------------------------------------------------------------------
# Faults: a Telegram that does not always answer, at once and correctly


@dataclass(frozen=True)
class _FaultRule:
    share: float
    kinds: tuple[str, ...]
    retry_after: int


class Faults:
    """Which calls fail, and how: off until ``set``. Each call of a method with rules draws once from a
    seeded generator, so a run with the same seed and the same calls in the same order fails alike.

    Kinds, as the real failures look to a client:
    - ``"429"``: flood control, ``retry_after`` seconds; not carried out.
    - ``"5xx"``: 502 with nginx's HTML page (not JSON), the Bot API server behind it being down; not
      carried out.
    - ``"timeout"``: no answer for ``hold`` seconds (past the client's read timeout), then 504; not
      carried out.
    - ``"lost"``: carried out (the message exists, the edit is made), then the connection drops before
      the answer: the client cannot tell it from a failure.
    """

    def __init__(self, seed: int = 0, *, hold: float = 6.0) -> None:
        self.hold = hold  # PTB's default read timeout is 5 s
        self.injected: Counter[tuple[str, str]] = Counter()
        self._random = random.Random(seed)
        self._rules: defaultdict[str, list[_FaultRule]] = defaultdict(list)

    def set(
        self,
        method: str = "*",
        *,
        share: float,
        kinds: Sequence[str] = FAULT_KINDS,
        retry_after: int = 1,
    ) -> None:
        """A ``share`` of the calls of ``method`` ("*": every method but getUpdates and getMe) fail with
        one of ``kinds``, chosen evenly. Calls add up: a method's own rules and the "*" ones."""
        unknown = set(kinds) - set(FAULT_KINDS)
        if unknown or not kinds:
            raise ValueError(f"fault kinds must be among {FAULT_KINDS}, not {sorted(unknown) or kinds}")
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"share must be within 0..1, not {share}")
        self._rules[method.lower()].append(_FaultRule(share, tuple(kinds), retry_after))

    def off(self) -> None:
        """Every call answered again (what was injected stays counted)."""
        self._rules.clear()

    def draw(self, method: str) -> tuple[str, int] | None:
        """The fault for this call of ``method`` (its kind and retry_after), or None."""
        rules = self._rules.get(method.lower(), []) + (
            [] if method.lower() in UNFAULTED else self._rules.get("*", [])
        )
        if not rules:
            return None
        point, edge = self._random.random(), 0.0
        for rule in rules:
            edge += rule.share
            if point < edge:
                kind = self._random.choice(rule.kinds)
                self.injected[(method, kind)] += 1
                return kind, rule.retry_after
        return None

    def describe(self) -> dict[str, Any]:
        """What the ``/_faults`` endpoint answers: the rules and what was injected so far."""
        return {
            "rules": {
                method: [
                    {"share": r.share, "kinds": list(r.kinds), "retry_after": r.retry_after} for r in rules
                ]
                for method, rules in self._rules.items()
            },
            "injected": {f"{method} {kind}": n for (method, kind), n in sorted(self.injected.items())},
        }


# ---------------------------------------------------------------------------------------------
# The server


class FakeTelegram:
    """Telegram's Bot API for one bot, on 127.0.0.1, with helpers for tests to drive and observe it."""

    def __init__(
        self,
        token: str = "123:ABC",
        *,
        username: str = "stylebot_test_bot",
        first_name: str = "Stylebot",
        privacy_mode: bool = True,
        max_poll_timeout: float = 5.0,
        wait_timeout: float = 10.0,
        callback_query_ttl: float = 15.0,
        edit_limit: tuple[int, float] | None = None,
        fault_seed: int = 0,
    ) -> None:
        """`max_poll_timeout` caps long polls so shutdowns stay fast; `edit_limit=(n, seconds)` makes
        the (n+1)-th edit within `seconds` in one chat fail with 429, as Telegram's flood control;
        `fault_seed` seeds `faults` (off until a test sets them)."""
        self.token = token
        bot_id = int(token.split(":")[0]) if token.split(":")[0].isdigit() else 1
        self.bot = User(bot_id, first_name, username=username, language_code=None, is_bot=True)
        self.privacy_mode, self.max_poll_timeout = privacy_mode, max_poll_timeout
        self.wait_timeout, self.callback_query_ttl = wait_timeout, callback_query_ttl
        self.edit_limit = edit_limit
        self.users: dict[int, User] = {bot_id: self.bot}
        self.chats: dict[int, Chat] = {}
        self.calls: list[Call] = []
        self.queries: dict[str, CallbackQuery] = {}
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self._messages: dict[tuple[int, int], Message] = {}
        self._files: dict[str, StoredFile] = {}
        self._photo_sets: dict[str, list[dict[str, Any]]] = {}  # any size's file_id -> all sizes
        self._documents: dict[str, dict[str, Any]] = {}
        self._updates: list[dict[str, Any]] = []
        self.delivered: list[dict[str, Any]] = []  # every update ever offered, in order (``update_of``)
        self._allowed_updates: list[str] | None = None
        self._edit_times: defaultdict[int, list[float]] = defaultdict(list)
        self._armed: defaultdict[str, list[ApiError]] = defaultdict(list)
        self.faults = Faults(fault_seed)
        self._ids = itertools.count(1)
        self._update_ids = itertools.count(100_000_001)
        self._poll_generation = 0
        self._changed = asyncio.Condition()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self.root_url = ""
        handlers: dict[str, Handler] = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "deleteWebhook": self._delete_webhook,
            "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands,
            "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands,
            "sendMessage": self._send_message,
            "sendPhoto": self._send_photo,
            "sendDocument": self._send_document,
            "sendAnimation": self._send_animation,
            "sendMediaGroup": self._send_media_group,
            "sendChatAction": self._send_chat_action,
            "editMessageText": self._edit_message_text,
            "editMessageCaption": self._edit_message_caption,
            "editMessageMedia": self._edit_message_media,
            "editMessageReplyMarkup": self._edit_message_reply_markup,
            "deleteMessage": self._delete_message,
            "deleteMessages": self._delete_messages,
            "answerCallbackQuery": self._answer_callback_query,
            "getFile": self._get_file,
            "getChat": self._get_chat,
            "getChatMember": self._get_chat_member,
            "getChatAdministrators": self._get_chat_administrators,
        }
        self._methods = {name.lower(): (name, handler) for name, handler in handlers.items()}

    # -- lifecycle -----------------------------------------------------------------------------

    async def __aenter__(self) -> FakeTelegram:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * MB)
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        app.router.add_route("*", "/_faults", self._handle_faults)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(self._runner, sock).start()
        self.root_url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def close(self) -> None:
        """Answers pending long polls with no updates, then stops the server."""
        self._closing = True
        await self._notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    # -- HTTP ----------------------------------------------------------------------------------

    async def _handle_api(self, request: web.Request) -> web.Response:
        call = Call(request.match_info["method"], {}, {}, time.monotonic())
        fault: tuple[str, int] | None = None
        try:
            if request.match_info["token"] != self.token:
                raise ApiError(401, "Unauthorized")
            call.method, handler = self._methods.get(call.method.lower(), (call.method, None))
            if handler is None:
                raise ApiError(404, "Not Found")
            call.params, call.files = await _read_params(request)
            if self._armed[call.method.lower()]:
                raise self._armed[call.method.lower()].pop(0)
            fault = self.faults.draw(call.method)
            if fault is not None and fault[0] == "429":
                raise _too_many(fault[1])
            if fault is not None and fault[0] in ("5xx", "timeout"):
                return await self._fail(request, call, fault[0])
            call.result = await handler(Params(call.params, call.files))
            body: dict[str, Any] = {"ok": True, "result": call.result}
        except ApiError as err:
            call.status, call.error, body = err.code, err.description, err.body()
        except Exception as err:  # a bug in the fake: make it loud in the test, not a silent 500
            log.exception("FakeTelegram failed on %s", call.method)
            call.status, call.error = 500, f"Internal Server Error: {err!r}"
            body = {"ok": False, "error_code": 500, "description": call.error}
        if fault is not None and fault[0] == "lost" and call.ok:
            call.lost = True  # carried out; the client never hears so
        await self._record(call)
        if call.lost:
            assert request.transport is not None
            request.transport.close()
            raise web.HTTPServiceUnavailable()  # never written: the connection is gone
        return web.json_response(body, status=call.status)

    async def _fail(self, request: web.Request, call: Call, kind: str) -> web.Response:
        """A 5xx page at once, or (a timeout) nothing until the client gave up; neither is carried out."""
        if kind == "timeout":
            call.status, call.error = 504, "timed out (not carried out)"
            await self._record(call)
            await asyncio.sleep(self.faults.hold)
            return web.json_response(
                {"ok": False, "error_code": 504, "description": "Gateway Timeout"}, status=504
            )
        call.status, call.error = 502, "Bad Gateway"
        await self._record(call)
        return web.Response(text=BAD_GATEWAY_PAGE, status=502, content_type="text/html")

    async def _record(self, call: Call) -> None:
        async with self._changed:
            self.calls.append(call)
            self._changed.notify_all()

    async def _handle_faults(self, request: web.Request) -> web.Response:
        """Faults set from outside (a benchmark running the bot in another process): POST a JSON object
        with ``set``'s arguments (``method``, ``share``, ``kinds``, ``retry_after``), or ``{"off": true}``;
        GET (or any POST) answers the rules and the faults injected so far."""
        if request.method == "POST":
            try:
                order = await request.json()
                if order.get("off"):
                    self.faults.off()
                else:
                    self.faults.set(
                        order.get("method", "*"),
                        share=float(order["share"]),
                        kinds=tuple(order.get("kinds", FAULT_KINDS)),
                        retry_after=int(order.get("retry_after", 1)),
                    )
            except (ValueError, KeyError, TypeError, AttributeError) as err:
                return web.json_response({"ok": False, "description": str(err)}, status=400)
        return web.json_response({"ok": True, **self.faults.describe()})

    async def _handle_file(self, request: web.Request) -> web.Response:
        stored = next((f for f in self._files.values() if f.file_path == request.match_info["path"]), None)
        if request.match_info["token"] != self.token or stored is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        stored.downloads += 1
        return web.Response(body=stored.data, content_type="application/octet-stream")

    # -- shared checks -------------------------------------------------------------------------

    def _chat(self, p: Params, key: str = "chat_id") -> Chat:
        """The chat a request names; the bot sees only chats where someone has written to it."""
        raw = p.get(key)
        if raw is None or raw == "":
            raise _bad("chat_id is empty")
        try:
            chat = self.chats.get(int(raw))
        except (TypeError, ValueError):
            chat = None
        if chat is None or not chat.known:
            raise _bad("chat not found")
        if chat.migrated_to is not None:
            raise _upgraded(chat)
        return chat

    def _target(self, p: Params) -> Chat:
        chat = self._chat(p)
        if chat.peer is not None and chat.peer.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _formatted(
        self, raw: Any, parse_mode: Any, entities: Any, *, caption: bool = False
    ) -> tuple[str | None, list[dict[str, Any]] | None]:
        """Text or caption after parse_mode, trimmed and checked against Telegram's limits."""
        text, found = "" if raw is None else str(raw), list(entities or [])
        mode = str(parse_mode or "").lower()
        try:
            if mode == "html":
                text, found = parse_html(text)
            elif mode == "markdownv2":
                text, found = parse_markdown_v2(text)
            elif mode not in ("", "markdown"):  # legacy Markdown is passed through unparsed
                raise _bad("unsupported parse_mode")
        except _ParseError as err:
            raise _bad(f"can't parse entities: {err}") from None
        text, found = _trim(text, found)
        if not text:
            if caption:
                return None, None
            raise _bad("message text is empty")
        if len(text) > (MAX_CAPTION if caption else MAX_TEXT):
            raise _bad("message caption is too long" if caption else "message is too long")
        return text, found or None

    def _markup(self, p: Params) -> dict[str, Any] | None:
        markup = p.get("reply_markup")
        if markup is None:
            return None
        if not isinstance(markup, dict):
            raise _bad("can't parse reply keyboard markup JSON object")
        rows = markup.get("inline_keyboard")
        if rows is None:
            if {"keyboard", "remove_keyboard", "force_reply"} & markup.keys():
                return markup
            raise _bad("can't parse reply keyboard markup JSON object")
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise _bad('Field "inline_keyboard" of the InlineKeyboardMarkup must be an Array of Arrays')
        for button in itertools.chain.from_iterable(rows):
            if not isinstance(button, dict) or not isinstance(button.get("text"), str):
                raise _bad('can\'t parse inline keyboard button: Field "text" must be of type String')
            if not any(key in button for key in BUTTON_ACTIONS):
                raise _bad(
                    "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
                )
            data = button.get("callback_data")
            if "callback_data" in button and not (
                isinstance(data, str) and 1 <= len(data.encode()) <= MAX_CALLBACK_DATA
            ):
                raise _bad("BUTTON_DATA_INVALID")
        return markup

    def _reply_to(self, chat: Chat, p: Params) -> Message | None:
        params = p.get("reply_parameters") or {}
        if not isinstance(params, dict):
            raise _bad("can't parse reply parameters JSON object")
        message_id = params.get("message_id", p.get("reply_to_message_id"))
        if message_id is None:
            return None
        allow = params.get("allow_sending_without_reply", p.flag("allow_sending_without_reply"))
        try:
            target = self._messages.get((int(params.get("chat_id", chat.id)), int(message_id)))
        except (TypeError, ValueError):
            target = None
        if target is None or target.deleted:
            if allow:
                return None
            raise _bad("message to be replied not found")
        return target

    def _new_message(self, chat: Chat, sender: User, **content: Any) -> Message:
        chat.last_message_id += 1
        message = Message(chat.last_message_id, chat, sender, int(time.time()), **content)
        self._messages[(chat.id, message.message_id)] = message
        return message

    def _new_file(self, data: bytes, folder: str, ext: str, kind: str) -> StoredFile:
        n = next(self._ids)
        # the decoded id's first byte is the file's kind, as Telegram's: 2 photo, 5 document, 10 animation
        prefix, unique = {"photo": ("AgACAgIAAxkBAA", "AQAD"), "animation": ("CgACAgIAAxkBAA", "AgAD")}.get(
            kind, ("BQACAgIAAxkBAA", "AgAD")
        )
        stored = StoredFile(f"{prefix}{n:010d}", f"{unique}{n:06d}", data, f"{folder}/file_{n}{ext}")
        self._files[stored.file_id] = stored
        return stored

    def _store_photo(self, data: bytes, *, strict: bool = True) -> list[dict[str, Any]]:
        """PhotoSizes as Telegram makes them: downscaled copies, the largest at most 1280 px a side."""
        if strict and len(data) > MAX_PHOTO_BYTES:
            raise _bad("PHOTO_SAVE_FILE_INVALID")
        try:
            with Image.open(io.BytesIO(data)) as opened:
                opened.load()
                img = opened.convert("RGB")
        except Exception:
            raise _bad("IMAGE_PROCESS_FAILED") from None
        width, height = img.size
        if strict and (width + height > 10000 or max(width, height) > 20 * min(width, height)):
            raise _bad("PHOTO_INVALID_DIMENSIONS")
        longest = max(width, height)
        sizes: list[dict[str, Any]] = []
        for side in [s for s in PHOTO_SIDES[:-1] if s < longest] + [min(longest, PHOTO_SIDES[-1])]:
            if side == longest:  # the original already fits: it is served as uploaded
                content, w, h = data, width, height
            else:
                w, h = max(1, round(width * side / longest)), max(1, round(height * side / longest))
                buffer = io.BytesIO()
                img.resize((w, h), Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=87)
                content = buffer.getvalue()
            stored = self._new_file(content, "photos", ".jpg", "photo")
            sizes.append(
                {"file_id": stored.file_id, "file_unique_id": stored.file_unique_id,
                 "file_size": len(content), "width": w, "height": h}
            )  # fmt: skip
        for size in sizes:
            self._photo_sets[size["file_id"]] = sizes
        return sizes

    def _store_document(
        self, data: bytes, file_name: str | None, mime_type: str | None, kind: str = "document"
    ) -> dict[str, Any]:
        ext = mimetypes.guess_extension(mime_type or "") or ""
        stored = self._new_file(data, "documents", ext, kind)
        document = {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(data),
        }
        if file_name:
            document["file_name"] = file_name
        if mime_type:
            document["mime_type"] = mime_type
        self._documents[stored.file_id] = document
        return document

    def _input_file(self, value: Any, p: Params, what: str) -> Upload | str:
        """An uploaded file (a direct part or attach://name) or the file_id of a file Telegram has."""
        if isinstance(value, Upload):
            return value
        if not value:
            raise _bad(f"there is no {what} in the request")
        if isinstance(value, str) and value.startswith("attach://"):
            upload = p.uploads.get(value.removeprefix("attach://"))
            if upload is None:
                raise _bad("can't parse InputMedia: media not found")
            return upload
        return str(value)

    def _photo(self, value: Upload | str) -> list[dict[str, Any]]:
        if isinstance(value, Upload):
            if len(value.data) > MAX_UPLOAD_BYTES:
                raise ApiError(413, "Request Entity Too Large")
            return self._store_photo(value.data)
        if value in self._photo_sets:
            return [dict(size) for size in self._photo_sets[value]]
        raise self._unknown_file(value)

    def _document(self, value: Upload | str, kind: str = "document") -> dict[str, Any]:
        if isinstance(value, Upload):
            if len(value.data) > MAX_UPLOAD_BYTES:
                raise ApiError(413, "Request Entity Too Large")
            mime = mimetypes.guess_type(value.filename or "")[0] or value.content_type
            return self._store_document(value.data, value.filename, mime, kind)
        if value in self._documents:
            return dict(self._documents[value])
        raise self._unknown_file(value)

    def _unknown_file(self, file_id: str) -> ApiError:
        """A file_id of the wrong kind, or none Telegram knows (this server fetches no URLs)."""
        known = file_id in self._photo_sets or file_id in self._documents
        return _bad("type of file mismatch" if known else "wrong file identifier/HTTP URL specified")

    def _editable(self, p: Params) -> Message:
        if p.get("inline_message_id") is not None:
            raise _bad("inline messages are not supported by FakeTelegram")
        chat = self._target(p)
        message = self._messages.get((chat.id, p.integer("message_id", required=True) or 0))
        if message is None or message.deleted:
            raise _bad("message to edit not found")
        if not message.from_bot or (message.reply_markup and not message.inline_keyboard):
            raise _bad("message can't be edited")  # users' messages, and ones sent with a reply keyboard
        return message

    def _apply_edit(self, message: Message, **changes: Any) -> dict[str, Any]:
        """Applies an edit unless it changes nothing, counting it for the chat's edit rate."""
        before = {key: getattr(message, key) for key in changes}
        if before == changes:
            raise _bad(NOT_MODIFIED)
        now = time.monotonic()
        times = self._edit_times[message.chat.id]
        if self.edit_limit is not None:
            limit, window = self.edit_limit
            recent = [t for t in times if now - t < window]
            if len(recent) >= limit:
                raise _too_many(max(1, math.ceil(window - (now - recent[0]))))
        message.history.append({**before, "edit_date": message.edit_date})
        for key, value in changes.items():
            setattr(message, key, value)
        message.edit_count += 1
        message.edit_date = int(time.time())
        times.append(now)
        return message.to_api()

    # -- methods: bot identity, updates, commands ---------------------------------------------

    async def _get_me(self, p: Params) -> dict[str, Any]:
        return {
            **self.bot.to_api(),
            "can_join_groups": True,
            "can_read_all_group_messages": not self.privacy_mode,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    def _wanted(self, update: dict[str, Any]) -> bool:
        kind = next(key for key in update if key != "update_id")
        return kind in self._allowed_updates if self._allowed_updates else kind not in OPT_IN_UPDATES

    async def _get_updates(self, p: Params) -> list[dict[str, Any]]:
        """Long polling: waits until an update is there or the timeout passes; a newer poll wins (409)."""
        offset, limit = p.integer("offset"), min(max(p.integer("limit") or 100, 1), 100)
        timeout = min(float(p.get("timeout") or 0), self.max_poll_timeout)
        if p.get("allowed_updates") is not None:
            self._allowed_updates = list(p.get("allowed_updates"))
        if offset is not None and offset < 0:
            self._updates = self._updates[offset:]
        elif offset:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        self._poll_generation += 1
        generation = self._poll_generation
        await self._notify()  # wakes an older poll so that it fails with 409
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                if generation != self._poll_generation:
                    raise ApiError(409, CONFLICT)
                self._updates = [u for u in self._updates if self._wanted(u)]
                remaining = deadline - time.monotonic()
                if self._updates or self._closing or remaining <= 0:
                    return self._updates[:limit]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    async def _delete_webhook(self, p: Params) -> bool:
        if p.flag("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _get_webhook_info(self, p: Params) -> dict[str, Any]:
        return {"url": "", "has_custom_certificate": False, "pending_update_count": len(self._updates)}

    @staticmethod
    def _commands_key(p: Params) -> tuple[str, str]:
        scope = json.dumps(p.get("scope") or {"type": "default"}, sort_keys=True)
        return scope, p.string("language_code") or ""

    async def _set_my_commands(self, p: Params) -> bool:
        commands = p.get("commands")
        if not isinstance(commands, list):
            raise _bad('parameter "commands" is required')
        if len(commands) > 100:
            raise _bad("BOT_COMMANDS_TOO_MUCH")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise _bad("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", "")).strip()) <= 256:
                raise _bad("command description must be non-empty")
        self.commands[self._commands_key(p)] = [
            {"command": c["command"], "description": c["description"]} for c in commands
        ]
        return True

    async def _get_my_commands(self, p: Params) -> list[dict[str, Any]]:
        return self.commands.get(self._commands_key(p), [])

    async def _delete_my_commands(self, p: Params) -> bool:
        self.commands.pop(self._commands_key(p), None)
        return True

    # -- methods: sending ----------------------------------------------------------------------

    async def _send_message(self, p: Params) -> dict[str, Any]:
        chat = self._target(p)
        text, entities = self._formatted(p.get("text"), p.get("parse_mode"), p.get("entities"))
        markup, reply_to = self._markup(p), self._reply_to(chat, p)
        message = self._new_message(
            chat, self.bot, text=text, entities=entities, reply_to=reply_to, reply_markup=markup
        )
        return message.to_api()

    async def _send_photo(self, p: Params) -> dict[str, Any]:
        chat = self._target(p)
        caption, entities = self._formatted(
            p.get("caption"), p.get("parse_mode"), p.get("caption_entities"), caption=True
        )
        photo = self._photo(self._input_file(p.get("photo"), p, "photo"))
        markup, reply_to = self._markup(p), self._reply_to(chat, p)
        message = self._new_message(
            chat, self.bot, photo=photo, caption=caption, caption_entities=entities,
            reply_to=reply_to, reply_markup=markup,
        )  # fmt: skip
        return message.to_api()

    async def _send_document(self, p: Params) -> dict[str, Any]:
        chat = self._target(p)
        caption, entities = self._formatted(
            p.get("caption"), p.get("parse_mode"), p.get("caption_entities"), caption=True
        )
        document = self._document(self._input_file(p.get("document"), p, "document"))
        markup, reply_to = self._markup(p), self._reply_to(chat, p)
        message = self._new_message(
            chat, self.bot, document=document, caption=caption, caption_entities=entities,
            reply_to=reply_to, reply_markup=markup,
        )  # fmt: skip
        return message.to_api()

    async def _send_animation(self, p: Params) -> dict[str, Any]:
        """A GIF (or a silent MP4): kept as a document, described as an animation with its size and length."""
        chat = self._target(p)
        caption, entities = self._formatted(
            p.get("caption"), p.get("parse_mode"), p.get("caption_entities"), caption=True
        )
        document = self._document(self._input_file(p.get("animation"), p, "animation"), "animation")
        animation = {**document, "width": 0, "height": 0, "duration": 0}
        data = io.BytesIO(self._files[document["file_id"]].data)
        with contextlib.suppress(OSError), Image.open(data) as picture:
            animation.update(width=picture.width, height=picture.height)
            total_ms = 0
            for index in range(getattr(picture, "n_frames", 1)):
                picture.seek(index)
                total_ms += int(picture.info.get("duration", 0))
            animation["duration"] = round(total_ms / 1000)
        markup, reply_to = self._markup(p), self._reply_to(chat, p)
        message = self._new_message(
            chat, self.bot, document=document, animation=animation, caption=caption,
            caption_entities=entities, reply_to=reply_to, reply_markup=markup,
        )  # fmt: skip
        return message.to_api()

    async def _send_media_group(self, p: Params) -> list[dict[str, Any]]:
        chat = self._target(p)
        media = p.get("media")
        if media is None:
            raise _bad('parameter "media" is required')
        if not isinstance(media, list) or not all(isinstance(item, dict) for item in media):
            raise _bad("can't parse media JSON object")
        if not media:
            raise _bad("there are no messages to send")
        if len(media) > 10:
            raise _bad("too many messages to send as an album")
        kinds = [item.get("type") for item in media]
        for kind in kinds:
            if kind not in ("photo", "document"):
                raise _bad(f'can\'t parse InputMedia: type "{kind}" is not supported by FakeTelegram')
        if "document" in kinds and "photo" in kinds:
            raise _bad("document can't be mixed with other media types")
        reply_to = self._reply_to(chat, p)
        prepared = []
        for number, item in enumerate(media, 1):
            caption = self._formatted(
                item.get("caption"), item.get("parse_mode"), item.get("caption_entities"), caption=True
            )
            source = self._input_file(item.get("media"), p, item["type"])
            try:
                content = self._photo(source) if item["type"] == "photo" else self._document(source)
            except ApiError as err:
                reason = err.description.removeprefix("Bad Request: ")
                raise _bad(f'failed to send message #{number} with the error message "{reason}"') from None
            prepared.append((item["type"], content, caption))
        group_id = str(10_000_000_000_000 + next(self._ids))
        messages = [
            self._new_message(
                chat, self.bot, caption=caption, caption_entities=entities, media_group_id=group_id,
                reply_to=reply_to, **{kind: content},
            )
            for kind, content, (caption, entities) in prepared
        ]  # fmt: skip
        return [message.to_api() for message in messages]

    async def _send_chat_action(self, p: Params) -> bool:
        self._target(p)
        if p.get("action") not in CHAT_ACTIONS:
            raise _bad("wrong parameter action in request")
        return True

    # -- methods: editing and deleting ----------------------------------------------------------

    async def _edit_message_text(self, p: Params) -> dict[str, Any]:
        message = self._editable(p)
        if message.text is None:
            raise _bad("there is no text in the message to edit")
        text, entities = self._formatted(p.get("text"), p.get("parse_mode"), p.get("entities"))
        return self._apply_edit(message, text=text, entities=entities, reply_markup=self._markup(p))

    async def _edit_message_caption(self, p: Params) -> dict[str, Any]:
        message = self._editable(p)
        if message.photo is None and message.document is None:
            raise _bad("there is no caption in the message to edit")
        caption, entities = self._formatted(
            p.get("caption"), p.get("parse_mode"), p.get("caption_entities"), caption=True
        )
        return self._apply_edit(
            message, caption=caption, caption_entities=entities, reply_markup=self._markup(p)
        )

    async def _edit_message_media(self, p: Params) -> dict[str, Any]:
        message = self._editable(p)
        if message.photo is None and message.document is None:
            raise _bad("there is no media in the message to edit")
        media = p.get("media")
        if not isinstance(media, dict):
            raise _bad('parameter "media" is required')
        if media.get("type") not in ("photo", "document"):
            raise _bad(
                f'can\'t parse InputMedia: type "{media.get("type")}" is not supported by FakeTelegram'
            )
        caption, entities = self._formatted(
            media.get("caption"), media.get("parse_mode"), media.get("caption_entities"), caption=True
        )
        source = self._input_file(media.get("media"), p, media["type"])
        markup = self._markup(p)
        if isinstance(source, str) and source == message.file_id:  # the same file: maybe no change at all
            photo, document = message.photo, message.document
        elif media["type"] == "photo":
            photo, document = self._photo(source), None
        else:
            photo, document = None, self._document(source)
        return self._apply_edit(
            message, photo=photo, document=document, caption=caption, caption_entities=entities,
            reply_markup=markup,
        )  # fmt: skip

    async def _edit_message_reply_markup(self, p: Params) -> dict[str, Any]:
        message = self._editable(p)
        return self._apply_edit(message, reply_markup=self._markup(p))

    def _delete(self, chat: Chat, message_id: int) -> None:
        message = self._messages.get((chat.id, message_id))
        if message is None or message.deleted:
            raise _bad("message to delete not found")
        if not message.from_bot and chat.peer is None and not chat.bot_is_admin:
            raise _bad("message can't be deleted")
        message.deleted = True

    async def _delete_message(self, p: Params) -> bool:
        self._delete(self._chat(p), p.integer("message_id", required=True) or 0)
        return True

    async def _delete_messages(self, p: Params) -> bool:
        chat = self._chat(p)
        for message_id in p.get("message_ids") or []:
            with contextlib.suppress(ApiError):  # Telegram skips the messages it can't delete
                self._delete(chat, int(message_id))
        return True

    # -- methods: callbacks, files, chats ---------------------------------------------------------

    async def _answer_callback_query(self, p: Params) -> bool:
        query = self.queries.get(p.string("callback_query_id") or "")
        if query is None or query.answered or time.monotonic() - query.created > self.callback_query_ttl:
            raise _bad(QUERY_INVALID)
        if len(p.string("text") or "") > MAX_ALERT:
            raise _bad("MESSAGE_TOO_LONG")
        query.answered = True
        query.answer = {"text": p.string("text"), "show_alert": p.flag("show_alert"), "url": p.string("url")}
        return True

    async def _get_file(self, p: Params) -> dict[str, Any]:
        stored = self._files.get(p.string("file_id") or "")
        if stored is None:
            raise _bad("invalid file_id")
        if len(stored.data) > MAX_DOWNLOAD_BYTES:
            raise _bad("file is too big")
        return {
            "file_id": stored.file_id,
            "file_unique_id": stored.file_unique_id,
            "file_size": len(stored.data),
            "file_path": stored.file_path,
        }

    async def _get_chat(self, p: Params) -> dict[str, Any]:
        chat = self._chat(p)
        return {
            **chat.to_api(),
            "accent_color_id": 0,
            "max_reaction_count": 11,
            "accepted_gift_types": NO_GIFTS,
        }

    def _member(self, chat: Chat, user: User) -> dict[str, Any]:
        if user.id == chat.owner:
            return {"status": "creator", "user": user.to_api(), "is_anonymous": False}
        if user.id in chat.admins or (user is self.bot and chat.bot_is_admin):
            return {"status": "administrator", "user": user.to_api(), **ADMIN_RIGHTS}
        if user is self.bot or user.id in chat.members or (chat.peer is not None and chat.peer is user):
            return {"status": "member", "user": user.to_api()}
        return {"status": "left", "user": user.to_api()}

    async def _get_chat_member(self, p: Params) -> dict[str, Any]:
        chat = self._chat(p)
        user = self.users.get(p.integer("user_id", required=True) or 0)
        if user is None:
            raise _bad("user not found")
        return self._member(chat, user)

    async def _get_chat_administrators(self, p: Params) -> list[dict[str, Any]]:
        chat = self._chat(p)
        if chat.peer is not None:
            raise _bad("there are no administrators in the private chat")
        everyone = [self.users[uid] for uid in sorted(chat.members)] + [self.bot]
        members = [self._member(chat, user) for user in everyone]
        return [m for m in members if m["status"] in ("creator", "administrator")]

    # ---------------------------------------------------------------------------------------------
    # Helpers for tests: the world

    def user(
        self, first_name: str = "Alice", *, language_code: str | None = "en", username: str | None = None,
        last_name: str | None = None,
    ) -> User:  # fmt: skip
        """A new user; ids are distinct and stable within one server."""
        user = User(10_000 + next(self._ids), first_name, username, language_code, last_name)
        self.users[user.id] = user
        return user

    def private_chat(self, user: User) -> Chat:
        """The user's private chat with the bot (the bot sees it once the user writes there)."""
        chat = self.chats.get(user.id)
        if chat is None:
            chat = self.chats[user.id] = Chat(user.id, "private", peer=user)
        return chat

    def group(
        self, title: str, members: Iterable[User], *, admins: Iterable[User] = (), owner: User | None = None,
        bot_is_admin: bool = False, supergroup: bool = True,
    ) -> Chat:  # fmt: skip
        """A group the bot is in; admins (and the owner) count as members and getChatMember says so."""
        admin_ids = {u.id for u in admins}
        chat_id = -(1_000_000_000_000 if supergroup else 0) - 100_000 - next(self._ids)
        chat = Chat(
            chat_id, "supergroup" if supergroup else "group", title=title,
            members={u.id for u in members} | admin_ids | ({owner.id} if owner else set()),
            admins=admin_ids, owner=owner.id if owner else None, bot_is_admin=bot_is_admin, known=True,
        )  # fmt: skip
        self.chats[chat.id] = chat
        return chat

    async def upgrade_group(self, chat: Chat, by: User, *, announce: bool = True) -> Chat:
        """An admin upgrades a basic group to a supergroup, which Telegram gives a new id (a ``-100...``
        one). Every method naming the old id then answers 400 "group chat was upgraded to a supergroup
        chat" with ``parameters.migrate_to_chat_id`` (PTB raises ``ChatMigrated``); the old group's
        messages stay there (the new chat counts its own from 1). The bot gets two service messages, in
        the old group with ``migrate_to_chat_id`` and in the new one with ``migrate_from_chat_id``, unless
        ``announce`` is False (a bot that was not in the group then, or lost those updates)."""
        if chat.type != "group" or chat.migrated_to is not None:
            raise AssertionError(f"{chat.title} is not a basic group")
        new = Chat(
            -1_000_000_000_000 - 100_000 - next(self._ids), "supergroup", title=chat.title,
            members=set(chat.members), admins=set(chat.admins), owner=chat.owner,
            bot_is_admin=chat.bot_is_admin, known=True,
        )  # fmt: skip
        self.chats[new.id] = new
        old_notice = self._new_message(chat, by, migrate_to_chat_id=new.id)
        chat.migrated_to = new.id
        new_notice = self._new_message(new, by, migrate_from_chat_id=chat.id)
        if announce:
            for notice in (old_notice, new_notice):
                await self._post(notice)
        return new

    def block(self, user: User, blocked: bool = True) -> None:
        """The user blocks (or unblocks) the bot: sends to them, and edits in their chat, fail with 403."""
        user.blocked = blocked

    def delete_message(self, chat: Chat, message_id: int) -> None:
        """A user (their own message, or any in their private chat) or a moderator deletes a message: the
        bot's edits and deletes of it fail as Telegram's do."""
        message = self._messages.get((chat.id, message_id))
        if message is None:
            raise AssertionError(f"no message {message_id} in chat {chat.id}")
        message.deleted = True

    # -- playing users -------------------------------------------------------------------------

    def _user_message(self, user: User, chat: Chat, reply_to: Message | None, **content: Any) -> Message:
        if chat.peer is not None and chat.peer is not user:
            raise AssertionError(f"{user.first_name} can't write in {chat.peer.first_name}'s private chat")
        if chat.peer is None and user.id not in chat.members:
            raise AssertionError(f"{user.first_name} is not a member of {chat.title}")
        if chat.migrated_to is not None:
            raise AssertionError(f"{chat.title} is a supergroup now: write in chat {chat.migrated_to}")
        if reply_to is not None and (reply_to.chat is not chat or reply_to.deleted):
            raise AssertionError("reply_to must be a live message of the same chat")
        return self._new_message(chat, user, reply_to=reply_to, **content)

    def _reaches_bot(self, message: Message) -> bool:
        """Privacy mode: in groups the bot sees only commands, mentions and replies to itself."""
        if message.chat.peer is not None or not self.privacy_mode:
            return True
        if message.migrate_to_chat_id or message.migrate_from_chat_id:
            return True  # service messages reach every bot in the group
        if message.reply_to is not None and message.reply_to.from_bot:
            return True
        text = message.text or message.caption or ""
        for command in _COMMAND.finditer(text):
            if command.group().partition("@")[2] in ("", self.bot.username):
                return True
        return f"@{self.bot.username}".lower() in text.lower()

    async def _deliver(self, kind: str, payload: dict[str, Any]) -> None:
        async with self._changed:
            update = {"update_id": next(self._update_ids), kind: payload}
            self._updates.append(update)
            self.delivered.append(update)
            self._changed.notify_all()

    def update_of(self, sent: Message | CallbackQuery) -> dict[str, Any]:
        """The update that brought a user's message or button press to the bot (as it was then)."""
        for update in self.delivered:
            if isinstance(sent, CallbackQuery):
                if update.get("callback_query", {}).get("id") == sent.id:
                    return update
            elif (payload := update.get("message")) is not None and (
                payload["chat"]["id"],
                payload["message_id"],
            ) == (sent.chat.id, sent.message_id):
                return update
        raise AssertionError(f"no update brought {sent!r} to the bot")

    async def deliver_again(self, update: dict[str, Any]) -> None:
        """Telegram sends an update again, id and all: what a bot that died before confirming it (a
        getUpdates offset past it, or a webhook's 200) gets after its restart."""
        async with self._changed:
            self._updates.append(json.loads(json.dumps(update)))
            self._changed.notify_all()

    async def _post(self, message: Message) -> Message:
        message.chat.known = True
        if self._reaches_bot(message):
            message.delivered = True
            await self._deliver("message", message.to_api())
        return message

    async def send_text(self, user: User, chat: Chat, text: str, reply_to: Message | None = None) -> Message:
        """The user writes `text`; commands get bot_command entities as Telegram sets them."""
        entities = command_entities(text) or None
        return await self._post(self._user_message(user, chat, reply_to, text=text, entities=entities))

    async def send_photo(
        self, user: User, chat: Chat, image: bytes, caption: str | None = None,
        reply_to: Message | None = None, media_group_id: str | None = None,
    ) -> Message:  # fmt: skip
        """The user sends a photo; it is stored as PhotoSizes the bot can getFile and download."""
        photo = self._store_photo(image, strict=False)
        message = self._user_message(
            user, chat, reply_to, photo=photo, caption=caption, media_group_id=media_group_id,
            caption_entities=command_entities(caption or "") or None,
        )  # fmt: skip
        return await self._post(message)

    async def send_document(
        self, user: User, chat: Chat, data: bytes, file_name: str, mime_type: str, caption: str | None = None,
        reply_to: Message | None = None,
    ) -> Message:  # fmt: skip
        """The user sends a file as a document (uncompressed, any size)."""
        message = self._user_message(
            user, chat, reply_to, document=self._store_document(data, file_name, mime_type), caption=caption,
            caption_entities=command_entities(caption or "") or None,
        )  # fmt: skip
        return await self._post(message)

    def _clip(self, data: bytes, mime_type: str, width: int, height: int, duration: int) -> dict[str, Any]:
        stored = self._new_file(data, "videos", mimetypes.guess_extension(mime_type) or "", "video")
        clip = {
            "file_id": stored.file_id, "file_unique_id": stored.file_unique_id, "file_size": len(data),
            "width": width, "height": height, "duration": duration, "mime_type": mime_type,
        }  # fmt: skip
        self._documents[stored.file_id] = clip
        return clip

    async def send_animation(
        self, user: User, chat: Chat, data: bytes, *, width: int, height: int, duration: int,
        caption: str | None = None, file_name: str = "animation.mp4",
    ) -> Message:  # fmt: skip
        """The user sends a GIF: Telegram turns it into a silent MP4 "animation" and sends a document too."""
        animation = {**self._clip(data, "video/mp4", width, height, duration), "file_name": file_name}
        document = {k: animation[k] for k in ("file_id", "file_unique_id", "file_size", "mime_type")}
        message = self._user_message(
            user, chat, None, animation=animation, document={**document, "file_name": file_name},
            caption=caption, caption_entities=command_entities(caption or "") or None,
        )  # fmt: skip
        return await self._post(message)

    async def send_video(
        self, user: User, chat: Chat, data: bytes, *, width: int, height: int, duration: int,
        caption: str | None = None,
    ) -> Message:  # fmt: skip
        """The user sends a video (MP4)."""
        message = self._user_message(
            user, chat, None, video=self._clip(data, "video/mp4", width, height, duration), caption=caption,
            caption_entities=command_entities(caption or "") or None,
        )  # fmt: skip
        return await self._post(message)

    async def send_video_note(
        self, user: User, chat: Chat, data: bytes, *, side: int, duration: int
    ) -> Message:
        """The user records a round video message: square, no caption."""
        note = self._clip(data, "video/mp4", side, side, duration)
        note = {k: note[k] for k in ("file_id", "file_unique_id", "file_size", "duration")} | {"length": side}
        return await self._post(self._user_message(user, chat, None, video_note=note))

    async def send_album(
        self, user: User, chat: Chat, images: list[bytes], caption: str | None = None
    ) -> list[Message]:
        """Photos sharing a media_group_id, one update each, the caption on the first: Telegram's albums."""
        group_id = str(20_000_000_000_000 + next(self._ids))
        return [
            await self.send_photo(user, chat, image, caption if n == 0 else None, media_group_id=group_id)
            for n, image in enumerate(images)
        ]

    async def edit(self, message: Message, new_text: str) -> Message:
        """The user edits their message's text or caption; the bot hears an edited_message update."""
        field = "text" if message.text is not None else "caption"
        setattr(message, field, new_text)
        setattr(
            message, "entities" if field == "text" else "caption_entities", command_entities(new_text) or None
        )
        message.edit_count += 1
        message.edit_date = int(time.time())
        if message.chat.type == "channel":
            await self._deliver("edited_channel_post", message.to_api())
        elif self._reaches_bot(message):
            await self._deliver("edited_message", message.to_api())
        return message

    # Telegram's stand-in senders: anonymous group admins all write as this one bot...
    ANONYMOUS_ADMIN_ID, CHANNEL_BOT_ID = 1087968824, 136817688

    def channel(self, title: str) -> Chat:
        """A channel the bot administers (it sees every post)."""
        chat = Chat(-1_000_000_000_000 - 100_000 - next(self._ids), "channel", title=title, known=True)
        self.chats[chat.id] = chat
        return chat

    async def send_as(
        self, as_chat: Chat, chat: Chat, text: str | None = None, *, image: bytes | None = None,
        reply_to: Message | None = None,
    ) -> Message:  # fmt: skip
        """A message sent on behalf of a chat: by an anonymous admin of ``chat`` (``as_chat is chat``), by a
        user posting as a channel in a group, or a post in the channel itself (a ``channel_post``).
        With ``image`` it is a photo and ``text`` its caption."""
        anonymous = as_chat is chat and chat.type != "channel"
        sender_id = self.ANONYMOUS_ADMIN_ID if anonymous else self.CHANNEL_BOT_ID
        sender = self.users.setdefault(
            sender_id,
            User(sender_id, "Group" if anonymous else "Channel", is_bot=True,
                 username="GroupAnonymousBot" if anonymous else "Channel_Bot"),
        )  # fmt: skip
        entities = command_entities(text or "") or None
        content: dict[str, Any] = (
            {"photo": self._store_photo(image, strict=False), "caption": text, "caption_entities": entities}
            if image is not None
            else {"text": text, "entities": entities}
        )
        message = self._new_message(chat, sender, reply_to=reply_to, sender_chat=as_chat, **content)
        if chat.type == "channel":
            message.delivered = True
            await self._deliver("channel_post", message.to_api())
            return message
        return await self._post(message)

    async def press_button(
        self, user: User, message: Message, callback_data: str, *, force: bool = False
    ) -> CallbackQuery:
        """The user presses an inline button of a bot message; `force` skips checking the button exists."""
        if not force and (message.deleted or callback_data not in message.button_data):
            raise AssertionError(
                f"message {message.message_id} has no live button with callback_data {callback_data!r}; "
                f"it has {message.button_data} (deleted={message.deleted})"
            )
        query = CallbackQuery(
            str(4_000_000_000_000 + next(self._ids)), user, message, callback_data, time.monotonic()
        )
        self.queries[query.id] = query
        payload = {
            "id": query.id,
            "from": user.to_api(),
            "message": message.to_api(),
            "chat_instance": str(abs(message.chat.id) * 7919 % 10**18),
            "data": callback_data,
        }
        await self._deliver("callback_query", payload)
        return query

    # -- observing the bot -----------------------------------------------------------------------

    def fail_next(
        self,
        method: str,
        retry_after: int = 1,
        times: int = 1,
        *,
        code: int = 429,
        description: str | None = None,
    ) -> None:
        """The next `times` calls of `method` fail: by default with 429 "retry after N", as flood control
        does; with `code`/`description` any other way (e.g. 403 "Forbidden: bot was blocked by the user")."""
        error = (
            _too_many(retry_after)
            if code == 429 and description is None
            else ApiError(code, description or "")
        )
        self._armed[method.lower()].extend([error] * times)

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        """Updates queued for the bot and not yet confirmed by a getUpdates offset (the live list)."""
        return self._updates

    def calls_to(self, method: str) -> list[Call]:
        return [call for call in self.calls if call.method.lower() == method.lower()]

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], object] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a plain number keeps the tests' calls short
    ) -> Call:
        """The earliest call of `method` matching `predicate` not returned by an earlier wait_for, from the
        log or, if none is there yet, the future; failed calls match too (check `call.ok`)."""
        if method.lower() not in self._methods:
            raise ValueError(f"FakeTelegram does not serve {method!r}")  # a typo would only time out
        deadline = time.monotonic() + (self.wait_timeout if timeout is None else timeout)
        async with self._changed:
            while True:
                candidates = [c for c in self.calls if not c.claimed and c.method.lower() == method.lower()]
                for call in candidates:
                    if predicate is None or predicate(call):
                        call.claimed = True
                        return call
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [f"{c.method}({c.status})" for c in self.calls if c.method != "getUpdates"]
                    raise AssertionError(
                        f"no matching {method} call; the calls were: {', '.join(seen[-20:])}"
                    )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), remaining)

    def messages_in(self, chat: Chat, *, include_users: bool = False) -> list[Message]:
        """The current state of every message the bot sent to `chat` (deleted ones flagged), oldest first."""
        found = [
            m for (cid, _), m in self._messages.items() if cid == chat.id and (include_users or m.from_bot)
        ]
        return sorted(found, key=lambda m: m.message_id)

    def downloaded(self, file_id: str | None) -> bytes:
        """The bytes behind a file_id, e.g. an image the bot uploaded, as Telegram would serve them."""
        if file_id is None or file_id not in self._files:
            raise KeyError(f"no file {file_id!r}")
        return self._files[file_id].data

    def edit_times(self, chat: Chat) -> list[float]:
        """time.monotonic() of each successful edit in `chat`."""
        return list(self._edit_times[chat.id])

    def max_edits_in_window(self, chat: Chat, window: float = 1.0) -> int:
        """The most edits in `chat` within any `window` seconds: what the bot's throttling must bound."""
        times = self._edit_times[chat.id]
        return max(
            (sum(1 for t in times[i:] if t - start < window) for i, start in enumerate(times)), default=0
        )

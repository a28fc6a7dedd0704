"""The Bot API stand-in (``tests/fakes/telegram_api.py``) with inline mode and deep links.

Once inline mode is on (@BotFather's /setinline; ``inline_mode=False`` plays a bot without it: typing
``@bot`` then reaches nothing), a user typing ``@bot words`` in a chat is an ``inline_query`` update, and
answerInlineQuery is checked as Telegram checks it: a live query answered once, at most 50 results with
unique ids, a cached photo's id a photo's and a cached document's a document's ("type of file mismatch"),
captions parsed, the button's start parameter of Telegram's shape. Picking a result posts it in the chat
as the user's message (Telegram shows it "via @bot"; the bot hears nothing of it). A deep link
``t.me/<bot>?start=<payload>`` opened by a user is their ``/start <payload>`` in the private chat (a
payload of the wrong shape: a bare ``/start``, as Telegram's apps do)::

    async with InlineTelegram() as tg:
        query = await tg.send_inline_query(alice, "starry")
        answer = await tg.wait_for_answer(query)
        message = await tg.choose_result(alice, group, query, answer.results[0]["id"])
        await tg.open_link(bob, message.inline_keyboard[0][0]["url"])
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.telegram_api import (
    QUERY_INVALID,
    Chat,
    FakeTelegram,
    Message,
    Params,
    User,
    _bad,
)

START_PARAMETER = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_RESULTS = 50
MAX_OFFSET_BYTES = 64
QUERY_TTL = 10.0  # seconds Telegram waits for an answer


@dataclass(eq=False)
class InlineQuery:
    """What the user typed, and what answerInlineQuery said (``answer``: None until answered)."""

    id: str
    user: User
    query: str
    offset: str
    chat_type: str
    created: float
    answer: Answer | None = None


@dataclass(frozen=True)
class Answer:
    results: list[dict[str, Any]]
    next_offset: str
    cache_time: int | None
    is_personal: bool
    button: dict[str, Any] | None = field(default=None)


class InlineTelegram(FakeTelegram):
    """FakeTelegram with inline queries and deep links."""

    def __init__(self, *args: Any, inline_mode: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.inline_mode = inline_mode
        self.inline_queries: dict[str, InlineQuery] = {}
        self._inline_ids = 0
        self._methods["answerinlinequery"] = ("answerInlineQuery", self._answer_inline_query)

    async def __aenter__(self) -> InlineTelegram:
        await self.start()
        return self

    # -- the user's side ---------------------------------------------------------------------------

    async def send_inline_query(
        self, user: User, query: str = "", *, offset: str = "", chat_type: str = "sender"
    ) -> InlineQuery:
        """The user types ``@bot <query>`` (``offset``: the next page, as the app asks when scrolled)."""
        self._inline_ids += 1
        inline = InlineQuery(
            f"{user.id}{self._inline_ids:06d}", user, query, offset, chat_type, time.monotonic()
        )
        self.inline_queries[inline.id] = inline
        if self.inline_mode:
            payload = {
                "id": inline.id,
                "from": user.to_api(),
                "query": query,
                "offset": offset,
                "chat_type": chat_type,
            }
            await self._deliver("inline_query", payload)
        return inline

    async def wait_for_answer(self, inline: InlineQuery, timeout: float | None = None) -> Answer:  # noqa: ASYNC109
        """The bot's accepted answer to ``inline`` (AssertionError if none comes in time)."""
        await self.wait_for(
            "answerInlineQuery",
            lambda call: call.params.get("inline_query_id") == inline.id and call.ok,
            timeout=timeout,
        )
        assert inline.answer is not None
        return inline.answer

    async def choose_result(self, user: User, chat: Chat, inline: InlineQuery, result_id: str) -> Message:
        """The user picks one of the answer's results (waiting for the answer): it is posted in ``chat`` as
        theirs, via the bot."""
        answer = inline.answer or await self.wait_for_answer(inline)
        found = [r for r in answer.results if r["id"] == result_id]
        assert found, f"no result {result_id!r} in the answer"
        result = found[0]
        caption, entities = self._formatted(
            result.get("caption"), result.get("parse_mode"), result.get("caption_entities"), caption=True
        )
        content: dict[str, Any] = {"caption": caption, "caption_entities": entities}
        if result["type"] == "photo":
            content["photo"] = self._photo(result["photo_file_id"])
        elif result["type"] == "mpeg4_gif":
            content["document"] = content["animation"] = self._document(result["mpeg4_file_id"])
        else:
            content["document"] = self._document(result["document_file_id"])
        # the bot gets no update for it (the user sent it; Telegram shows "via @bot")
        return self._user_message(user, chat, None, reply_markup=result.get("reply_markup"), **content)

    async def open_link(self, user: User, url: str) -> Message | None:
        """The user opens ``url``; a deep link to this bot is their ``/start <payload>`` in private."""
        parts = urlsplit(url)
        if parts.scheme != "https" or parts.netloc != "t.me" or parts.path != f"/{self.bot.username}":
            raise AssertionError(f"{url} is not a link to @{self.bot.username}")
        payload = (parse_qs(parts.query).get("start") or [""])[0]
        text = f"/start {payload}" if START_PARAMETER.fullmatch(payload) else "/start"
        return await self.send_text(user, self.private_chat(user), text)

    # -- the method --------------------------------------------------------------------------------

    async def _answer_inline_query(self, p: Params) -> bool:
        inline = self.inline_queries.get(p.string("inline_query_id") or "")
        if inline is None or inline.answer is not None or time.monotonic() - inline.created > QUERY_TTL:
            raise _bad(QUERY_INVALID)
        results = _json(p.get("results"), "results")
        if not isinstance(results, list) or len(results) > MAX_RESULTS:
            raise _bad("RESULTS_TOO_MUCH" if isinstance(results, list) else "can't parse results")
        ids = [r.get("id") for r in results if isinstance(r, dict)]
        if len(ids) != len(results) or len(set(ids)) != len(ids):
            raise _bad("RESULT_ID_DUPLICATE")
        for result in results:
            self._check_result(result)
        next_offset = p.string("next_offset") or ""
        if len(next_offset.encode()) > MAX_OFFSET_BYTES:
            raise _bad("NEXT_OFFSET_INVALID")
        button = _json(p.get("button"), "button")
        if button is not None:
            start = button.get("start_parameter") if isinstance(button, dict) else None
            if not isinstance(button, dict) or not button.get("text"):
                raise _bad("can't parse InlineQueryResultsButton")
            if start is not None and not START_PARAMETER.fullmatch(str(start)):
                raise _bad("START_PARAM_INVALID")
        cache_time = p.integer("cache_time")
        inline.answer = Answer(results, next_offset, cache_time, p.flag("is_personal"), button)
        return True

    def _check_result(self, result: dict[str, Any]) -> None:
        if not isinstance(result.get("id"), str) or not 1 <= len(result["id"].encode()) <= 64:
            raise _bad("RESULT_ID_INVALID")
        kind = result.get("type")
        if kind == "photo" and "photo_file_id" in result:
            if result["photo_file_id"] not in self._photo_sets:
                raise self._unknown_file(result["photo_file_id"])
        elif kind == "mpeg4_gif" and "mpeg4_file_id" in result:
            file_id = str(result["mpeg4_file_id"])
            if file_id not in self._documents or not file_id.startswith("CgAC"):  # an animation's id
                raise self._unknown_file(file_id)
        elif kind == "document" and "document_file_id" in result:
            if not result.get("title"):
                raise _bad("RESULT_TITLE_EMPTY")
            if result["document_file_id"] not in self._documents:
                raise self._unknown_file(result["document_file_id"])
        else:
            raise _bad("RESULT_TYPE_INVALID")  # this stand-in serves cached photos, documents, animations
        self._formatted(
            result.get("caption"), result.get("parse_mode"), result.get("caption_entities"), caption=True
        )
        markup = result.get("reply_markup")
        if markup is not None:
            self._markup(Params({"reply_markup": markup}, {}))


def _json(value: Any, what: str) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            raise _bad(f"can't parse {what} JSON object") from None
    return value

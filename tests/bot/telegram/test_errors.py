"""error_handler and ChatMigrated: only a basic group becomes a supergroup, so only a basic group's update
moves its chat; the same refusal in a private chat or a supergroup named some other chat, and moving the
update's own chat there would hand its jobs and settings to a stranger's id."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from telegram import Chat, Message, Update, User
from telegram.error import ChatMigrated

from bot.telegram.handlers.errors import error_handler

NEW = -1002471352452


class Chats:
    def __init__(self) -> None:
        self.moves: list[tuple[str, int, int]] = []

    async def moved(self, platform: str, old: int, new: int) -> None:
        self.moves.append((platform, old, new))


def context(chats: Chats) -> Any:
    return SimpleNamespace(
        error=ChatMigrated(NEW),
        application=SimpleNamespace(bot_data={"services": SimpleNamespace(chats=chats)}),
    )


def update(chat_id: int, chat_type: str) -> Update:
    user = User(7, "Ada", False)
    chat = Chat(chat_id, chat_type)
    return Update(1, message=Message(5, datetime.now(UTC), chat, from_user=user, text="hi"))


async def test_a_basic_group_s_refusal_moves_it() -> None:
    chats = Chats()
    await error_handler(update(-4518810793, Chat.GROUP), context(chats))
    assert chats.moves == [("telegram", -4518810793, NEW)]


@pytest.mark.parametrize(("chat_id", "chat_type"), [(7, Chat.PRIVATE), (-1001, Chat.SUPERGROUP)])
async def test_a_refusal_in_any_other_chat_moves_nothing(
    chat_id: int, chat_type: str, caplog: pytest.LogCaptureFixture
) -> None:
    chats = Chats()
    with caplog.at_level(logging.INFO, logger="bot.telegram.handlers.errors"):
        await error_handler(update(chat_id, chat_type), context(chats))
    assert chats.moves == []
    assert [r.levelno for r in caplog.records if r.name == "bot.telegram.handlers.errors"] == [
        logging.WARNING
    ]

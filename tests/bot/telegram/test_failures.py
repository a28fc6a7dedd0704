"""What each Bot API failure means to the bot (``bot.telegram.failures``), as PTB raises them."""

from __future__ import annotations

import datetime as dtm

import pytest
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Conflict,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)

from bot.telegram.failures import is_dead_token, is_gone, is_passing, is_unreachable, pause


@pytest.mark.parametrize(
    ("error", "passing", "unreachable", "gone"),
    [
        (RetryAfter(3), True, False, False),
        (TimedOut(), True, False, False),
        (NetworkError("Bad Gateway (502)"), True, False, False),
        (
            NetworkError("httpx.RemoteProtocolError: Server disconnected without sending a response."),
            True,
            False,
            False,
        ),
        (Forbidden("Forbidden: bot was blocked by the user"), False, True, False),
        (Forbidden("Forbidden: bot was kicked from the supergroup chat"), False, True, False),
        (Forbidden("Forbidden: user is deactivated"), False, True, False),
        (BadRequest("Chat not found"), False, True, False),
        (BadRequest("Message to edit not found"), False, False, True),
        (BadRequest("Message can't be edited"), False, False, True),
        (BadRequest("Message is not modified: specified new message content ..."), False, False, False),
        (BadRequest("Can't parse entities: unsupported start tag"), False, False, False),
        (ChatMigrated(-100123), False, False, False),
        (Conflict("Conflict: terminated by other getUpdates request"), False, False, False),
        (InvalidToken(), False, False, False),
    ],
)
def test_each_failure_has_one_meaning(
    error: TelegramError, passing: bool, unreachable: bool, gone: bool
) -> None:
    assert (is_passing(error), is_unreachable(error), is_gone(error)) == (passing, unreachable, gone)
    assert is_dead_token(error) == isinstance(error, InvalidToken)


def test_pauses_grow_and_flood_control_says_its_own() -> None:
    timeout = TimedOut()
    assert [pause(timeout, attempt, 2.0) for attempt in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert pause(RetryAfter(7), 1, 2.0) == 7.0
    assert pause(RetryAfter(dtm.timedelta(seconds=5)), 3, 2.0) == 5.0

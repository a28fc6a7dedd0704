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

from bot.telegram.failures import (
    asked,
    is_dead_token,
    is_expired_query,
    is_gone,
    is_passing,
    is_unreachable,
    passing,
)


@pytest.mark.parametrize(
    ("error", "is_passing_", "unreachable", "gone"),
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
        (BadRequest("Not enough rights to send photos to the chat"), False, True, False),
        (BadRequest("Not enough rights to send documents to the chat"), False, True, False),
        (BadRequest("Have no rights to send a message"), False, True, False),
        (BadRequest("CHAT_WRITE_FORBIDDEN"), False, True, False),
        (
            BadRequest("Query is too old and response timeout expired or query id is invalid"),
            False,
            False,
            False,
        ),
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
    error: TelegramError, is_passing_: bool, unreachable: bool, gone: bool
) -> None:
    assert (is_passing(error), is_unreachable(error), is_gone(error)) == (is_passing_, unreachable, gone)
    assert is_dead_token(error) == isinstance(error, InvalidToken)
    assert is_expired_query(error) == ("too old" in str(error))


def test_flood_control_says_its_own_pause() -> None:
    assert asked(RetryAfter(7)) == 7.0
    assert asked(RetryAfter(dtm.timedelta(seconds=5))) == 5.0
    assert asked(TimedOut()) is None


def test_the_retry_rule_sees_every_exception() -> None:
    assert passing(TimedOut())
    assert passing(RetryAfter(1))
    assert not passing(BadRequest("Chat not found"))
    assert not passing(ValueError("a bug"))

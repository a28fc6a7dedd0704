"""What a failed Bot API call means for what the bot does next, decided once for the status, the result,
the animation and plain replies.

Three kinds: *passing* (flood control that outlasted the rate limiter's own retries, a 5xx, a timeout, a
dropped connection: try again later, with pauses that grow), *unreachable* (the user blocked the bot, the
chat is gone, the bot was removed from it: nothing more goes to that chat for the job) and everything else
(a refusal of this one request, e.g. a caption Telegram will not take, or a message that was deleted).

A passing failure does not say whether Telegram carried the request out: a dropped connection or a
timeout may come after the message was sent. That is why the result's sends wait long for their answer
(``bot.telegram.frontend.RESULT_READ_TIMEOUT``) instead of racing a slow one with a second send.
"""

from __future__ import annotations

from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)

# 400s that mean the chat itself is out of reach (403s always do)
# (a chat where the bot may not post, e.g. "not enough rights to send photos to the chat", is out of reach for
# the job too: the rights come back only when an administrator gives them)
_UNREACHABLE = (
    "chat not found",
    "user is deactivated",
    "peer_id_invalid",
    "group chat was deactivated",
    "not enough rights",
    "have no rights",
    "chat_write_forbidden",
)
# 400s that answer a button press too late: Telegram forgets a query after a while (about 15 minutes)
_EXPIRED_QUERY = ("query is too old", "query id is invalid")
# 400s that mean the message is gone or can no longer be changed: forget it, the job goes on
_GONE = (
    "message to edit not found",
    "message can't be edited",
    "message to delete not found",
    "message_id_invalid",
)


def is_passing(err: TelegramError) -> bool:
    """Worth trying again later: Telegram did not (or may not have) carried it out for a passing reason."""
    if isinstance(err, RetryAfter):
        return True
    return isinstance(err, NetworkError) and not isinstance(err, BadRequest)


def passing(err: BaseException) -> bool:
    """``is_passing`` for ``bot.retrying.retried``, which sees every exception."""
    return isinstance(err, TelegramError) and is_passing(err)


def asked(err: BaseException) -> float | None:
    """The pause flood control asked for (``bot.retrying.retried``'s ``asked``), if any."""
    if not isinstance(err, RetryAfter):
        return None
    seconds = err.retry_after
    return float(seconds if isinstance(seconds, int) else seconds.total_seconds())


def is_expired_query(err: BaseException) -> bool:
    """A button press answered too late (the bot was down or busy): the press still counts, only its
    answer (the little notice on the user's screen) cannot be shown."""
    return isinstance(err, BadRequest) and any(reason in str(err).lower() for reason in _EXPIRED_QUERY)


def is_unreachable(err: TelegramError) -> bool:
    """The job's chat can never be written to again: blocked, kicked, deleted, deactivated. (A group that
    became a supergroup is not this: ``ChatMigrated`` names the chat to write to instead.)"""
    if isinstance(err, Forbidden):
        return True
    return isinstance(err, BadRequest) and any(reason in str(err).lower() for reason in _UNREACHABLE)


def is_gone(err: TelegramError) -> bool:
    """The message is gone (a user or a moderator deleted it) or can no longer be edited."""
    return isinstance(err, BadRequest) and any(reason in str(err).lower() for reason in _GONE)


def is_dead_token(err: TelegramError) -> bool:
    """The bot's token was revoked: nothing will work until someone changes it."""
    return isinstance(err, InvalidToken)

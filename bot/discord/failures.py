"""What a failed Discord call means for what the bot does next, decided once for the status, the result,
the animation and the other answers.

discord.py already does part of the work: its HTTP client and its webhook adapter (interaction responses,
follow-ups) sleep out a 429 for its ``retry_after`` and try again, and retry a 5xx after 1, 3, 5, 7 s, five
tries in all. What reaches the bot is what is left:

- *passing*: a 429 or a 5xx that outlasted those tries, a 503 (the HTTP client does not retry it), a timeout,
  a dropped connection. Worth trying again (``worth_retrying``, the rule of ``bot.retrying.retried``),
  except a 429 (discord.py just waited it out five times; a second round of retries on top would be the
  storm). After that the caller gives "not now", except for a job's last status, which is kept trying.
- *refused*: 403 (Missing Access 50001, Missing Permissions 50013, Cannot send messages to this user 50007)
  or 404 (Unknown Channel 10003, Unknown Message 10008, Unknown User 10013): the channel, message or user is
  out of reach for good; no retry.
- *token refused*: the interaction's token stopped working (401, Invalid Webhook Token 50027, Unknown
  Webhook 10015, Unknown Interaction 10062): the same call without the token (as the bot's own message)
  may still work.

A passing failure with no answer (``unknown_outcome``: a timeout, a dropped connection) does not say whether
Discord carried the call out. Retrying an edit is harmless; retrying a send is not, so a message the bot
creates in a channel or a DM carries a ``nonce`` (Discord's ``enforce_nonce``: the same nonce again within
minutes returns the message already created, not a second one), and a follow-up, which has none, is first
looked for (``bot.discord.messages``). The bot never gives up on a slow answer itself (no timeout but the
HTTP session's five minutes), so a retry never races a send still under way.
"""

from __future__ import annotations

import aiohttp
import discord

UNKNOWN_CHANNEL = 10003
UNKNOWN_MESSAGE = 10008
UNKNOWN_USER = 10013
UNKNOWN_WEBHOOK = 10015
UNKNOWN_INTERACTION = 10062
CANNOT_DM = 50007
INVALID_WEBHOOK_TOKEN = 50027
ALREADY_ACKNOWLEDGED = 40060  # a second first response to an interaction (its deferral had arrived)

# Everything a Discord call may raise for a reason of the platform's or the network's.
# (A timeout is an OSError, as is a connection reset that outlasted discord.py's own retries.)
FAILURES: tuple[type[BaseException], ...] = (discord.HTTPException, aiohttp.ClientError, OSError)


def is_passing(err: BaseException) -> bool:
    """Not now: a rate limit, a server error, a timeout or a dropped connection."""
    if isinstance(err, discord.HTTPException):
        return err.status == 429 or err.status >= 500
    return isinstance(err, aiohttp.ClientError | OSError)


def worth_retrying(err: BaseException) -> bool:
    """The classifier the bot's retries (``bot.retrying.retried``) use on Discord: a passing failure, but
    not a 429, which discord.py already waited out five times (a second round on top would be the storm)."""
    rate_limited = isinstance(err, discord.HTTPException) and err.status == 429
    return is_passing(err) and not rate_limited


def unknown_outcome(err: BaseException) -> bool:
    """No answer came (a timeout, a dropped connection): Discord may or may not have carried the call out."""
    return not isinstance(err, discord.HTTPException) and is_passing(err)


def is_refused(err: BaseException) -> bool:
    """Never: Discord says the channel, the message or the user is out of the bot's reach."""
    return isinstance(err, discord.Forbidden | discord.NotFound)


def token_refused(err: BaseException) -> bool:
    """Discord's answer to a token that stopped working before its 15 minutes: 401 (Invalid Webhook Token),
    or 404 for the token itself (Unknown Webhook, Unknown Interaction) rather than for a deleted message."""
    if not isinstance(err, discord.HTTPException):
        return False
    if err.status == 401 or err.code == INVALID_WEBHOOK_TOKEN:
        return True
    return err.status == 404 and err.code not in (UNKNOWN_MESSAGE, UNKNOWN_CHANNEL)


def already_acknowledged(err: BaseException) -> bool:
    """Discord had the interaction's first response already (a deferral whose answer was lost): the
    answer goes through the token (a follow-up) instead."""
    return isinstance(err, discord.HTTPException) and err.code == ALREADY_ACKNOWLEDGED


def describe(err: BaseException) -> str:
    """For the logs: Discord's status, code and message, or the kind of network failure (never a URL,
    which would carry an interaction's token)."""
    if isinstance(err, discord.HTTPException):
        return f"{err.status} (code {err.code}): {err.text}"[:200]
    return type(err).__name__

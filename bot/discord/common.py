"""What every Discord feature module needs from an interaction: the core, the user's language, the one
way to answer privately, and the one way to show a refusal.

Thin on purpose: the rules are the core's (``bot.services``); a refusal is one of
``bot.services.refusals.REFUSALS`` and its text comes from ``bot.replies.refusal``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import discord
from discord import app_commands

from bot import replies
from bot.discord.failures import FAILURES, already_acknowledged, describe, worth_retrying
from bot.discord.markdown import markdown
from bot.frontend import DISCORD
from bot.retrying import retried
from bot.services.refusals import Refused
from bot.texts import language_for, text
from engine.errors import StylebotError

if TYPE_CHECKING:
    from bot.context import Services
    from bot.discord.app import StylebotClient

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT")
T = TypeVar("T")

DEFERRED = (
    "stylebot.deferred"  # ``interaction.extras`` key: a deferral sent whose answer was lost (``responded``)
)
EXPIRED = "stylebot.expired"  # ``interaction.extras`` key: Discord dropped it before its deferral came
ACK_FAILED = "stylebot.ack_failed"  # ``interaction.extras`` key: its first response failed (``acknowledge``)
DISCORD_FAILURES = (discord.HTTPException, aiohttp.ClientError)  # of ``FAILURES``, those that are Discord's
MESSAGE_LIMIT = 2000  # characters in one message's content
MAX_CHOICES = 25  # Discord's limit for autocomplete choices and select options


def client_of(interaction: discord.Interaction) -> StylebotClient:
    return interaction.client  # type: ignore[return-value]  # the only client that registers these commands


def core_of(interaction: discord.Interaction) -> Services:
    return client_of(interaction).core


def lang(interaction: discord.Interaction) -> str:
    return language_for(str(interaction.locale))


def say(interaction: discord.Interaction, key: str, **values: object) -> str:
    """A text of ``bot/texts`` in the user's language, as Discord Markdown."""
    return markdown(text(lang(interaction), key, **values))


def refusal(interaction: discord.Interaction, err: Refused | StylebotError) -> str:
    """What the core refused, in the user's language, as Discord Markdown."""
    return markdown(replies.refusal(lang(interaction), err))


async def remember(interaction: discord.Interaction) -> None:
    """Keep the user's row current (name, language) before a request that needs it."""
    user = interaction.user
    await core_of(interaction).users.remember(
        user.id,
        platform=DISCORD,
        username=user.name,
        display_name=user.display_name,
        language=str(interaction.locale),
    )


def fitting(message: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """A long answer as messages within Discord's limit, cut between lines (a line too long for one
    message is cut where the limit falls)."""
    parts: list[str] = []
    current = ""
    for line in message.split("\n"):
        for piece in [line[i : i + limit] for i in range(0, max(len(line), 1), limit)]:
            candidate = f"{current}\n{piece}" if current else piece
            if len(candidate) > limit:
                parts.append(current)
                candidate = piece
            current = candidate
    return [*parts, current] if current else parts


def responded(interaction: discord.Interaction) -> bool:
    """The interaction's first response is made: discord.py's record of it, or a deferral whose answer
    was lost (``mark_deferred``), which Discord may well have; either way later answers go through the
    token (follow-ups, edits), not as a second first response that Discord refuses (40060)."""
    return interaction.response.is_done() or bool(interaction.extras.get(DEFERRED))


def mark_deferred(interaction: discord.Interaction) -> None:
    """The deferral was sent but its answer lost (a timeout, a dropped connection): see ``responded``."""
    interaction.extras[DEFERRED] = True


def mark_expired(interaction: discord.Interaction) -> None:
    """Discord dropped the interaction before its deferral arrived (Unknown Interaction): the user saw
    "did not respond", and nothing sent through it will arrive; its job goes on (``jobs.begin``)."""
    mark_deferred(interaction)
    interaction.extras[EXPIRED] = True


def expired(interaction: discord.Interaction) -> bool:
    return bool(interaction.extras.get(EXPIRED))


async def acknowledge(interaction: discord.Interaction, response: Awaitable[T]) -> T:
    """The interaction's first response (``interaction.response.defer(...)``, ``send_message``...), awaited;
    when Discord fails it, the interaction is marked so that ``report`` tells the user nothing was done
    (a handler acknowledges before it changes anything) and the failure goes on to ``report``."""
    try:
        return await response
    except FAILURES:
        interaction.extras[ACK_FAILED] = True
        raise


async def answer(interaction: discord.Interaction, message: str) -> None:
    """An ephemeral answer, whether or not the interaction was deferred (ephemerally). A follow-up is tried
    again after a passing failure (``bot.discord.failures``; seen by the user alone, a rare duplicate is
    harmless); the first response has 3 seconds and one try, and when Discord says the interaction was
    acknowledged already the answer is a follow-up. An answer Discord would not take is logged."""
    try:
        if not responded(interaction):
            try:
                await interaction.response.send_message(message, ephemeral=True)
                return
            except discord.HTTPException as err:
                if not already_acknowledged(err):
                    raise
                log.info("discord user %d: already acknowledged; answering by follow-up", interaction.user.id)
        await retried(
            lambda: interaction.followup.send(message, ephemeral=True),
            passing=worth_retrying,
            describe=describe,
            what=f"answer to discord user {interaction.user.id}",
        )
    except FAILURES as err:
        log.warning("discord user %d: the answer could not be sent: %s", interaction.user.id, describe(err))


async def refuse(interaction: discord.Interaction, message: str) -> None:
    """An ephemeral answer, also after a public deferral (what only the download shows: a corrupt picture,
    too many pixels, a limit reached meanwhile): the public "thinking" response is first completed (while
    it loads, a followup would only edit it, public), then the refusal follows ephemerally and the public
    response is deleted: only the user sees why. An interaction that expired before its deferral
    (``mark_expired``) takes nothing through its token: the refusal goes to its channel, pinging the user
    (who saw "did not respond" and would hear nothing else)."""
    if expired(interaction):
        await _tell_in_channel(interaction, message)
        return
    if not responded(interaction):
        await answer(interaction, message)
        return
    with contextlib.suppress(*FAILURES):
        await interaction.edit_original_response(content="…", view=None)
    try:
        await answer(interaction, message)
    finally:
        with contextlib.suppress(*FAILURES):
            await interaction.delete_original_response()


async def _tell_in_channel(interaction: discord.Interaction, message: str) -> None:
    """``message`` in the interaction's channel, pinging its user alone; a channel out of reach (a user
    install in a server without the bot) hears nothing, and the log says so."""
    user = interaction.user.id
    if interaction.channel_id is None:
        log.warning("discord user %d: not told (no channel): %s", user, message[:80])
        return
    channel = client_of(interaction).get_partial_messageable(
        interaction.channel_id, guild_id=interaction.guild_id
    )
    mention = discord.AllowedMentions(users=[discord.Object(user)])
    try:
        await retried(
            lambda: channel.send(
                f"<@{user}> {message}", allowed_mentions=mention, nonce=f"r{interaction.id}"
            ),
            passing=worth_retrying,
            describe=describe,
            what=f"message to discord user {user}",
        )
    except FAILURES as err:
        log.warning("discord user %d: the answer could not be sent in the channel: %s", user, describe(err))


async def report(interaction: discord.Interaction, error: BaseException) -> None:
    """The one way a command's or a button's failure ends (``StylebotTree.on_error``, ``StylebotView``,
    ``guarded`` buttons): Discord failing the bot (``failures.FAILURES``: a 503, a timeout) is one WARNING
    line with the user, anything else is a bug and logged with its traceback; either way the user gets a
    word with a reference to the log line, if Discord takes it: an apology for a bug, and for Discord's
    failure what happened. A handler acknowledges (``acknowledge``) before it changes anything (or handles
    the failure of a later acknowledgement itself, as Cancel and the settings panel do), so an interaction
    Discord failed to acknowledge has had nothing done: the user is told so, and to ask again, instead of
    "something went wrong on my side". Any other passing failure (a database or file the handler read
    before its acknowledgement) gets the apology: that was not Discord."""
    if isinstance(error, app_commands.CommandInvokeError):  # a command's own exception, wrapped
        error = error.original
    reference = secrets.token_hex(4).upper()
    user = interaction.user.id
    key = "apology"
    if interaction.extras.get(ACK_FAILED):  # the failure was the acknowledgement (its deferral, its answer)
        key = "discord_not_acknowledged"
        log.warning(
            "Discord failed to acknowledge for user %d (ref %s): %s", user, reference, describe(error)
        )
    elif isinstance(error, DISCORD_FAILURES):
        log.warning("Discord failed a call for user %d (ref %s): %s", user, reference, describe(error))
    elif isinstance(error, FAILURES):  # an OSError: a timeout of Discord's, or the bot's database, a file
        log.warning("a call failed for discord user %d (ref %s): %s", user, reference, describe(error))
    else:
        log.error("unexpected error (ref %s) for discord user %d", reference, user, exc_info=error)
    with contextlib.suppress(*FAILURES):
        await refuse(interaction, say(interaction, key, ref=reference))  # ephemeral, even deferred


class StylebotView(discord.ui.View):
    """A view whose items fail as commands do (``report``), not as discord.py's "Ignoring exception in
    view" traceback."""

    async def on_error(self, interaction: discord.Interaction, error: Exception, item: Any, /) -> None:
        await report(interaction, error)


def guarded(
    callback: Callable[[ItemT, discord.Interaction], Coroutine[Any, Any, None]],
) -> Callable[[ItemT, discord.Interaction], Coroutine[Any, Any, None]]:
    """For a ``DynamicItem``'s ``callback``: discord.py runs those outside any view (a press after a
    restart) and logs what they raise itself; this sends it through ``report`` instead."""

    @functools.wraps(callback)
    async def run(item: ItemT, interaction: discord.Interaction) -> None:
        try:
            await callback(item, interaction)
        except Exception as err:
            await report(interaction, err)

    return run

"""The bot's own messages about a job on Discord: its result, a figure's animation, a word for its owner.

The result goes as a follow-up while the interaction's token lives, as a channel message when there is no
token or Discord refuses it, and as a DM when the channel is refused (the bot may not write there, or it
is gone); when the DM is refused too, the result is ``Undeliverable``. A passing failure is tried again
(``bot.discord.failures.retried``) and then left for later. Every channel message and DM carries a nonce
(one per job and kind), so a retry of a send whose answer was lost returns the message Discord already
created instead of a second one. A follow-up has no nonce: after one whose answer never came, the channel's
latest messages are looked through for the result (its "Another style" button names the job) before it is
sent again; only where the bot may not read the channel can the painting then come twice.
"""

from __future__ import annotations

import io
import logging
import zlib
from dataclasses import dataclass

import discord

from bot.db import JobRecord
from bot.discord.failures import (
    FAILURES,
    describe,
    is_refused,
    token_refused,
    unknown_outcome,
    worth_retrying,
)
from bot.frontend import Undeliverable
from bot.retrying import retried

log = logging.getLogger(__name__)

LOOK_BACK = 20  # the channel's latest messages looked through for a follow-up whose answer was lost


@dataclass(frozen=True)
class Sent:
    """What became of a result: the message (None: not now), and whether Discord refused the token."""

    message: discord.Message | None
    token_refused: bool = False


def owner_only(job: JobRecord) -> discord.AllowedMentions:
    """Only the job's owner is pinged (the client's default pings no one)."""
    return discord.AllowedMentions(users=[discord.Object(job.user_id)])


async def send_result(
    client: discord.Client,
    job: JobRecord,
    token: discord.Interaction | None,
    content: str,
    data: bytes,
    name: str,
    view: discord.ui.View,
) -> Sent:
    """The result through ``token`` (an interaction whose token still lives), else the job's channel, else
    a DM. Raises ``Undeliverable`` when the channel and the DM are both refused."""
    what = f"job {job.id}: result"
    nonce = f"r{job.id}"
    mentions = owner_only(job)

    def upload() -> discord.File:
        return discord.File(io.BytesIO(data), name)

    refused_token = False
    if token is not None:
        followup = token.followup

        async def follow_up() -> discord.Message:
            try:
                return await followup.send(
                    content, file=upload(), allowed_mentions=mentions, view=view, wait=True
                )
            except FAILURES as err:
                if unknown_outcome(err) and (made := await _landed(client, job)) is not None:
                    log.info("job %d: the result's answer was lost, but Discord had sent it", job.id)
                    return made
                raise

        try:
            return Sent(await retried(follow_up, passing=worth_retrying, describe=describe, what=what))
        except FAILURES as err:
            if not (token_refused(err) or is_refused(err)):
                return _later(job, err)
            log.info("job %d: the token no longer works (%s); sending to the channel", job.id, describe(err))
            refused_token = True
    channel = client.get_partial_messageable(job.chat_id, guild_id=job.guild_id)
    try:
        sent = await retried(
            lambda: channel.send(content, file=upload(), allowed_mentions=mentions, view=view, nonce=nonce),
            passing=worth_retrying,
            describe=describe,
            what=what,
        )
        return Sent(sent, refused_token)
    except FAILURES as err:
        if not is_refused(err):
            return _later(job, err, refused_token)
        in_channel = describe(err)
        log.info("job %d: the channel refused the result (%s); sending it as a DM", job.id, in_channel)
    try:
        user = await retried(
            lambda: client.fetch_user(job.user_id), passing=worth_retrying, describe=describe, what=what
        )
        sent = await retried(
            lambda: user.send(content, file=upload(), view=view, nonce=nonce),
            passing=worth_retrying,
            describe=describe,
            what=what,
        )
        return Sent(sent, refused_token)
    except FAILURES as err:
        if not is_refused(err):
            return _later(job, err, refused_token)
        raise Undeliverable(f"channel: {in_channel}; DM: {describe(err)}") from err


async def _landed(client: discord.Client, job: JobRecord) -> discord.Message | None:
    """The job's result among the channel's latest messages, when the bot may read them."""
    marker = f"again:{job.id}"
    channel = client.get_partial_messageable(job.chat_id, guild_id=job.guild_id)

    async def look() -> discord.Message | None:
        async for message in channel.history(limit=LOOK_BACK):
            rows = [row for row in message.components if isinstance(row, discord.ActionRow)]
            ids = [getattr(item, "custom_id", None) for row in rows for item in row.children]
            if message.author.id == getattr(client.user, "id", None) and marker in ids:
                return message
        return None

    try:
        return await retried(
            look, passing=worth_retrying, describe=describe, what=f"job {job.id}: looking for the result"
        )
    except FAILURES as err:
        log.info("job %d: the channel could not be read to see if the result came: %s", job.id, describe(err))
        return None


def _later(job: JobRecord, err: BaseException, refused_token: bool = False) -> Sent:
    log.warning("job %d: the result could not be sent: %s", job.id, describe(err))
    return Sent(None, refused_token)


async def send_animation(client: discord.Client, job: JobRecord, data: bytes) -> None:
    """A figure's GIF in the job's channel; best effort."""
    channel = client.get_partial_messageable(job.chat_id, guild_id=job.guild_id)

    async def send() -> discord.Message:
        return await channel.send(
            file=discord.File(io.BytesIO(data), f"stylebot_{job.id}.gif"), nonce=f"a{job.id}"
        )

    try:
        await retried(send, passing=worth_retrying, describe=describe, what=f"job {job.id}: animation")
    except FAILURES as err:
        log.warning("job %d: the animation could not be sent: %s", job.id, describe(err))


async def tell(client: discord.Client, job: JobRecord, content: str) -> None:
    """``content`` (Markdown) for the job's owner in the job's channel, pinging them; a channel out of reach
    hears nothing. The nonce follows the text: the same word twice is one message."""
    channel = client.get_partial_messageable(job.chat_id, guild_id=job.guild_id)
    message = f"<@{job.user_id}> {content}"
    nonce = f"t{job.id}.{zlib.crc32(message.encode())}"
    try:
        await retried(
            lambda: channel.send(message, allowed_mentions=owner_only(job), nonce=nonce),
            passing=worth_retrying,
            describe=describe,
            what=f"job {job.id}: message",
        )
    except FAILURES as err:
        log.warning("job %d: user %d was not told: %s", job.id, job.user_id, describe(err))

"""Moderation on Discord (the rules are ``bot.services.moderation``'s and ``stats``'): ``/admin stats``,
``/admin block`` and ``/admin unblock`` for the bot's admins (``ADMIN_IDS``' discord ids), ``/bot off`` and
``/bot on`` for a server's members with Manage Server, and the Delete button under a result, for its owner
and the channel's members with Manage Messages. Every answer is ephemeral: only the one who asked sees it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

import discord
from discord import app_commands

from bot import replies
from bot.discord.common import acknowledge, answer, core_of, guarded, lang, refusal, say
from bot.discord.failures import FAILURES, describe
from bot.discord.markdown import markdown
from bot.frontend import DISCORD
from bot.services.refusals import REFUSALS, Refused

log = logging.getLogger(__name__)

admin = app_commands.Group(name="admin", description="For the bot's admins: statistics and blocking")
switch = app_commands.Group(
    name="bot", description="Switch the bot off or on in this server", guild_only=True
)


def person(user: discord.abc.User) -> str:
    """Someone named in an answer: a mention (pinging no one: the client allows no mentions) and the id
    an admin may need for ``/unblock`` elsewhere."""
    return f"<@{user.id}> (<code>{user.id}</code>)"


@admin.command(name="stats", description="Jobs, the queue, the workers and the waits")
async def admin_stats(interaction: discord.Interaction) -> None:
    try:
        stats = await core_of(interaction).stats.collect(interaction.user.id, platform=DISCORD)
    except REFUSALS as err:
        await answer(interaction, refusal(interaction, err))
        return
    await answer(interaction, markdown(replies.statistics(lang(interaction), stats)))


@admin.command(name="block", description="Block someone: their pictures are cancelled and new ones refused")
@app_commands.describe(user="who to block")
async def admin_block(interaction: discord.Interaction, user: discord.User) -> None:
    await acknowledge(
        interaction, interaction.response.defer(ephemeral=True)
    )  # the statuses it cancels may take past 3 seconds
    try:
        blocked = await core_of(interaction).moderation.block(interaction.user.id, user.id, platform=DISCORD)
    except REFUSALS as err:
        await answer(interaction, refusal(interaction, err))
        return
    who = person(user)
    if not blocked.newly:
        await answer(interaction, say(interaction, "block_already", user=who))
        return
    await answer(interaction, say(interaction, "block_done", user=who, count=blocked.cancelled))


@admin.command(name="unblock", description="Let someone use the bot again")
@app_commands.describe(user="who to unblock")
async def admin_unblock(interaction: discord.Interaction, user: discord.User) -> None:
    try:
        unblocked = await core_of(interaction).moderation.unblock(
            interaction.user.id, user.id, platform=DISCORD
        )
    except REFUSALS as err:
        await answer(interaction, refusal(interaction, err))
        return
    key = "unblock_done" if unblocked else "unblock_not_blocked"
    await answer(interaction, say(interaction, key, user=person(user)))


@switch.command(name="off", description="Take no more pictures in this server (Manage Server)")
async def bot_off(interaction: discord.Interaction) -> None:
    await _switch(interaction, on=False)


@switch.command(name="on", description="Take pictures in this server again (Manage Server)")
async def bot_on(interaction: discord.Interaction) -> None:
    await _switch(interaction, on=True)


async def _switch(interaction: discord.Interaction, *, on: bool) -> None:
    if interaction.guild_id is None:  # guild_only hides it in DMs; an old client may still send it
        await answer(interaction, say(interaction, "chat_switch_groups_only"))
        return

    async def manages() -> bool:
        return interaction.permissions.manage_guild

    try:
        changed = await core_of(interaction).moderation.switch(
            interaction.guild_id, on, interaction.user.id, platform=DISCORD, manages=manages
        )
    except REFUSALS as err:
        await answer(interaction, refusal(interaction, err))
        return
    state = "on" if on else "off"
    await answer(interaction, say(interaction, f"bot_{state}_done" if changed else f"bot_{state}_already"))


class DeleteButton(discord.ui.DynamicItem[discord.ui.Button], template=r"delete:(?P<job>[0-9]{1,10})"):
    """Delete under a result: the message and the stored painting; its custom id carries the job, so it
    works after a restart."""

    def __init__(self, job_id: int, label: str = "Delete") -> None:
        super().__init__(
            discord.ui.Button(label=label, style=discord.ButtonStyle.secondary, custom_id=f"delete:{job_id}")
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> DeleteButton:
        return cls(int(match["job"]))

    @guarded
    async def callback(self, interaction: discord.Interaction) -> None:
        await delete_pressed(interaction, self.job_id)


async def delete_pressed(interaction: discord.Interaction, job_id: int) -> None:
    """The owner, or a member who may manage messages in this channel, deletes the result (the service
    decides; the channel's permission is asked only of others); anyone else hears why, privately. Only
    the job's own result message is deleted: a button naming another job is refused as expired."""

    async def moderates() -> bool:
        return interaction.guild_id is not None and interaction.permissions.manage_messages

    core = core_of(interaction)
    message = interaction.message  # a button is always pressed on a message; None only in theory
    job = await core.jobs.job(job_id)
    if job is not None and message is not None and job.result_file_id != str(message.id):
        log.warning("job %d: Delete pressed on message %d, not its result", job_id, message.id)
        await answer(interaction, refusal(interaction, Refused("button_expired")))
        return
    try:
        await core.moderation.remove_result(
            job_id,
            interaction.user.id,
            platform=DISCORD,
            chat_id=interaction.channel_id or 0,
            moderates=moderates,
        )
    except REFUSALS as err:
        await answer(interaction, refusal(interaction, err))
        return
    if message is not None and not await _delete_message(interaction, message, job_id):
        await answer(interaction, say(interaction, "delete_message_stays"))
        return
    await answer(interaction, say(interaction, "deleted"))


async def _delete_message(interaction: discord.Interaction, message: discord.Message, job_id: int) -> bool:
    """The pressed message, through the interaction first (its token needs no membership: a result of a
    user-installed "Paint this" in a server without the bot), then as the bot's own message. False when
    it stays."""
    try:
        await interaction.response.defer()  # a component's deferral: its original response is the message
        await interaction.delete_original_response()
        return True
    except discord.NotFound:
        return True  # deleted meanwhile: what was asked
    except FAILURES as err:
        log.info(
            "job %d: result not deleted through the interaction (%s); trying the channel",
            job_id,
            describe(err),
        )
    try:
        await message.delete()
    except discord.NotFound:
        pass
    except FAILURES as err:
        log.warning(
            "job %d: result message not deleted for discord user %d: %s",
            job_id,
            interaction.user.id,
            describe(err),
        )
        return False
    return True

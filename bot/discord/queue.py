"""The queue on Discord: ``/queue`` (where the user's pictures are), ``/cancel`` and the Cancel button
under a job's status (the owner only: ``JobService.cancel_owned``)."""

from __future__ import annotations

import logging
import re
from typing import Any

import discord
from discord import app_commands

from bot import replies
from bot.db import JobRecord
from bot.discord.common import StylebotView, acknowledge, answer, core_of, guarded, lang, refusal, say
from bot.discord.failures import FAILURES, describe
from bot.discord.markdown import markdown
from bot.discord.sketch import KeepButton
from bot.frontend import DISCORD
from bot.services.refusals import Refused
from bot.texts import language_for, text

log = logging.getLogger(__name__)


class CancelButton(discord.ui.DynamicItem[discord.ui.Button], template=r"cancel:(?P<job>[0-9]{1,10})"):
    """The Cancel button under a job's status; its custom id carries the job, so it works after a
    restart."""

    def __init__(self, job_id: int, label: str = "Cancel") -> None:
        super().__init__(
            discord.ui.Button(label=label, style=discord.ButtonStyle.danger, custom_id=f"cancel:{job_id}")
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> CancelButton:
        return cls(int(match["job"]))

    @guarded
    async def callback(self, interaction: discord.Interaction) -> None:
        await cancel_pressed(interaction, self.job_id)


def cancel_view(job: JobRecord, *, keep: bool = False) -> discord.ui.View:
    """Under an active job's status: "Keep the sketch" (while offered), then Cancel."""
    language = language_for(job.language_code)
    view = StylebotView(timeout=None)
    if keep:
        view.add_item(KeepButton(job.id, text(language, "keep_button")))
    view.add_item(CancelButton(job.id, text(language, "cancel_button")))
    return view


async def cancel_pressed(interaction: discord.Interaction, job_id: int) -> None:
    """Cancel: the job's owner only (``JobService.withdraw``, which also has the status say so); anyone
    else hears why, privately."""
    try:
        await core_of(interaction).jobs.withdraw(job_id, interaction.user.id, platform=DISCORD)
    except Refused as err:
        await answer(interaction, refusal(interaction, err))
        return
    try:
        await interaction.response.defer()
    except FAILURES as err:  # cancelled all the same, and its status says so: nothing else to tell
        log.warning(
            "discord user %d: job %d cancelled, but Discord failed its acknowledgement: %s",
            interaction.user.id,
            job_id,
            describe(err),
        )


@app_commands.command(name="queue", description="Where your pictures are")
async def queue_command(interaction: discord.Interaction) -> None:
    overview = await core_of(interaction).jobs.overview(interaction.user.id, platform=DISCORD)
    await answer(interaction, markdown(replies.queue_overview(lang(interaction), overview)))


@app_commands.command(name="cancel", description="Stop your latest picture")
@app_commands.describe(everything="stop all of your pictures")
async def cancel_command(interaction: discord.Interaction, everything: bool = False) -> None:
    await acknowledge(
        interaction, interaction.response.defer(ephemeral=True)
    )  # the statuses it edits may take past 3 seconds
    jobs = core_of(interaction).jobs
    count = await jobs.withdraw_latest(interaction.user.id, everything=everything, platform=DISCORD)
    if not count:
        await answer(interaction, say(interaction, "cancel_none"))
        return
    await answer(interaction, say(interaction, "cancel_done", count=count))

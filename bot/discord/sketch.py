"""The sketch on Discord: "Keep the sketch" beside Cancel while a job waits long (the rule is
``SketchService.may_keep``'s, the same on every platform)."""

from __future__ import annotations

import re
from typing import Any

import discord

from bot import replies
from bot.discord.common import acknowledge, answer, core_of, guarded, lang
from bot.discord.markdown import markdown
from bot.frontend import DISCORD
from bot.services.sketches import Kept


class KeepButton(discord.ui.DynamicItem[discord.ui.Button], template=r"keep:(?P<job>[0-9]{1,10})"):
    """ "Keep the sketch" beside Cancel; its custom id carries the job, so it works after a restart."""

    def __init__(self, job_id: int, label: str = "Keep the sketch") -> None:
        super().__init__(
            discord.ui.Button(label=label, style=discord.ButtonStyle.success, custom_id=f"keep:{job_id}")
        )
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> KeepButton:
        return cls(int(match["job"]))

    @guarded
    async def callback(self, interaction: discord.Interaction) -> None:
        await keep_pressed(interaction, self.job_id)


async def keep_pressed(interaction: discord.Interaction, job_id: int) -> None:
    """The job's owner only, while it waits; anyone else hears why, privately. Keeping remakes the sketch
    at full size, which may pass Discord's 3 seconds: deferred first, the outcome then told privately."""
    core = core_of(interaction)
    job = await core.sketches.may_keep(job_id, interaction.user.id, platform=DISCORD)
    if isinstance(job, Kept):
        await answer(interaction, markdown(replies.kept(lang(interaction), job)))
        return
    await acknowledge(interaction, interaction.response.defer())
    outcome = await core.sketches.keep(job)
    await answer(interaction, markdown(replies.kept(lang(interaction), outcome)))

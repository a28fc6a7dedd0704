"""Figures and painting a photo again on Discord (the rules are ``bot.services.figures``'): ``/strip``,
``/layers``, ``/forming``, and under a result "Another style" and one button per figure, for the job's
owner only, after a restart too (their custom ids carry the job)."""

from __future__ import annotations

import re
from typing import Any

import discord
from discord import app_commands

from bot.db import JobRecord
from bot.discord.admin import DeleteButton
from bot.discord.attachments import precheck
from bot.discord.common import (
    MAX_CHOICES,
    StylebotView,
    acknowledge,
    answer,
    core_of,
    guarded,
    refusal,
    refuse,
    say,
)
from bot.discord.jobs import begin, show_queued, start_job
from bot.discord.styles import choose, style_choices
from bot.frontend import DISCORD
from bot.services import styles
from bot.services.refusals import REFUSALS
from bot.services.styles import StyleChoice
from bot.texts import language_for, text
from engine.protocol import FIGURES


class AgainButton(discord.ui.DynamicItem[discord.ui.Button], template=r"again:(?P<job>[0-9]{1,10})"):
    """ "Another style" under a result: the kept photo painted again."""

    def __init__(self, job_id: int, label: str = "Another style") -> None:
        super().__init__(discord.ui.Button(label=label, custom_id=f"again:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> AgainButton:
        return cls(int(match["job"]))

    @guarded
    async def callback(self, interaction: discord.Interaction) -> None:
        await again_pressed(interaction, self.job_id)


class FigureButton(
    discord.ui.DynamicItem[discord.ui.Button],
    template=rf"fig:(?P<kind>{'|'.join(FIGURES)}):(?P<job>[0-9]{{1,10}})",
):
    """Strength strip, Layer strip, How it formed under a painting."""

    def __init__(self, figure: str, job_id: int, label: str | None = None) -> None:
        super().__init__(discord.ui.Button(label=label or figure, custom_id=f"fig:{figure}:{job_id}"))
        self.figure, self.job_id = figure, job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> FigureButton:
        return cls(match["kind"], int(match["job"]))

    @guarded
    async def callback(self, interaction: discord.Interaction) -> None:
        await figure_pressed(interaction, self.job_id, self.figure)


def result_view(job: JobRecord) -> discord.ui.View:
    """Under a result: another style, under a plain painting (not a figure's own result) its figures, and
    Delete (as Telegram's ``bot.telegram.buttons.result``); under a clip Delete alone (the others paint
    photos)."""
    language = language_for(job.language_code)
    view = StylebotView(timeout=None)
    if job.kind == "clip":
        view.add_item(DeleteButton(job.id, text(language, "delete_button")))
        return view
    view.add_item(AgainButton(job.id, text(language, "again_button")))
    if not job.settings.get("figure"):
        for kind in FIGURES:
            view.add_item(FigureButton(kind, job.id, text(language, f"{kind}_button")))
    view.add_item(DeleteButton(job.id, text(language, "delete_button")))
    return view


class RepaintPicker(StylebotView):
    """The ephemeral picker of "Another style": a catalog painting for a job's kept photo."""

    def __init__(self, job_id: int, options: list[tuple[str, str]]) -> None:
        super().__init__(timeout=600)
        self.job_id = job_id
        self.select: discord.ui.Select = discord.ui.Select(
            custom_id="repick",
            options=[discord.SelectOption(label=name[:100], value=value) for name, value in options],
        )
        self.select.callback = self.picked  # type: ignore[method-assign]  # discord.py's way for a built item
        self.add_item(self.select)

    async def picked(self, interaction: discord.Interaction) -> None:
        value = self.select.values[0]
        core = core_of(interaction)
        if value not in core.catalog:
            await answer(interaction, say(interaction, "button_expired"))
            return
        source = await _source(interaction, self.job_id)  # checked again: it may have expired meanwhile
        if source is not None:
            await repaint(interaction, source, None, styles.paintings([value], core.catalog))


async def _source(interaction: discord.Interaction, job_id: int) -> JobRecord | None:
    """The job a button names, if the presser may paint its photo again; else an ephemeral answer."""
    try:
        return await core_of(interaction).figures.source(job_id, interaction.user.id, platform=DISCORD)
    except REFUSALS as err:
        await answer(interaction, refusal(interaction, err))
        return None


async def repaint(
    interaction: discord.Interaction, source: JobRecord, figure: str | None, style: StyleChoice | None
) -> None:
    """A kept photo painted again (``FigureService.repaint``); the interaction's response is its status.
    Acknowledged as every job is (``jobs.begin``): a press whose deferral came too late is painted too."""
    if not await begin(interaction):
        return
    try:
        job, placement = await core_of(interaction).figures.repaint(source, figure=figure, style=style)
    except REFUSALS as err:
        await refuse(interaction, refusal(interaction, err))
        return
    await show_queued(interaction, job, placement)


async def figure_pressed(interaction: discord.Interaction, job_id: int, figure: str) -> None:
    source = await _source(interaction, job_id)
    if source is not None:
        await repaint(interaction, source, figure, None)


async def again_pressed(interaction: discord.Interaction, job_id: int) -> None:
    """An ephemeral picker of paintings for the kept photo."""
    source = await _source(interaction, job_id)
    if source is None:
        return
    options = [(f"{p.title} ({p.artist})", p.id) for p in core_of(interaction).catalog][:MAX_CHOICES]
    await acknowledge(
        interaction,
        interaction.response.send_message(
            say(interaction, "discord_pick_style"), view=RepaintPicker(source.id, options), ephemeral=True
        ),
    )


def _figure_command(name: str, description: str, figure: str) -> app_commands.Command:
    """``/<name>``: as ``/paint`` (a style, else the server's default), painted as ``figure``."""

    @app_commands.command(name=name, description=description)
    @app_commands.describe(image="the picture to paint", style="a painting or one of your presets")
    @app_commands.autocomplete(style=style_choices)
    async def command(
        interaction: discord.Interaction, image: discord.Attachment, style: str | None = None
    ) -> None:
        try:
            precheck(interaction, image)
            choice = await choose(interaction, style) if style else None
        except REFUSALS as err:
            await refuse(interaction, refusal(interaction, err))
            return
        await start_job(interaction, image, choice, figure=figure)

    return command


strip_command = _figure_command("strip", "Your picture at five strengths, side by side", "strength")
layers_command = _figure_command("layers", "Your picture with shallow, then deeper style layers", "layers")
forming_command = _figure_command(
    "forming", "The painting as it forms: a triptych and an animation", "forming"
)

"""Painting on Discord: ``/paint`` (a painting, preset or personal style, or a second picture's style,
with this request's own strength, quality and colours), ``/surprise`` (a painting not tried yet), and the
"Paint this" message menu with its ephemeral style picker (installable to a person as well as to a server).
Each hands the job to ``jobs.start_job``.

A GIF or a video given to ``/paint`` or "Paint this" is painted as ``/clip`` paints it (as Telegram paints
an animation sent with a painting's name), not as its first frame: the same style, strength and colours;
``quality`` ``instant`` is the instant clip, a painted tier (draft, normal, high) the painted clip; an MP4
comes back. A still GIF stays a picture."""

from __future__ import annotations

from typing import Any

import discord
from discord import app_commands

from bot import replies
from bot.discord.attachments import image_of, is_clip, is_image, precheck
from bot.discord.clips import DISCORD_UPLOAD
from bot.discord.common import (
    MAX_CHOICES,
    StylebotView,
    acknowledge,
    answer,
    core_of,
    lang,
    refusal,
    refuse,
    say,
)
from bot.discord.jobs import AsClip, start_job
from bot.discord.markdown import markdown
from bot.discord.styles import choose, style_choices
from bot.frontend import DISCORD
from bot.services import styles
from bot.services.clips import INSTANT, MP4, PAINTED, ClipFormat
from bot.services.preferences import COLOR_CHOICES, STRENGTHS
from bot.services.refusals import REFUSALS
from bot.services.uploads import check_size
from engine.protocol import QUALITIES

QUALITY = [app_commands.Choice(name=q, value=q) for q in QUALITIES]
STRENGTH = [app_commands.Choice(name=s, value=s) for s in STRENGTHS]
COLORS = [app_commands.Choice(name=c, value=c) for c in COLOR_CHOICES]


def as_clip(quality: str | None = None) -> AsClip:
    """How a GIF or video given to a picture's command is painted: ``/paint``'s quality read as a clip's
    (``instant`` the instant clip, any painted tier the painted clip, none the clip's default)."""
    if quality is not None:
        quality = INSTANT if quality == INSTANT else PAINTED
    return AsClip(ClipFormat(MP4, DISCORD_UPLOAD), quality)


@app_commands.command(name="paint", description="Paint a picture in the style of a painting")
@app_commands.describe(
    image="the picture to paint",
    style="a painting, one of your presets or personal styles",
    style_image="or a second picture whose style to use",
)
@app_commands.autocomplete(style=style_choices)
@app_commands.choices(quality=QUALITY, strength=STRENGTH, preserve_colors=COLORS)
async def paint(
    interaction: discord.Interaction,
    image: discord.Attachment,
    style: str | None = None,
    style_image: discord.Attachment | None = None,
    strength: app_commands.Choice[str] | None = None,
    quality: app_commands.Choice[str] | None = None,
    preserve_colors: app_commands.Choice[str] | None = None,
) -> None:
    overrides: dict[str, Any] = {}
    if strength is not None:
        overrides["strength"] = STRENGTHS[strength.value]
    if quality is not None:
        overrides["quality"] = quality.value
    if preserve_colors is not None:
        overrides["preserve_colors"] = preserve_colors.value
    video = is_clip(image) and not is_image(image)
    try:
        if video:  # the picture's checks do not apply; the clip's header is read after the download
            check_size(image.size)
        precheck(interaction, None if video else image, style_image)
        choice = await choose(interaction, style) if style and style_image is None else None
    except REFUSALS as err:
        await refuse(interaction, refusal(interaction, err))
        return
    clip = as_clip(quality.value if quality is not None else None) if is_clip(image) else None
    await start_job(interaction, image, choice, style_image=style_image, overrides=overrides, as_clip=clip)


@app_commands.command(name="surprise", description="Paint with a painting you haven't tried yet")
@app_commands.describe(image="the picture to paint")
async def surprise_command(interaction: discord.Interaction, image: discord.Attachment) -> None:
    core = core_of(interaction)
    try:
        precheck(interaction, image)
        pick = await core.figures.surprise(interaction.user.id, platform=DISCORD)
    except REFUSALS as err:
        await refuse(interaction, refusal(interaction, err))
        return
    if await start_job(interaction, image, styles.paintings([pick.painting.id], core.catalog)):
        await interaction.followup.send(markdown(replies.surprise(lang(interaction), pick)))


class StylePicker(StylebotView):
    """The ephemeral picker of "Paint this": the user's presets and personal styles, then the catalog."""

    def __init__(self, message: discord.Message, options: list[app_commands.Choice[str]]) -> None:
        super().__init__(timeout=600)
        self.message = message
        self.select: discord.ui.Select = discord.ui.Select(
            custom_id="pick",
            options=[discord.SelectOption(label=o.name[:100], value=o.value) for o in options[:MAX_CHOICES]],
        )
        self.select.callback = self.picked  # type: ignore[method-assign]  # discord.py's way for a built item
        self.add_item(self.select)

    async def picked(self, interaction: discord.Interaction) -> None:
        """The pick's response becomes the job's status: acknowledged by ``start_job`` (``jobs.begin``), as
        /paint is, so a pick whose deferral came too late is painted too; a refusal before it is ephemeral."""
        attachment = image_of(self.message)
        try:
            choice = await choose(interaction, self.select.values[0])
        except REFUSALS as err:
            await refuse(interaction, refusal(interaction, err))
            return
        if attachment is None:
            await refuse(interaction, say(interaction, "discord_no_image"))
            return
        await start_job(interaction, attachment, choice, as_clip=as_clip() if is_clip(attachment) else None)


@app_commands.allowed_installs(guilds=True, users=True)
@app_commands.allowed_contexts(guilds=True, dms=True, private_channels=True)
@app_commands.context_menu(name="Paint this")
async def paint_this(interaction: discord.Interaction, message: discord.Message) -> None:
    """A picture in any message painted: installable to a person too (user install), so it works in DMs,
    group DMs and servers without the bot. Everything is answered through the interaction: the picker
    is ephemeral, the status is the pick's response and the result its follow-up while the token lives
    (``bot.discord.messages``)."""
    if image_of(message) is None:
        await answer(interaction, say(interaction, "discord_no_image"))
        return
    options = await style_choices(interaction, "")
    await acknowledge(
        interaction,
        interaction.response.send_message(
            say(interaction, "discord_pick_style"), view=StylePicker(message, options), ephemeral=True
        ),
    )

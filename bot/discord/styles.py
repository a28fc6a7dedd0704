"""Styles on Discord: ``/styles`` (the gallery), "Use as my style" (a personal style from any picture in
the channel), and how every painting command names a style (autocomplete over the user's personal styles,
presets and the catalog; ``choose`` reads what was picked or typed)."""

from __future__ import annotations

import html
import io
import re

import discord
from discord import app_commands

from bot.discord.attachments import download, image_of
from bot.discord.common import (
    MAX_CHOICES,
    MESSAGE_LIMIT,
    acknowledge,
    answer,
    core_of,
    refusal,
    remember,
    say,
)
from bot.frontend import DISCORD
from bot.services import styles
from bot.services.refusals import REFUSALS
from bot.services.styles import StyleChoice

MINE = "mine:"  # autocomplete value of a personal style: mine:<id>


async def choose(interaction: discord.Interaction, value: str) -> StyleChoice:
    """A style from autocomplete (or typed): a personal style ``mine:ID``, a preset, painting ids.
    Raises one of ``REFUSALS`` (an image gone, an unknown painting with suggestions)."""
    core = core_of(interaction)
    if mine := re.fullmatch(rf"{MINE}([0-9]{{1,18}})", value):
        image = await core.style_images.get(interaction.user.id, int(mine[1]), platform=DISCORD)
        return styles.stored_image(image.id, image.name)
    presets = await core.presets.list(interaction.user.id, platform=DISCORD)
    return styles.parse(value, core.catalog, presets)


async def style_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """The user's personal styles and presets, then the catalog; best matches first, at most 25."""
    core = core_of(interaction)
    typed = current.strip().casefold()
    options: list[tuple[str, str]] = []
    for image in await core.style_images.list(interaction.user.id, platform=DISCORD):
        options.append((f"🖼 {image.name}", f"{MINE}{image.id}"))
    for preset in await core.presets.list(interaction.user.id, platform=DISCORD):
        options.append((f"★ {preset.name}", preset.name))
    for painting in core.catalog:
        options.append((f"{painting.title} ({painting.artist})", painting.id))

    def rank(item: tuple[int, tuple[str, str]]) -> tuple[int, int]:
        """A prefix match before a match inside; among equals the user's own styles, then presets, then
        the catalog (the order ``options`` is built in)."""
        position, (name, value) = item
        name, value = name.casefold(), value.casefold()
        if not typed or value.startswith(typed) or name.lstrip("🖼★ ").startswith(typed):
            return 0, position
        if typed in name or typed in value:
            return 1, position
        return 2, position

    ranked = [option for _, option in sorted((i for i in enumerate(options) if rank(i)[0] < 2), key=rank)]
    return [app_commands.Choice(name=name[:100], value=value) for name, value in ranked[:MAX_CHOICES]]


@app_commands.command(name="styles", description="The paintings I can paint in")
async def styles_command(interaction: discord.Interaction) -> None:
    await acknowledge(interaction, interaction.response.defer(ephemeral=True))
    paintings = core_of(interaction).paintings
    lines = [f"`{p.id}`: {p.title}, {p.artist} ({p.year})" for p in paintings.store.catalog]
    sheet = await paintings.overview(platform=DISCORD)
    # Discord uploads the sheet's bytes each time (it records no upload id, so its sheets are always PNG).
    files = []
    if sheet is not None and isinstance(sheet.picture, bytes):
        files.append(discord.File(io.BytesIO(sheet.picture), "styles.png"))
    await interaction.followup.send("\n".join(lines)[:MESSAGE_LIMIT], files=files, ephemeral=True)


@app_commands.context_menu(name="Use as my style")
async def use_as_my_style(interaction: discord.Interaction, message: discord.Message) -> None:
    """Keep the message's picture as one of the user's personal styles (the newest ten are kept)."""
    attachment = image_of(message)
    if attachment is None:
        await answer(interaction, say(interaction, "discord_no_image"))
        return
    await acknowledge(interaction, interaction.response.defer(ephemeral=True))
    await remember(interaction)
    core = core_of(interaction)
    name = attachment.filename.rsplit(".", 1)[0]
    try:
        data = await download(interaction, attachment)
        image = await core.style_images.add(interaction.user.id, name, data, platform=DISCORD)
    except REFUSALS as err:
        await answer(interaction, refusal(interaction, err))
        return
    await answer(interaction, say(interaction, "discord_style_saved", name=html.escape(image.name)))

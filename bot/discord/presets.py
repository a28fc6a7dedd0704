"""Presets on Discord: ``/preset save|use|list|delete`` (a user's named styles with their settings) and
``/preset guild`` (the server's default style). The rules (names, limits, what can be saved, who may set
a server's default) are ``PresetService``'s."""

from __future__ import annotations

import html

import discord
from discord import app_commands

from bot.discord.attachments import precheck
from bot.discord.common import acknowledge, answer, core_of, fitting, lang, refusal, refuse, remember, say
from bot.discord.jobs import start_job
from bot.discord.styles import choose, style_choices
from bot.frontend import DISCORD
from bot.services import styles
from bot.services.refusals import REFUSALS, NotManagerError
from bot.texts import text

preset = app_commands.Group(name="preset", description="Save and use your styles")


@preset.command(name="save", description="Save a style (and your current settings) under a name")
@app_commands.autocomplete(style=style_choices)
async def preset_save(interaction: discord.Interaction, name: str, style: str | None = None) -> None:
    """``style`` named, else the style of the user's latest job."""
    await acknowledge(interaction, interaction.response.defer(ephemeral=True))
    await remember(interaction)
    core = core_of(interaction)
    try:
        core.presets.check_name(name)  # before anything else is asked of the user
        choice = await choose(interaction, style) if style else None
        record = await core.presets.save_style(interaction.user.id, name, choice, platform=DISCORD)
    except REFUSALS as err:
        await answer(interaction, refusal(interaction, err))
        return
    label = core.presets.label(record.styles, text(lang(interaction), "preset_own_image"))
    await answer(
        interaction, say(interaction, "preset_saved", name=html.escape(name), style=html.escape(label))
    )


@preset.command(name="use", description="Paint a picture with one of your presets")
async def preset_use(interaction: discord.Interaction, name: str, image: discord.Attachment) -> None:
    try:
        precheck(interaction, image)
        record = await core_of(interaction).presets.get(interaction.user.id, name, platform=DISCORD)
    except REFUSALS as err:
        await refuse(interaction, refusal(interaction, err))
        return
    await start_job(interaction, image, styles.from_preset(record))


@preset.command(name="list", description="Your presets")
async def preset_list(interaction: discord.Interaction) -> None:
    core = core_of(interaction)
    records = await core.presets.list(interaction.user.id, platform=DISCORD)
    if not records:
        await answer(interaction, say(interaction, "preset_list_empty"))
        return
    own = text(lang(interaction), "preset_own_image")
    lines = [  # HTML as every text (names escaped); ``say`` makes it Markdown, showing each name as typed
        f"• <code>{html.escape(r.name)}</code>: {html.escape(core.presets.label(r.styles, own))}"
        for r in records
    ]
    for part in fitting(say(interaction, "preset_list", lines="\n".join(lines))):
        await answer(interaction, part)


@preset.command(name="delete", description="Delete one of your presets")
async def preset_delete(interaction: discord.Interaction, name: str) -> None:
    try:
        await core_of(interaction).presets.delete(interaction.user.id, name, platform=DISCORD)
    except REFUSALS as err:
        await answer(interaction, refusal(interaction, err))
        return
    await answer(interaction, say(interaction, "preset_deleted", name=html.escape(name)))


@preset.command(name="guild", description="The server's default style (members with Manage Server)")
@app_commands.describe(name="one of your presets, or off")
async def preset_guild(interaction: discord.Interaction, name: str) -> None:
    if interaction.guild_id is None:
        await answer(interaction, say(interaction, "discord_guild_only"))
        return

    async def manages() -> bool:
        return interaction.permissions.manage_guild

    core = core_of(interaction)
    try:
        record = await core.presets.set_group_default(
            interaction.guild_id, name, interaction.user.id, platform=DISCORD, manages=manages
        )
    except NotManagerError:
        await answer(interaction, say(interaction, "discord_guild_admins_only"))
        return
    except REFUSALS as err:
        await answer(interaction, refusal(interaction, err))
        return
    if record is None:
        await answer(interaction, say(interaction, "preset_chat_cleared"))
        return
    label = core.presets.label(record.styles, text(lang(interaction), "preset_own_image"))
    await answer(interaction, say(interaction, "preset_chat_set", style=html.escape(label)))

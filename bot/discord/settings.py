"""``/settings`` on Discord: an ephemeral panel of menus (quality, strength, colours) and toggles (live
preview, sketch first). What a choice means and how it is kept is ``UserService.change``'s."""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot import replies
from bot.discord.common import StylebotView, acknowledge, answer, core_of, lang, refusal, remember
from bot.discord.failures import FAILURES, describe
from bot.discord.markdown import markdown
from bot.frontend import DISCORD
from bot.services.preferences import COLOR_CHOICES, STRENGTHS, Preferences
from bot.services.refusals import Refused
from bot.texts import text
from engine.protocol import QUALITIES

log = logging.getLogger(__name__)


def settings_view(
    language: str, owner: int, prefs: Preferences, *, sketches: bool = True
) -> tuple[str, discord.ui.View]:
    """The panel's text and its items; ``sketches``: whether the operator offers the sketch at all
    (``SKETCH_PREVIEW``; without it the toggle would change nothing)."""
    body = replies.settings_summary(language, prefs, sketches=sketches)
    view = SettingsView(owner)

    def select(key: str, values: list[tuple[str, str]], current: str) -> discord.ui.Select:
        options = [
            discord.SelectOption(label=label[:100], value=v, default=v == current) for v, label in values
        ]
        item: discord.ui.Select = discord.ui.Select(custom_id=f"set:{key}", options=options)

        async def chosen(interaction: discord.Interaction) -> None:
            await view.change(interaction, key, item.values[0])

        item.callback = chosen  # type: ignore[method-assign]  # discord.py's way for a built item
        return item

    def toggle(key: str, label: str, on: bool) -> discord.ui.Button:
        state = text(language, "preview_on" if on else "preview_off")
        item: discord.ui.Button = discord.ui.Button(
            label=f"{text(language, label)}: {state}",
            custom_id=f"set:{key}",
            style=discord.ButtonStyle.success if on else discord.ButtonStyle.secondary,
        )

        async def pressed(interaction: discord.Interaction) -> None:
            await view.change(interaction, key, "off" if on else "on")

        item.callback = pressed  # type: ignore[method-assign]  # discord.py's way for a built item
        return item

    qualities = [(q, text(language, f"quality_{q}")) for q in QUALITIES]
    view.add_item(select("quality", qualities, prefs.quality or "normal"))
    strengths = [(s, text(language, f"strength_{s}")) for s in STRENGTHS]
    view.add_item(select("strength", strengths, prefs.strength_name()))
    colors = [(c, replies.color_choice(language, c)) for c in COLOR_CHOICES]
    view.add_item(select("preserve_colors", colors, prefs.preserve_colors or "none"))
    view.add_item(toggle("live_preview", "settings_preview", prefs.live_preview))
    if sketches:
        view.add_item(toggle("sketch", "settings_sketch", prefs.sketch))
    return markdown(body), view


class SettingsView(StylebotView):
    """The ephemeral /settings panel (only its owner sees it); each item says which setting it changes
    to what (``UserService.change``'s names: a quality, a strength's name, a colour mode, on/off)."""

    def __init__(self, owner: int) -> None:
        super().__init__(timeout=600)
        self.owner = owner

    async def change(self, interaction: discord.Interaction, key: str, value: str) -> None:
        core = core_of(interaction)
        try:
            prefs, _ = await core.users.change(self.owner, key, value, platform=DISCORD)
        except Refused as err:
            await answer(interaction, refusal(interaction, err))
            return
        sketches = core.settings.sketch_preview
        body, view = settings_view(lang(interaction), self.owner, prefs, sketches=sketches)
        try:
            await interaction.response.edit_message(content=body, view=view)
        except FAILURES as err:  # saved: only the panel shows the old value (pressing again is harmless)
            log.warning(
                "discord user %d: %s saved, but the settings panel could not be refreshed: %s",
                self.owner,
                key,
                describe(err),
            )


@app_commands.command(name="settings", description="Quality, strength, colours, live preview, sketch first")
async def settings_command(interaction: discord.Interaction) -> None:
    await remember(interaction)
    core = core_of(interaction)
    prefs = await core.users.preferences(interaction.user.id, platform=DISCORD)
    sketches = core.settings.sketch_preview
    body, view = settings_view(lang(interaction), interaction.user.id, prefs, sketches=sketches)
    await acknowledge(interaction, interaction.response.send_message(body, view=view, ephemeral=True))

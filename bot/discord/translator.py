"""Discord's command names and descriptions in the user's language, from the same texts as the replies.

discord.py wraps every command's name, description, parameter and choice in ``locale_str`` and asks the
tree's translator for each locale when it syncs; Discord then shows a Russian client the Russian names.
The code keeps its English strings (Discord dispatches by them); ``bot/texts`` holds the translations under
keys built from where the string sits (``discord.command.preset save.name``), and en.toml repeats the
English so that a Russian text is offered only while it still translates what the code says.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.app_commands import TranslationContextLocation as Where

from bot.texts import DEFAULT_LANGUAGE, Template, catalog, language_for

log = logging.getLogger(__name__)


def text_key(context: app_commands.TranslationContextTypes) -> str | None:
    """The key in ``bot/texts`` of the string at ``context``; None where the texts hold nothing."""
    data = context.data
    if isinstance(data, app_commands.ContextMenu):
        return f"discord.menu.{data.name}"
    if isinstance(data, app_commands.Command | app_commands.Group):
        field = "name" if context.location in (Where.command_name, Where.group_name) else "description"
        return f"discord.command.{data.qualified_name}.{field}"
    if isinstance(data, app_commands.Parameter):
        field = "name" if context.location is Where.parameter_name else "description"
        return f"discord.option.{data.command.qualified_name}.{data.name}.{field}"
    if isinstance(data, app_commands.Choice):
        return f"discord.choice.{data.name}"
    return None


class TextsTranslator(app_commands.Translator):
    """Russian for Discord's ``ru`` locale; None (the code's English) for every other locale."""

    async def translate(
        self,
        string: app_commands.locale_str,
        locale: discord.Locale,
        context: app_commands.TranslationContextTypes,
    ) -> str | None:
        language = language_for(locale.value)
        if language == DEFAULT_LANGUAGE:
            return None
        key = text_key(context)
        if key is None:
            return None
        english: Template | None = catalog(DEFAULT_LANGUAGE).get(key)
        if english != string.message:
            if english is not None:
                log.warning("texts: %s says %r, the code %r; left in English", key, english, string.message)
            return None
        translated = catalog(language).get(key)
        return translated if isinstance(translated, str) else None

"""Discord's command names and descriptions: Russian for ``ru`` from bot/texts, the code's English for every
other locale, and every Russian name one Discord accepts."""

from __future__ import annotations

import importlib
import pkgutil
import unicodedata
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.app_commands import TranslationContext
from discord.app_commands import TranslationContextLocation as Where

import bot.discord
from bot.discord.translator import TextsTranslator, text_key
from bot.texts import catalog
from tests.bot.discord.conftest import discord_bot

AnyCommand = app_commands.Command[Any, ..., Any] | app_commands.Group | app_commands.ContextMenu
CHAT_INPUT, SUBCOMMAND, SUBCOMMAND_GROUP = 1, 1, 2
NO_DESCRIPTION = "…"  # discord.py's description of a parameter the code does not describe


def valid_name(name: str) -> bool:
    """Discord's rule for slash command, subcommand and option names: ^[-_\\p{L}\\p{N}]{1,32}$, lowercase."""
    allowed = all(c in "-_" or unicodedata.category(c)[0] in "LN" for c in name)
    return 1 <= len(name) <= 32 and allowed and name == name.lower()


def all_commands() -> list[AnyCommand]:
    """Every top-level command and context menu defined in a module of bot/discord, whatever the layout."""
    found: dict[int, AnyCommand] = {}
    for module in pkgutil.walk_packages(bot.discord.__path__, "bot.discord."):
        for value in vars(importlib.import_module(module.name)).values():
            command = isinstance(value, app_commands.Command | app_commands.Group | app_commands.ContextMenu)
            if command and getattr(value, "parent", None) is None:
                found[id(value)] = value
    return list(found.values())


class Recording(TextsTranslator):
    """Also notes every key it was asked for (but not for the description a parameter lacks)."""

    def __init__(self) -> None:
        self.keys: set[str] = set()

    async def translate(
        self, string: app_commands.locale_str, locale: discord.Locale, context: Any
    ) -> str | None:
        key = text_key(context)
        if key is not None and string.message != NO_DESCRIPTION:
            self.keys.add(key)
        return await super().translate(string, locale, context)


async def payloads(translator: app_commands.Translator) -> list[dict[str, Any]]:
    """What ``tree.sync()`` would send Discord for every command, through ``translator``."""
    tree = app_commands.CommandTree(discord.Client(intents=discord.Intents.none()))
    return [await command.get_translated_payload(tree, translator) for command in all_commands()]


def russian(item: dict[str, Any], field: str) -> str:
    localized = item.get(f"{field}_localizations") or {}
    assert set(localized) == {"ru"}, (item["name"], field, localized)  # no other locale gets a translation
    return localized["ru"]


def check_options(command: str, options: list[dict[str, Any]]) -> None:
    names = []
    for option in options:
        name = russian(option, "name")
        assert valid_name(name), (command, name)
        names.append(name)
        if option["description"] != NO_DESCRIPTION:
            assert 1 <= len(russian(option, "description")) <= 100, (command, option["name"])
        for choice in option.get("choices", []):
            assert 1 <= len(russian(choice, "name")) <= 100, (command, choice["name"])
        if option["type"] in (SUBCOMMAND, SUBCOMMAND_GROUP) and "choices" not in option:
            check_options(f"{command} {option['name']}", option.get("options", []))
    assert len(set(names)) == len(names), (command, names)


async def test_every_command_has_a_valid_russian_name_and_description() -> None:
    commands = await payloads(TextsTranslator())
    assert {"paint", "preset", "settings"} <= {c["name"] for c in commands}, "the walk found no commands"
    slash_names = []
    for command in commands:
        name = russian(command, "name")
        if command.get("type", CHAT_INPUT) == CHAT_INPUT:
            assert valid_name(name), name
            assert 1 <= len(russian(command, "description")) <= 100, command["name"]
            check_options(command["name"], command.get("options", []))
            slash_names.append(name)
        else:  # a context menu: any case and spaces
            assert 1 <= len(name) <= 32, name
    assert len(set(slash_names)) == len(slash_names), slash_names


async def test_every_discord_text_belongs_to_a_command() -> None:
    """A key left over from a renamed command (or a command with none) shows up here."""
    recording = Recording()
    await payloads(recording)
    written = {key for key in catalog("en") if key.startswith("discord.")}
    assert written == recording.keys, (written - recording.keys, recording.keys - written)


@app_commands.command(name="paint", description="Paint a picture in the style of a painting")
@app_commands.describe(image="the picture to paint")
async def paint(interaction: discord.Interaction, image: discord.Attachment) -> None:
    """A stand-in with the real /paint's name, description and first parameter."""


@app_commands.command(name="paint", description="Paint something new")
async def reworded(interaction: discord.Interaction) -> None:
    """/paint after someone changed its English description in the code but not in the texts."""


def at(where: Any, data: Any) -> Any:
    """A translation context as discord.py builds one (its overloads want literal locations)."""
    context: Any = TranslationContext(where, data)
    return context


async def translate(message: str, locale: discord.Locale, context: Any) -> str | None:
    return await TextsTranslator().translate(app_commands.locale_str(message), locale, context)


async def test_russian_for_ru() -> None:
    name = at(Where.command_name, paint)
    assert await translate("paint", discord.Locale.russian, name) == "нарисовать"
    description = at(Where.command_description, paint)
    assert await translate(paint.description, discord.Locale.russian, description) == (
        "Нарисовать картинку в стиле картины"
    )
    image = at(Where.parameter_name, paint.parameters[0])
    assert await translate("image", discord.Locale.russian, image) == "картинка"


@pytest.mark.parametrize(
    "locale",
    [
        discord.Locale.american_english,
        discord.Locale.british_english,
        discord.Locale.german,
        discord.Locale.ukrainian,
    ],
)
async def test_none_that_is_english_for_every_other_locale(locale: discord.Locale) -> None:
    assert await translate("paint", locale, at(Where.command_name, paint)) is None


async def test_english_changed_in_the_code_stays_english_rather_than_a_stale_translation() -> None:
    description = at(Where.command_description, reworded)
    assert await translate(reworded.description, discord.Locale.russian, description) is None
    name = at(Where.command_name, reworded)
    assert await translate("paint", discord.Locale.russian, name) == "нарисовать"


async def test_a_string_the_texts_do_not_hold_stays_english() -> None:
    other = at(Where.other, None)
    assert await translate("paint", discord.Locale.russian, other) is None


async def test_the_bot_registers_its_commands_with_russian_names(discord_settings: Any) -> None:
    """The client sets the translator before it syncs: Discord receives the Russian names."""
    async with discord_bot(discord_settings()) as (env, _core):
        registered = {c["name"]: c for c in env.backend.commands[None].values()}
        assert registered["paint"]["name_localizations"] == {"ru": "нарисовать"}
        assert registered["paint"]["description_localizations"]["ru"] == "Нарисовать картинку в стиле картины"
        assert registered["Paint this"]["name_localizations"] == {"ru": "Нарисовать это"}

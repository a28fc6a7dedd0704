"""The discord.py client over the shared core: the commands of every feature module, the job buttons,
start-up and shutdown.

``running(settings, core)`` logs in (after pointing discord.py at ``DISCORD_API_URL`` and
``DISCORD_GATEWAY_URL``), connects in the background, syncs the commands and adds the Discord front end to
the notifier. No privileged intents: the bot reads only interactions, never message content.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import discord
import yarl
from discord import app_commands

from bot.config import Settings
from bot.context import Services
from bot.discord.common import refuse, say
from bot.discord.figures import AgainButton, FigureButton, forming_command, layers_command, strip_command
from bot.discord.frontend import DiscordFrontend
from bot.discord.paint import paint, paint_this, surprise_command
from bot.discord.presets import preset
from bot.discord.queue import CancelButton, cancel_command, queue_command
from bot.discord.settings import settings_command
from bot.discord.sketch import KeepButton
from bot.discord.styles import styles_command, use_as_my_style
from bot.discord.translator import TextsTranslator
from bot.redaction import protect

log = logging.getLogger(__name__)

COMMANDS: tuple[app_commands.Command | app_commands.Group | app_commands.ContextMenu, ...] = (
    paint,
    strip_command,
    layers_command,
    forming_command,
    surprise_command,
    styles_command,
    preset,
    settings_command,
    queue_command,
    cancel_command,
    paint_this,
    use_as_my_style,
)


def use_endpoints(settings: Settings) -> None:
    """discord.py reads both from class attributes; set them before login, in every process."""
    discord.http.Route.BASE = settings.discord_api_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url + "/")


class StylebotTree(app_commands.CommandTree):
    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """An unexpected error: logged with the user, an ephemeral apology with a reference."""
        import secrets

        reference = secrets.token_hex(4).upper()
        log.error(
            "unexpected error (ref %s) for discord user %s", reference, interaction.user.id, exc_info=error
        )
        with contextlib.suppress(discord.HTTPException):
            await refuse(interaction, say(interaction, "apology", ref=reference))  # ephemeral, even deferred


class StylebotClient(discord.Client):
    def __init__(self, settings: Settings, core: Services) -> None:
        super().__init__(intents=discord.Intents.default())  # no privileged intents
        self.settings = settings
        self.core = core
        self.tree = StylebotTree(self)
        for command in COMMANDS:
            self.tree.add_command(command)
        self.frontend = DiscordFrontend(self, interval=settings.discord_status_interval)

    async def setup_hook(self) -> None:
        # The buttons of jobs from before a restart work too: each carries its job in its custom id.
        self.add_dynamic_items(CancelButton, KeepButton, AgainButton, FigureButton)
        await self.tree.set_translator(TextsTranslator())  # Russian command names for Russian clients
        await self.tree.sync()
        self.core.notifier.frontends[DiscordFrontend.platform] = self.frontend

    async def on_ready(self) -> None:
        log.info("Discord front end is up as %s", self.user)


def build_client(settings: Settings, core: Services) -> StylebotClient:
    token = settings.discord_bot_token
    if token is None:
        raise ValueError("DISCORD_BOT_TOKEN is not set")
    protect(token.get_secret_value())
    use_endpoints(settings)
    return StylebotClient(settings, core)


@contextlib.asynccontextmanager
async def running(settings: Settings, core: Services) -> AsyncIterator[StylebotClient]:
    """The client logged in and connected (in the background) for as long as the block runs."""
    client = build_client(settings, core)
    assert settings.discord_bot_token is not None
    await client.login(settings.discord_bot_token.get_secret_value())
    connection = asyncio.create_task(client.connect(), name="discord-gateway")
    try:
        yield client
    finally:
        await client.close()
        connection.cancel()
        await asyncio.gather(connection, return_exceptions=True)

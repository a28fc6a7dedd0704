"""The discord.py client over the shared core: the commands of every feature module, the job buttons,
start-up and shutdown.

``running(settings, core)`` logs in (after pointing discord.py at ``DISCORD_API_URL`` and
``DISCORD_GATEWAY_URL``), syncs the commands when their definition changed (``bot.discord.sync``), adds the
Discord front end to the notifier and connects in the background. No privileged intents: the bot reads only
interactions, never message content.

The client is sharded (``discord.AutoShardedClient``): Discord closes an unsharded connection once the bot
is in 2,500 servers. ``DISCORD_SHARD_COUNT`` fixes the count; unset, it is Discord's recommendation, asked
at start-up; the shards are logged and in ``/metrics`` (``GatewayMetrics``). Every message pings no one
unless it says so (``AllowedMentions.none()``; a result pings its owner). ``sync_commands`` is
``python -m bot sync-commands``: REST only, an upload whether or not the definition changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import discord
import yarl
from discord import app_commands
from prometheus_client import Gauge

from bot.config import Settings
from bot.context import Services
from bot.discord.admin import DeleteButton, admin, switch
from bot.discord.clips import clip_command
from bot.discord.common import report
from bot.discord.failures import FAILURES, describe, is_passing, worth_retrying
from bot.discord.figures import AgainButton, FigureButton, forming_command, layers_command, strip_command
from bot.discord.frontend import DiscordFrontend
from bot.discord.paint import paint, paint_this, surprise_command
from bot.discord.presets import preset
from bot.discord.queue import CancelButton, cancel_command, queue_command
from bot.discord.settings import settings_command
from bot.discord.sketch import KeepButton
from bot.discord.styles import styles_command, use_as_my_style
from bot.discord.sync import CommandSync
from bot.discord.translator import TextsTranslator
from bot.health import Metrics
from bot.redaction import protect
from bot.retrying import retried

log = logging.getLogger(__name__)

COMMANDS: tuple[app_commands.Command | app_commands.Group | app_commands.ContextMenu, ...] = (
    paint,
    clip_command,
    strip_command,
    layers_command,
    forming_command,
    surprise_command,
    styles_command,
    preset,
    settings_command,
    queue_command,
    cancel_command,
    admin,
    switch,
    paint_this,
    use_as_my_style,
)


def use_endpoints(settings: Settings) -> None:
    """discord.py reads both from class attributes; set them before login, in every process."""
    discord.http.Route.BASE = settings.discord_api_url
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url + "/")


class StylebotTree(app_commands.CommandTree):
    async def on_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        """A command that raised: ``common.report`` (a WARNING when Discord failed it, a traceback for a
        bug, an apology with a reference either way)."""
        await report(interaction, error)


def command_tree(client: discord.Client) -> StylebotTree:
    """The tree of every command, as the bot and ``sync-commands`` both upload it."""
    tree = StylebotTree(client)
    for command in COMMANDS:
        tree.add_command(command)
    return tree


def command_sync(tree: app_commands.CommandTree, settings: Settings) -> CommandSync:
    return CommandSync(tree, settings.data_dir, settings.discord_dev_guild)


class StylebotClient(discord.AutoShardedClient):
    def __init__(self, settings: Settings, core: Services) -> None:
        super().__init__(
            intents=discord.Intents.default(),  # no privileged intents
            shard_count=settings.discord_shard_count,  # None: Discord's recommendation (``running``)
            allowed_mentions=discord.AllowedMentions.none(),  # a message that pings says whom
        )
        self.settings = settings
        self.core = core
        self.tree = command_tree(self)
        self.commands = command_sync(self.tree, settings)
        self.gateway = GatewayMetrics(core.metrics)
        self.frontend = DiscordFrontend(self, interval=settings.discord_status_interval)

    async def setup_hook(self) -> None:
        # The buttons of jobs from before a restart work too: each carries its job in its custom id.
        self.add_dynamic_items(CancelButton, KeepButton, AgainButton, FigureButton, DeleteButton)
        await self.tree.set_translator(TextsTranslator())  # Russian command names for Russian clients
        try:  # best effort: the commands synced before still work, and the bot must not stay down for it
            await retried(self.commands.sync, passing=worth_retrying, describe=describe, what="commands sync")
        except FAILURES as err:
            log.log(
                logging.WARNING if is_passing(err) else logging.ERROR,  # a refusal is the bot's to fix
                "Discord commands not synced (%s): the ones synced before stay; next start retries",
                describe(err),
            )
        self.core.notifier.frontends[DiscordFrontend.platform] = self.frontend

    async def on_shard_ready(self, shard_id: int) -> None:
        log.info("Discord shard %d of %s is ready", shard_id, self.shard_count)
        self.gateway.up(shard_id, self.shard_count)

    async def on_shard_resumed(self, shard_id: int) -> None:
        self.gateway.up(shard_id, self.shard_count)

    async def on_shard_disconnect(self, shard_id: int) -> None:
        log.info("Discord shard %d disconnected; discord.py reconnects it", shard_id)
        self.gateway.down(shard_id)

    async def on_ready(self) -> None:
        shards = ", ".join(str(shard) for shard in sorted(self.shards))
        log.info("Discord front end is up as %s: shards %s of %s", self.user, shards, self.shard_count)


class GatewayMetrics:
    """The shards in ``/metrics``: ``stylebot_discord_shards`` (the count) and, per shard id,
    ``stylebot_discord_shard_connected`` (1 while its connection is up). Registered in the core's registry
    by the Discord client itself, since only it knows its shards."""

    def __init__(self, metrics: Metrics) -> None:
        self.count = Gauge("stylebot_discord_shards", "Discord gateway shards", registry=metrics.registry)
        self.connected = Gauge(
            "stylebot_discord_shard_connected",
            "1 while the Discord gateway shard is connected",
            ["shard"],
            registry=metrics.registry,
        )

    def up(self, shard_id: int, count: int | None) -> None:
        self.count.set(count or 0)
        self.connected.labels(shard=str(shard_id)).set(1)

    def down(self, shard_id: int) -> None:
        self.connected.labels(shard=str(shard_id)).set(0)


class CommandsClient(discord.Client):
    """``python -m bot sync-commands``: logs in over REST, uploads the commands whether or not their
    definition changed (a server's commands put right by hand, a lost hash), and never opens the gateway."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(intents=discord.Intents.none())
        self.tree = command_tree(self)
        self.commands = command_sync(self.tree, settings)

    async def setup_hook(self) -> None:  # run by login
        await self.tree.set_translator(TextsTranslator())
        await self.commands.sync(force=True)


def _token(settings: Settings) -> str:
    """The bot token, registered with the log filter before anything could log it."""
    token = settings.discord_bot_token
    if token is None:
        raise ValueError("DISCORD_BOT_TOKEN is not set")
    protect(token.get_secret_value())
    use_endpoints(settings)
    return token.get_secret_value()


def build_client(settings: Settings, core: Services) -> StylebotClient:
    _token(settings)
    return StylebotClient(settings, core)


class GatewayEnded(RuntimeError):
    """Discord closed the gateway for good (4004 authentication failed, 4014 disallowed intents, ...):
    discord.py reconnects after everything else, so the process should end, not stay up and deaf."""


@contextlib.asynccontextmanager
async def running(
    settings: Settings, core: Services, *, stop: asyncio.Event | None = None
) -> AsyncIterator[StylebotClient]:
    """The client logged in and connected (in the background) for as long as the block runs. A connection
    that ends by itself, with an error, is logged once, sets ``stop`` and raises ``GatewayEnded`` on the
    way out (``python -m bot`` then exits non-zero, so that compose or systemd notice)."""
    token = _token(settings)
    client = StylebotClient(settings, core)
    try:
        await client.login(token)
        if client.shard_count is None:
            # Asked here rather than by connect(), which would then use the gateway address in Discord's
            # answer and not DISCORD_GATEWAY_URL.
            client.shard_count, _, _ = await client.http.get_bot_gateway()
            log.info("Discord recommends %d shard(s)", client.shard_count)
    except BaseException:
        await client.close()  # its HTTP session, before the start fails
        raise
    ended: list[BaseException] = []  # what ended the connection by itself, if anything did
    closing = asyncio.Event()

    def connection_ended(task: asyncio.Task[None]) -> None:
        failure = None if task.cancelled() else task.exception()
        if failure is None or closing.is_set():  # closed by us, or ended cleanly
            return
        ended.append(failure)
        log.error(
            "Discord closed the gateway for good (%s): the bot cannot hear Discord; stopping", _why(failure)
        )
        if stop is not None:
            stop.set()

    connection = asyncio.create_task(client.connect(), name="discord-gateway")
    connection.add_done_callback(connection_ended)
    try:
        yield client
    finally:
        closing.set()
        await client.close()
        connection.cancel()
        await asyncio.gather(connection, return_exceptions=True)
    if ended:
        raise GatewayEnded(_why(ended[0])) from ended[0]


def _why(failure: BaseException) -> str:
    """A gateway failure in words: its close code when it has one (``ConnectionClosed``)."""
    code = getattr(failure, "code", None)
    return (
        f"{type(failure).__name__}, close code {code}: {failure}"
        if code
        else f"{type(failure).__name__}: {failure}"
    )


async def sync_commands(settings: Settings) -> int:
    """``python -m bot sync-commands``; the exit status (1: Discord refused the login or the commands)."""
    try:
        token = _token(settings)
    except ValueError as err:
        raise SystemExit(f"Stylebot cannot sync the commands: {err}") from None
    client = CommandsClient(settings)
    try:
        async with client:
            await client.login(token)
    except (discord.HTTPException, discord.LoginFailure) as err:
        log.error("Discord commands not synced: %s", err)
        return 1
    return 0

"""Discord at scale (issue 20): shards, commands uploaded only when their definition changed (and
``sync-commands`` to force it), a client that pings no one unless a message says so, and names people give
shown as typed."""

from __future__ import annotations

import asyncio
import html
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import discord
import pytest
import simcord
from discord import app_commands

import bot.__main__ as entry
from bot import retrying
from bot.config import load_settings
from bot.discord import app, translator
from bot.discord.app import CommandsClient, running
from bot.discord.markdown import markdown, shown
from bot.discord.sync import STATE_FILE, CommandSync
from bot.health import Metrics
from tests.bot.discord.conftest import art_channel, discord_bot, discord_world, requests, results_for, until
from tests.fakes import images
from tests.fakes.discord_faults import DiscordFaults

PHOTO = images.pattern(64, 48)
LOUD = "**@everyone** _x_"  # a style image's file name: Markdown and a mention
SHOWN = "\\*\\*@\u200beveryone\\*\\* \\_x\\_"  # as the bot writes it: escaped, the mention broken
DEV_GUILD = 1_200_000_000_000_000_000


def uploads(env: simcord.Env, fragment: str = "/commands") -> list[Any]:
    """The bot's uploads of its commands (PUT /applications/<app>/[guilds/<id>/]commands)."""
    return [r for r in requests(env, "PUT", "/applications/") if r.path.endswith(fragment)]


def answered(result: Any) -> str:
    """What an interaction's answer says, its followups included."""
    return result.response.content + "".join(f.content for f in result.followups)


@app_commands.command(name="ping", description="Is the bot there")
async def ping(interaction: discord.Interaction) -> None:
    await interaction.response.send_message("pong", ephemeral=True)


async def test_commands_are_uploaded_once_then_only_when_their_definition_changes(
    discord_settings, monkeypatch, caplog
) -> None:
    caplog.set_level(logging.INFO, logger="bot.discord.sync")
    settings = discord_settings()
    async with discord_world(settings) as bot:
        env = bot.env
        application = env.backend.application_id
        [first] = uploads(env)
        assert first.path == f"/applications/{application}/commands"
        sent = {command["name"]: command for command in first.json}
        assert {"paint", "preset", "queue", "Paint this", "Use as my style"} <= sent.keys()
        assert sent["queue"]["name_localizations"]["ru"] == "очередь"  # the hash covers these too
        kept = json.loads((settings.data_dir / STATE_FILE).read_text())
        assert list(kept) == [f"{application} global"]

        await bot.restart()  # a redeploy with the same commands
        assert len(uploads(env)) == 1
        assert "Discord commands unchanged (global" in caplog.text
        _, channel, alice = art_channel(env)
        answer = await alice.slash(channel, "queue")  # the commands of the last upload still answer
        assert answer.ephemeral

        monkeypatch.setattr(app, "COMMANDS", (*app.COMMANDS, ping))  # a new command
        await bot.restart()
        assert len(uploads(env)) == 2
        assert "ping" in {command["name"] for command in uploads(env)[-1].json}
        assert (await alice.slash(channel, "ping")).response.content == "pong"

        real = translator.catalog

        def retranslated(language: str) -> dict[str, Any]:
            texts = real(language)
            if language == "ru":
                return {**texts, "discord.command.queue.description": "Где сейчас ваши картинки"}
            return texts

        monkeypatch.setattr(translator, "catalog", retranslated)  # only a translation changed
        await bot.restart()
        assert len(uploads(env)) == 3
        queue = next(c for c in uploads(env)[-1].json if c["name"] == "queue")
        assert queue["description_localizations"]["ru"] == "Где сейчас ваши картинки"

        await bot.restart()  # and unchanged again
        assert len(uploads(env)) == 3


async def test_a_refused_upload_leaves_the_bot_up_and_is_tried_at_the_next_start(
    discord_settings, caplog
) -> None:
    settings = discord_settings()
    async with discord_world(settings) as bot:
        env = bot.env
        assert len(uploads(env)) == 1
        (settings.data_dir / STATE_FILE).write_text("{not json")  # lost: as if never uploaded
        env.inject_error(
            "PUT", "/applications/*/commands", status=400, code=50035, message="Invalid Form Body"
        )
        await bot.restart()
        assert len(uploads(env)) == 2  # a refusal is not tried again
        assert "Discord commands not synced" in caplog.text
        assert "{not json" in (settings.data_dir / STATE_FILE).read_text()  # no hash of a failed upload
        _, channel, alice = art_channel(env)
        assert (await alice.slash(channel, "queue")).ephemeral  # up, with the commands uploaded before

        await bot.restart()
        assert len(uploads(env)) == 3
        assert json.loads((settings.data_dir / STATE_FILE).read_text())


async def test_a_dev_guild_gets_the_commands_and_the_global_ones_are_left_alone(discord_settings) -> None:
    settings = discord_settings(discord_dev_guild=DEV_GUILD)
    async with discord_world(settings) as bot:
        env = bot.env
        application = env.backend.application_id
        [upload] = uploads(env)
        assert upload.path == f"/applications/{application}/guilds/{DEV_GUILD}/commands"
        assert {"paint", "queue", "Paint this"} <= {command["name"] for command in upload.json}
        assert not env.backend.commands.get(None)  # nothing global
        kept = json.loads((settings.data_dir / STATE_FILE).read_text())
        assert list(kept) == [f"{application} guild {DEV_GUILD}"]

        guild = env.create_guild(id=DEV_GUILD)
        channel = guild.create_text_channel("dev")
        alice = guild.add_member(env.create_user("alice"))
        assert (await alice.slash(channel, "queue")).ephemeral

        await bot.restart()
        assert len(uploads(env)) == 1  # unchanged in that scope too


async def test_sync_commands_uploads_even_an_unchanged_definition(discord_settings, caplog) -> None:
    caplog.set_level(logging.INFO, logger="bot.discord.sync")
    settings = discord_settings()
    async with discord_world(settings) as bot:  # the bot uploaded and kept the hash
        assert len(uploads(bot.env)) == 1
    kept = (settings.data_dir / STATE_FILE).read_text()
    client = CommandsClient(settings)  # what ``python -m bot sync-commands`` logs in with
    async with simcord.run(client) as env:
        [upload] = uploads(env)
        assert "paint" in {command["name"] for command in upload.json}
        assert not client.intents.value  # no gateway events wanted: it only uploads
    assert (settings.data_dir / STATE_FILE).read_text() == kept  # the same definition, the same hash
    assert "Discord commands synced (global" in caplog.text


async def test_two_shards_each_carry_their_servers(discord_settings, caplog) -> None:
    caplog.set_level(logging.INFO, logger="bot.discord.app")
    async with discord_world(discord_settings(discord_shard_count=2)) as bot:
        env = bot.env
        client = env.bot
        assert isinstance(client, discord.AutoShardedClient)
        assert client.shard_count == 2
        assert sorted(client.shards) == [0, 1]
        assert "Discord shard 1 of 2 is ready" in caplog.text
        assert "shards 0, 1 of 2" in caplog.text
        metrics = bot.core.metrics.render().decode()
        assert "stylebot_discord_shards 2.0" in metrics
        assert 'stylebot_discord_shard_connected{shard="0"} 1.0' in metrics
        assert 'stylebot_discord_shard_connected{shard="1"} 1.0' in metrics
        second = client.get_shard(1)
        assert second is not None
        await second.disconnect()
        await until(env, lambda: 'shard_connected{shard="1"} 0.0' in bot.core.metrics.render().decode())
        await second.reconnect()
        await until(env, lambda: 'shard_connected{shard="1"} 1.0' in bot.core.metrics.render().decode())
        for shard in (0, 1):
            guild = env.create_guild(f"server {shard}", shard_id=shard)
            channel = guild.create_text_channel("art")
            member = guild.add_member(env.create_user(f"painter{shard}"))
            assert client.get_guild(guild.id).shard_id == shard  # type: ignore[union-attr]
            status = await member.slash(channel, "paint", image=("photo.png", PHOTO), style="the_scream")
            assert not status.ephemeral
            delivered = await until(env, lambda: results_for(channel, member))  # noqa: B023
            assert "The Scream" in delivered[0].content


async def test_unset_the_count_is_discords_recommendation_over_the_configured_gateway(
    discord_settings, monkeypatch
) -> None:
    """Asked before connecting, so that the shards open on DISCORD_GATEWAY_URL, not on the address in
    Discord's answer (where AutoShardedClient would go if it asked itself)."""
    seen: dict[str, Any] = {}

    async def login(self: discord.Client, token: str) -> None:
        seen["token"] = token

    async def get_bot_gateway(self: Any) -> tuple[int, str, dict[str, Any]]:
        return 3, "wss://elsewhere.discord.gg", {}

    async def connect(self: discord.AutoShardedClient, *, reconnect: bool = True) -> None:
        seen["shards"] = self.shard_count
        seen["gateway"] = str(discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)

    async def close(self: discord.AutoShardedClient) -> None:
        seen["closed"] = True

    monkeypatch.setattr(discord.Client, "login", login)
    monkeypatch.setattr(discord.AutoShardedClient, "close", close)
    monkeypatch.setattr(discord.http.HTTPClient, "get_bot_gateway", get_bot_gateway)
    monkeypatch.setattr(discord.AutoShardedClient, "connect", connect)
    settings = discord_settings(discord_gateway_url="wss://gateway.proxy.test")

    def core() -> Any:
        """What the client asks of the core before it logs in: a registry for its shards' metrics."""
        return SimpleNamespace(metrics=Metrics())

    async with running(settings, core()) as client:
        await asyncio.sleep(0)  # the connection task starts
    assert client.shard_count == 3
    assert seen == {
        "token": "discord.test.token",
        "shards": 3,
        "gateway": "wss://gateway.proxy.test/",
        "closed": True,
    }

    async with running(discord_settings(discord_shard_count=2), core()) as client:
        await asyncio.sleep(0)
    assert seen["shards"] == 2  # a count set is used as it is, not asked

    async def unavailable(self: Any) -> tuple[int, str, dict[str, Any]]:
        raise discord.GatewayNotFound()

    seen.clear()
    monkeypatch.setattr(discord.http.HTTPClient, "get_bot_gateway", unavailable)
    with pytest.raises(discord.GatewayNotFound):
        async with running(settings, core()):
            raise AssertionError("started without a shard count")
    assert seen == {"token": "discord.test.token", "closed": True}  # closed, never connected


async def test_names_are_shown_as_typed_and_only_the_owner_is_pinged(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, core):
        guild, channel, alice = art_channel(env)
        bob = guild.add_member(env.create_user("bob"))
        art = images.pattern(40, 40, fmt="PNG")
        posted = await bob.send(channel, "mine", attachments=[(f"{LOUD}.png", art)])
        kept = await alice.context_menu(channel, "Use as my style", posted)
        answer = answered(kept)
        [image] = await core.db.list_style_images("discord", alice.id)
        assert image.name == LOUD  # kept as typed; escaped only when shown
        assert "@\u200beveryone" in answer
        assert "@everyone" not in answer

        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style=f"mine:{image.id}")
        [result] = await until(env, lambda: results_for(channel, alice))
        assert SHOWN in result.content
        assert not result.mention_everyone
        assert [user.id for user in result.mentions] == [alice.id]

        saved = await alice.slash(channel, "preset save", name="__loud__", style="the_scream")
        assert "**\\_\\_loud\\_\\_**" in answered(saved)  # bold, not bold and underlined
        listed = await alice.slash(channel, "preset list")
        assert "• `__loud__`: The Scream" in answered(listed)  # a code span shows it as it is

        sent = [r.json for r in env.http_requests if r.method in ("POST", "PATCH")]
        bodies = [body.get("data") or body for body in sent if isinstance(body, dict)]  # responses: in "data"
        contents: list[dict[str, Any]] = [body for body in bodies if body.get("content")]
        assert len(contents) >= 6  # the answers, the status's edits, the result
        for body in contents:
            assert LOUD not in body["content"]
            assert body["allowed_mentions"]["parse"] == [], body  # no @everyone, no roles, no users...
            pinged = {int(user) for user in body["allowed_mentions"].get("users", [])}
            assert pinged <= {alice.id}  # ...but the owner, in the result


SYNC_TOKEN = "test-scale-sync-commands-token"  # registered with the log redaction by ``main``


def cli_environment(monkeypatch, tmp_path: Path, token: str = SYNC_TOKEN) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "")
    monkeypatch.setenv("DISCORD_BOT_TOKEN", token)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))


def test_python_m_bot_sync_commands_logs_in_uploads_regardless_and_exits(monkeypatch, tmp_path: Path) -> None:
    """``main`` runs ``sync_commands``: a REST login (faked here: SimCord needs the test's own loop, the
    upload itself is tested above) whose setup uploads with ``force``; no core, no gateway."""
    cli_environment(monkeypatch, tmp_path)
    seen: list[Any] = []

    async def login(self: discord.Client, token: str) -> None:
        seen.append(token)
        await self.setup_hook()

    async def sync(self: CommandSync, *, force: bool = False) -> bool:
        seen.append(("sync", force, self.scope))
        return True

    async def connect(self: discord.Client, *, reconnect: bool = True) -> None:
        raise AssertionError("sync-commands opened the gateway")

    monkeypatch.setattr(discord.Client, "login", login)
    monkeypatch.setattr(discord.Client, "connect", connect)
    monkeypatch.setattr(CommandSync, "sync", sync)
    assert entry.main(["sync-commands"]) == 0
    assert seen == [SYNC_TOKEN, ("sync", True, "global")]
    assert not (tmp_path / "bot.db").exists()  # no core: the database is not even opened


def test_sync_commands_exits_1_when_discord_refuses(monkeypatch, tmp_path: Path, caplog) -> None:
    cli_environment(monkeypatch, tmp_path)

    async def login(self: discord.Client, token: str) -> None:
        raise discord.LoginFailure("Improper token has been passed.")

    monkeypatch.setattr(discord.Client, "login", login)
    assert entry.main(["sync-commands"]) == 1
    assert "Discord commands not synced: Improper token" in caplog.text


def test_sync_commands_without_a_discord_token_says_so(monkeypatch, tmp_path: Path) -> None:
    cli_environment(monkeypatch, tmp_path, token="")
    with pytest.raises(SystemExit, match="DISCORD_BOT_TOKEN is not set"):
        entry.main(["sync-commands"])


def test_markdown_shows_literal_text_as_typed_and_keeps_the_bots_own_markup() -> None:
    owner = "<@123456789012345678>"  # a mention the bot's code puts in: kept
    typed = html.escape(
        "<@123456789012345678> **@here** a_b _c_"
    )  # what a person typed, escaped as texts take it
    assert markdown(f"{owner} <b>{typed}</b>") == (
        "<@123456789012345678> **<@\u200b123456789012345678> \\*\\*@\u200bhere\\*\\* a_b \\_c\\_**"
    )
    assert markdown("<b>Presets</b>\n- one\n\n&gt; quoted\n# big") == (
        "**Presets**\n\\- one\n\n\\> quoted\n\\# big"  # no list, quote or heading of Discord's own
    )
    assert markdown("<code>a_b `c` @everyone</code> <i>x</i>") == "`a_b ˋcˋ @\u200beveryone` *x*"
    assert shown("starry_night") == "starry_night"  # Discord formats no underscore inside a word
    assert shown("__init__") == "\\_\\_init\\_\\_"


def test_the_scale_settings_empty_is_unset_and_a_count_is_positive(monkeypatch, tmp_path: Path) -> None:
    cli_environment(monkeypatch, tmp_path)
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "")  # as .env.example's line reads when filled in blank
    monkeypatch.setenv("DISCORD_DEV_GUILD", " ")
    settings = load_settings()
    assert settings.discord_shard_count is None
    assert settings.discord_dev_guild is None
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "4")
    monkeypatch.setenv("DISCORD_DEV_GUILD", str(DEV_GUILD))
    settings = load_settings()
    assert (settings.discord_shard_count, settings.discord_dev_guild) == (4, DEV_GUILD)
    monkeypatch.setenv("DISCORD_SHARD_COUNT", "0")
    with pytest.raises(SystemExit, match="DISCORD_SHARD_COUNT"):
        load_settings()


@pytest.mark.parametrize("failures", [1, len(retrying.PAUSES) + 1])
async def test_a_network_failure_of_the_upload_is_tried_again_and_never_stops_the_start(
    discord_settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, failures: int
) -> None:
    """A timeout of the upload (not an ``HTTPException``) is tried again by the retry rule; when Discord
    keeps failing, one WARNING and the bot starts with the commands uploaded before."""
    monkeypatch.setattr(retrying, "PAUSES", (0.01,) * len(retrying.PAUSES))
    caplog.set_level(logging.INFO)
    settings = discord_settings()
    async with discord_world(settings) as bot:
        env = bot.env
        (settings.data_dir / STATE_FILE).unlink()  # as if never uploaded
        faults = DiscordFaults(env)
        faults.set("PUT", "/applications/*/commands", share=1.0, kinds=("timeout",), times=failures)
        await bot.restart()
        faults.close()
        synced = failures <= len(retrying.PAUSES)
        assert len(uploads(env)) == (2 if synced else 1)
        assert (settings.data_dir / STATE_FILE).exists() == synced
        lost = [r for r in caplog.records if "Discord commands not synced" in r.getMessage()]
        assert [r.levelno for r in lost] == ([] if synced else [logging.WARNING])
        _, channel, alice = art_channel(env)
        assert (await alice.slash(channel, "queue")).ephemeral  # up


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        (discord.ConnectionClosed(SimpleNamespace(close_code=4004), shard_id=0), "4004"),  # type: ignore[arg-type]
        (discord.PrivilegedIntentsRequired(0), "privileged intents"),
    ],
)
async def test_a_gateway_closed_for_good_stops_the_bot_with_one_line(
    discord_settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, failure, words: str
) -> None:
    """Authentication failed (4004) or intents refused (4014): discord.py gives up and so must the process
    (``stop`` set, ``GatewayEnded`` on the way out: ``python -m bot`` exits 1), not stay up and deaf."""
    caplog.set_level(logging.INFO)

    async def login(self: discord.Client, token: str) -> None:
        return None

    async def connect(self: discord.AutoShardedClient, *, reconnect: bool = True) -> None:
        await asyncio.sleep(0)
        raise failure

    async def close(self: discord.AutoShardedClient) -> None:
        return None

    monkeypatch.setattr(discord.Client, "login", login)
    monkeypatch.setattr(discord.AutoShardedClient, "connect", connect)
    monkeypatch.setattr(discord.AutoShardedClient, "close", close)
    stop = asyncio.Event()
    with pytest.raises(app.GatewayEnded) as raised:
        async with running(discord_settings(discord_shard_count=1), bare_core(), stop=stop):
            await asyncio.wait_for(stop.wait(), 5)
    assert raised.value.__cause__ is failure
    (line,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "gateway for good" in line.getMessage()
    assert words in line.getMessage()
    assert line.exc_info is None  # one line, no traceback


def bare_core() -> Any:
    """What the client asks of the core before it logs in: a registry for its shards' metrics."""
    return SimpleNamespace(metrics=Metrics())


def test_python_m_bot_exits_1_when_the_gateway_ended(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    async def gateway_ended(settings: Any, *_: Any) -> None:
        raise app.GatewayEnded("ConnectionClosed, close code 4004")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DISCORD_BOT_TOKEN", "discord.test.token")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(entry, "run_all", gateway_ended)
    assert entry.main([]) == 1


async def test_a_gateway_closed_by_the_bot_itself_is_no_failure(
    discord_settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def login(self: discord.Client, token: str) -> None:
        return None

    async def connect(self: discord.AutoShardedClient, *, reconnect: bool = True) -> None:
        await asyncio.Event().wait()

    async def close(self: discord.AutoShardedClient) -> None:
        return None

    monkeypatch.setattr(discord.Client, "login", login)
    monkeypatch.setattr(discord.AutoShardedClient, "connect", connect)
    monkeypatch.setattr(discord.AutoShardedClient, "close", close)
    stop = asyncio.Event()
    async with running(discord_settings(discord_shard_count=1), bare_core(), stop=stop):
        await asyncio.sleep(0)
    assert not stop.is_set()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []

"""Sharing on Discord: "Paint this" installable to a person (user install), so it works in DMs, group DMs and
servers that do not have the bot, answering through the interaction.

SimCord sends every interaction as if the bot were installed where it runs (``authorizing_integration_owners``
empty); ``user_installed`` makes its interactions a person's install instead, and a server without the bot
is a channel Discord refuses the bot (403 50001 Missing Access, ``DiscordFaults.refuse_channel``)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
import simcord.interactions

from tests.bot.discord.conftest import (
    GATED,
    art_channel,
    discord_bot,
    downloaded,
    faulty_world,
    requests,
    until,
)
from tests.bot.discord.test_faults import latest_job, token_dies
from tests.fakes import images
from tests.fakes.engine import Gate, invert

PHOTO = images.pattern(64, 48)
USER_INSTALL, GUILD_INSTALL = 1, 0  # Discord's integration types
GUILD, BOT_DM, PRIVATE_CHANNEL = 0, 1, 2  # Discord's interaction contexts


@pytest.fixture
def user_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every interaction comes from the person's own install of the app, not the server's."""
    real = simcord.interactions.base_payload

    def as_user_install(*args: Any, **kwargs: Any) -> Any:
        record, payload = real(*args, **kwargs)
        payload["authorizing_integration_owners"] = {str(USER_INSTALL): str(kwargs["user_id"])}
        return record, payload

    monkeypatch.setattr(simcord.interactions, "base_payload", as_user_install)


async def test_paint_this_is_installable_to_a_person_and_usable_everywhere(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, _core):
        env.create_guild()
        [upload] = [r for r in requests(env, "PUT", "/applications/") if r.path.endswith("/commands")]
        commands = {command["name"]: command for command in upload.json}
        paint_this = commands["Paint this"]
        assert sorted(paint_this["integration_types"]) == [GUILD_INSTALL, USER_INSTALL]
        assert sorted(paint_this["contexts"]) == [GUILD, BOT_DM, PRIVATE_CHANNEL]


async def test_paint_this_in_a_server_without_the_bot_answers_through_the_interaction(
    discord_settings, user_installed: None
) -> None:
    async with faulty_world(discord_settings()) as (bot, faults):
        env, core = bot.env, bot.core
        guild, channel, alice = art_channel(env)
        bob = guild.add_member(env.create_user("bob"))
        posted = await bob.send(channel, "look", attachments=[("holiday.jpg", PHOTO)])
        faults.refuse_channel(channel.id)  # the bot is not in this server: its channel is out of reach
        since = len(faults.attempts)

        picker = await alice.context_menu(channel, "Paint this", posted)
        assert picker.ephemeral
        painting = await alice.select(picker.response, ["the_scream"])
        assert painting.response is not None

        job = await latest_job(core, alice.id)

        async def delivered() -> Any:
            current = await core.db.get_job(job.id)
            return current if current.result_file_id else None

        for _ in range(400):
            if await delivered():
                break
            await asyncio.sleep(0.05)
        assert await delivered(), env.transcript()[-3000:]
        followups = [m for m in painting.followups if m.attachments]
        assert len(followups) == 1
        assert "The Scream" in followups[0].content
        assert downloaded(env, followups[0].attachments[0]) == invert(PHOTO)
        paths = Counter(a.path for a in faults.attempts[since:])
        assert not [p for p in paths if p.startswith(f"/channels/{channel.id}")]  # nothing sent there


async def test_past_the_token_the_painting_comes_as_a_dm(
    discord_settings, user_installed: None, gate: Gate
) -> None:
    """The interaction's token lives 15 minutes; a painting that takes longer cannot be a follow-up, and a
    server without the bot refuses its channel: the painting comes as a DM (one refused channel call)."""
    async with faulty_world(discord_settings(), engine=GATED) as (bot, faults):
        env, core = bot.env, bot.core
        guild = env.create_guild()
        channel = guild.create_text_channel("art")
        person = env.create_user("alice")
        alice = guild.add_member(person)
        bob = guild.add_member(env.create_user("bob"))
        posted = await bob.send(channel, "look", attachments=[("holiday.jpg", PHOTO)])
        faults.refuse_channel(channel.id)
        picker = await alice.context_menu(channel, "Paint this", posted)
        assert picker.response is not None
        await alice.select(picker.response, ["udnie"])
        token_dies(env)
        gate.release()

        dm = person.dm_channel
        delivered = await until(env, lambda: [m for m in dm.history() if m.author.bot and m.attachments])
        assert "Udnie" in delivered[0].content
        job = await latest_job(core, alice.id)
        assert (await core.db.get_job(job.id)).result_file_id
        result_sends = [a for a in faults.attempts if a.path == f"/channels/{channel.id}/messages"]
        assert len(result_sends) == 1  # refused once (Missing Access), then the DM

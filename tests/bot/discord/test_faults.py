"""How the Discord front end lives with what Discord refuses mid-job (issue 18): a status a moderator
deleted, an interaction token that stopped working, a channel the bot may not write in. Each job still gets
its painting (follow-up → channel message → DM), and nothing raises."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import discord
import pytest

from tests.bot.discord.conftest import art_channel, discord_world, downloaded, requests, results_for, until
from tests.fakes import images
from tests.fakes.engine import invert

PHOTO = images.pattern(64, 48)
THREE_SECONDS = "tests.bot.discord.engines:three_second_engine"


def tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """What raised on the way from the queue's events to Discord (the notifier, the front end)."""
    return [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.exc_info and r.name.startswith(("bot.queue.events", "bot.notifier", "bot.discord", "discord"))
    ]


async def recorded(core, user_id: int) -> Any:
    """The user's latest job once its delivery is recorded (just after the send the user sees)."""
    for _ in range(200):
        job = max(await core.db.recent_jobs(user_id, platform="discord"), key=lambda j: j.id)
        if job.result_file_id is not None:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError("the delivery was never recorded")


def token_dies(env) -> None:
    """From now on Discord refuses the interaction's token, as it does for one that stopped working
    before its 15 minutes (401 Invalid Webhook Token): edits of the response and follow-ups alike."""
    for method, path in (("PATCH", "/webhooks/*/messages/@original"), ("POST", "/webhooks/*")):
        env.inject_error(method, path, status=401, code=50027, message="Invalid Webhook Token", times=None)


async def test_a_status_deleted_by_a_moderator_is_forgotten_and_the_painting_still_arrives(
    discord_settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = discord_settings(discord_status_interval=0.0)  # every event tries to edit
    async with discord_world(settings, engine=THREE_SECONDS) as bot:
        env, core = bot.env, bot.core
        guild, channel, alice = art_channel(env)
        mods = guild.create_role("mods", permissions=discord.Permissions(manage_messages=True))
        moderator = guild.add_member(env.create_user("mod"), roles=[mods])
        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        queued = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="the_scream")
        assert queued.response is not None
        assert "In the queue" in queued.response.content
        status_id = queued.response.id
        await moderator.delete(queued.response)
        since = len(env.http_requests)

        def painted() -> list:
            return [m for m in results_for(channel, alice) if "The Scream" in m.content]

        delivered = await until(env, painted)
        assert downloaded(env, delivered[0].attachments[0]) == invert(PHOTO)
        assert queued.followups, "delivered as a follow-up: the token still works"
        second = await recorded(core, alice.id)
        assert second.state == "done"
        assert second.result_file_id == str(delivered[0].id)
        # One edit found the status gone; none after it (the job ran 60 steps, each a progress event).
        token = queued._interaction.token
        edits = [
            r
            for r in env.http_requests[since:]
            if r.method == "PATCH" and (f"/{token}/messages/@original" in r.path or str(status_id) in r.path)
        ]
        assert len(edits) == 1, [r.path for r in edits]
    assert tracebacks(caplog) == []


async def test_a_token_that_stops_working_falls_back_to_the_channel(
    discord_settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with discord_world(discord_settings(), engine=THREE_SECONDS) as bot:
        env, core = bot.env, bot.core
        _, channel, alice = art_channel(env)
        result = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        assert result.response is not None
        token_dies(env)

        delivered = await until(env, lambda: results_for(channel, alice))
        assert downloaded(env, delivered[0].attachments[0]) == invert(PHOTO)
        assert result.followups == []  # refused: the result went to the channel instead
        assert requests(env, "POST", f"/channels/{channel.id}/messages")
        job = await recorded(core, alice.id)
        assert job.result_file_id == str(delivered[0].id)
        # The status is still kept up to date, edited as the bot's own message.
        await until(env, lambda: "Done" in result.response.content)
        assert requests(env, "PATCH", f"/channels/{channel.id}/messages/{result.response.id}")
    assert tracebacks(caplog) == []


async def test_with_no_token_and_a_channel_it_may_not_write_in_the_painting_comes_as_a_dm(
    discord_settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with discord_world(discord_settings(), engine=THREE_SECONDS) as bot:
        env, core = bot.env, bot.core
        guild = env.create_guild()
        channel = guild.create_text_channel("art")
        user = env.create_user("alice")
        alice = guild.add_member(user)
        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        token_dies(env)
        env.inject_error(
            "POST",
            f"/channels/{channel.id}/messages",
            status=403,
            code=50013,
            message="Missing Permissions",
            times=None,
        )

        delivered = await until(env, lambda: results_for(user.dm_channel, alice))
        assert downloaded(env, delivered[0].attachments[0]) == invert(PHOTO)
        job = await recorded(core, alice.id)
        assert job.result_file_id == str(delivered[0].id)
    assert tracebacks(caplog) == []

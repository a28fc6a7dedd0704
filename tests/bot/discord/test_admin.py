"""Moderation on Discord through SimCord, over the real core: the admins' commands refused for everyone
else, a block and a server switched off that hold across a restart, and Delete under a result for its
owner and the channel's members with Manage Messages only."""

from __future__ import annotations

import asyncio
from typing import Any

import discord
import pytest

from tests.bot.discord.conftest import art_channel, discord_world, faulty_world, results_for, until
from tests.bot.discord.test_faults import latest_job
from tests.bot.discord.test_sharing import PHOTO as SHARED_PHOTO
from tests.bot.discord.test_sharing import user_installed  # noqa: F401  (a fixture)
from tests.fakes import images

PHOTO = images.pattern(64, 48)
SLOW = "tests.fakes.engine:slow_engine"  # honours cancel


def make_admins(bot: Any, **ids: int) -> None:
    """ADMIN_IDS as the settings would give them; SimCord makes its users' ids only once the world runs,
    so the core's one ``Admins`` (shared by every service) is told after the start."""
    bot.core.admins.by_platform.update({platform: frozenset({i}) for platform, i in ids.items()})


async def delivered(bot: Any, user_id: int, count: int) -> dict[str, Any]:
    """The user's jobs by the result message each was confirmed as (recorded just after the send)."""
    for _ in range(400):
        jobs = await bot.core.db.recent_jobs(user_id, platform="discord")
        if len(jobs) == count and all(job.result_file_id for job in jobs):
            return {job.result_file_id: job for job in jobs}
        await asyncio.sleep(0.05)
    raise AssertionError("the deliveries were never recorded")


def said(result: Any) -> str:
    """An ephemeral answer's text: the response, or a follow-up after a deferral (a public one, as /paint's,
    is then deleted: only the user sees why)."""
    if result.followups:
        assert result.followups[-1].ephemeral, result
        return result.followups[-1].content
    assert result.ephemeral, result
    assert result.response is not None
    return result.response.content


async def test_admin_commands_are_refused_for_everyone_else(discord_settings) -> None:
    async with discord_world(discord_settings()) as bot:
        guild, channel, alice = art_channel(bot.env)
        admin = guild.add_member(bot.env.create_user("admin"))
        bob = guild.add_member(bot.env.create_user("bob"))
        # Alice's number is a Telegram admin's: on Discord she is nobody special.
        make_admins(bot, discord=admin.id, telegram=alice.id)
        for name, options in (
            ("admin stats", {}),
            ("admin block", {"user": bob}),
            ("admin unblock", {"user": bob}),
        ):
            refused = await alice.slash(channel, name, **options)
            assert said(refused) == "Only the bot's admins can do that.", name
        assert not await bot.core.db.is_blocked("discord", bob.id)

        stats = await admin.slash(channel, "admin stats")
        assert said(stats).startswith("**Statistics**")
        assert "Today (UTC): 0 done, 0 failed, 0 cancelled, 0 not finished" in said(stats)
        refused = await admin.slash(channel, "admin block", user=admin)
        assert "admins can't be blocked" in said(refused)


async def test_a_block_cancels_refuses_and_holds_across_a_restart(discord_settings) -> None:
    async with discord_world(discord_settings(), engine=SLOW) as bot:
        guild, channel, bob = art_channel(bot.env)
        admin = guild.add_member(bot.env.create_user("admin"))
        make_admins(bot, discord=admin.id)
        running = await bob.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        queued = await bob.slash(channel, "paint", image=("photo.png", PHOTO), style="the_scream")
        await until(bot.env, lambda: "%" in running.response.content)

        blocked = await admin.slash(channel, "admin block", user=bob)
        assert said(blocked) == (
            f"Blocked <@{bob.id}> (`{bob.id}`): 2 pictures of theirs were cancelled, new ones are refused."
        )
        jobs = await bot.core.db.recent_jobs(bob.id, platform="discord")
        assert [job.state for job in jobs] == ["cancelled", "cancelled"]
        await until(bot.env, lambda: "ancel" in queued.response.content and not queued.response.components)
        again = await admin.slash(channel, "admin block", user=bob)
        assert "was blocked already" in said(again)

        await bot.restart(engine=SLOW)
        make_admins(bot, discord=admin.id)
        refused = await bob.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        assert said(refused) == "Sorry, you can't use this bot: its admins have blocked you."
        assert len(await bot.core.db.recent_jobs(bob.id, platform="discord")) == 2  # nothing new
        assert "Unblocked" in said(await admin.slash(channel, "admin unblock", user=bob))

        await bot.restart()
        make_admins(bot, discord=admin.id)
        await bob.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        assert await until(bot.env, lambda: results_for(channel, bob))
        assert "wasn't blocked" in said(await admin.slash(channel, "admin unblock", user=bob))


async def test_a_servers_managers_switch_the_bot_off_and_on_across_a_restart(discord_settings) -> None:
    async with discord_world(discord_settings()) as bot:
        guild, channel, member = art_channel(bot.env)
        managers = guild.create_role("Managers", permissions=discord.Permissions(manage_guild=True))
        boss = guild.add_member(bot.env.create_user("boss"), roles=[managers])
        elsewhere = bot.env.create_guild("Elsewhere")
        other = elsewhere.create_text_channel("art")
        outsider = elsewhere.add_member(bot.env.create_user("outsider"))

        refused = await member.slash(channel, "bot off")
        assert said(refused) == "Only this group's admins can switch me off or on here."
        assert "switched off here now" in said(await boss.slash(channel, "bot off"))
        assert "already switched off" in said(await boss.slash(channel, "bot off"))

        await bot.restart()
        thread = guild.create_text_channel("another")  # every channel of the server
        for where in (channel, thread):
            off = await member.slash(where, "paint", image=("photo.png", PHOTO), style="udnie")
            assert "I'm switched off here" in said(off)
        assert await bot.core.db.recent_jobs(member.id, platform="discord") == []
        await outsider.slash(other, "paint", image=("photo.png", PHOTO), style="udnie")  # another server
        assert await until(bot.env, lambda: results_for(other, outsider))
        assert "switched on here again" in said(await boss.slash(channel, "bot on"))

        await bot.restart()
        await member.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        assert await until(bot.env, lambda: results_for(channel, member))


async def test_delete_by_the_owner_or_a_moderator_refused_for_another_member(discord_settings) -> None:
    settings = discord_settings()
    async with discord_world(settings) as bot:
        guild, channel, alice = art_channel(bot.env)
        bob = guild.add_member(bot.env.create_user("bob"))
        mods = guild.create_role("mods", permissions=discord.Permissions(manage_messages=True))
        moderator = guild.add_member(bot.env.create_user("mod"), roles=[mods])
        for style in ("udnie", "the_scream"):
            await alice.slash(channel, "paint", image=("photo.png", PHOTO), style=style)
        await until(bot.env, lambda: len(results_for(channel, alice)) == 2)
        jobs = await delivered(bot, alice.id, 2)
        first, second = results_for(channel, alice)
        first_job, second_job = jobs[str(first.id)], jobs[str(second.id)]

        def stored(job_id: int) -> list[str]:
            return [path.name for path in settings.results_dir.glob(f"{job_id}.*")]

        refused = await bob.click(first, custom_id=f"delete:{first_job.id}")
        assert said(refused) == "Only the person who sent the photo or this chat's admins can delete it."
        assert stored(first_job.id)
        assert len(results_for(channel, alice)) == 2

        deleted = await alice.click(first, custom_id=f"delete:{first_job.id}")
        assert said(deleted) == "Deleted."
        assert [m.id for m in results_for(channel, alice)] == [second.id]
        assert stored(first_job.id) == []

        await bot.restart()  # the button carries its job: it works after a restart
        deleted = await moderator.click(second, custom_id=f"delete:{second_job.id}")
        assert said(deleted) == "Deleted."
        assert results_for(channel, alice) == []
        assert stored(second_job.id) == []


async def test_delete_when_discord_keeps_the_message(discord_settings) -> None:
    settings = discord_settings()
    async with discord_world(settings) as bot:
        _, channel, alice = art_channel(bot.env)
        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        (result,) = await until(bot.env, lambda: results_for(channel, alice))
        (job,) = (await delivered(bot, alice.id, 1)).values()
        for path in (
            "/webhooks/*/messages/@original",
            "/channels/*/messages/*",
        ):  # the token, then the channel
            bot.env.inject_error(
                "DELETE", path, status=403, code=50013, message="Missing Permissions", times=1
            )
        kept = await alice.click(result, custom_id=f"delete:{job.id}")
        assert "couldn't delete the message" in said(kept)
        assert [m.id for m in results_for(channel, alice)] == [result.id]
        assert list(settings.results_dir.glob(f"{job.id}.*")) == []  # the painting went all the same


@pytest.mark.usefixtures("user_installed")
async def test_delete_where_the_bot_is_not_in_the_server(discord_settings) -> None:
    """A user-installed "Paint this" result in a server without the bot: the channel is out of reach, the
    interaction's token is not, and the message goes through it."""
    async with faulty_world(discord_settings()) as (bot, faults):
        env, core = bot.env, bot.core
        guild = env.create_guild()
        channel = guild.create_text_channel("art")
        alice = guild.add_member(env.create_user("alice"))
        bob = guild.add_member(env.create_user("bob"))
        posted = await bob.send(channel, "look", attachments=[("holiday.jpg", SHARED_PHOTO)])
        faults.refuse_channel(channel.id)  # a server without the bot
        picker = await alice.context_menu(channel, "Paint this", posted)
        assert picker.response is not None
        painting = await alice.select(picker.response, ["udnie"])
        (message,) = await until(env, lambda: [m for m in painting.followups if m.attachments])
        job = await latest_job(core, alice.id)
        pressed = await alice.click(message, custom_id=f"delete:{job.id}")
        assert said(pressed) == "Deleted."
        assert (await core.db.get_job(job.id)).result_removed_at is not None
        assert not [m for m in channel.history() if m.id == message.id]


async def test_delete_pressed_on_a_message_that_is_not_the_jobs_result_is_refused(discord_settings) -> None:
    """The job a Delete button names must have the pressed message as its result (here the job's result
    is recorded as another message): nothing is removed."""
    settings = discord_settings()
    async with discord_world(settings) as bot:
        _, channel, alice = art_channel(bot.env)
        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        (result,) = await until(bot.env, lambda: results_for(channel, alice))
        (job,) = (await delivered(bot, alice.id, 1)).values()
        await bot.core.db.record_result_file(job.id, str(result.id + 1))
        refused = await alice.click(result, custom_id=f"delete:{job.id}")
        assert said(refused) == "This button has expired."
        assert (await bot.core.db.get_job(job.id)).result_removed_at is None
        assert list(settings.results_dir.glob(f"{job.id}.*"))
        assert [m.id for m in results_for(channel, alice)] == [result.id]

"""``/paint`` end to end: registration, deferral, progress, the result, bad inputs, autocomplete, Cancel."""

from __future__ import annotations

import simcord

from tests.bot.discord.conftest import discord_bot, until
from tests.fakes import images


def deferred_first(env) -> bool:
    """The first answer to the interaction was a deferral (type 5), as Discord's 3 seconds need."""
    callbacks = [r for r in env.http_requests if r.path.endswith("/callback")]
    return bool(callbacks) and (callbacks[0].json or {}).get("type") == 5


def result_messages(channel, owner) -> list:
    last = channel.last_message
    return [last] if last is not None and last.attachments and f"<@{owner.id}>" in last.content else []


async def test_commands_are_registered(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, _core):
        guild = env.create_guild()
        channel = guild.create_text_channel("art")
        alice = guild.add_member(env.create_user("alice"))
        available = alice.available_commands(channel)
        for name in ("paint", "styles", "settings", "queue", "cancel", "preset save", "preset guild"):
            assert name in available, available


async def test_paint_with_a_painting_is_deferred_shows_progress_and_delivers(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, core):
        guild = env.create_guild()
        channel = guild.create_text_channel("art")
        alice = guild.add_member(env.create_user("alice"))
        result = await alice.slash(
            channel, "paint", image=("photo.png", images.pattern(64, 48)), style="starry_night"
        )
        assert deferred_first(env)
        assert result.response is not None
        delivered = await until(env, lambda: result_messages(channel, alice))
        assert "The Starry Night" in delivered[0].content
        jobs = await core.db.recent_jobs(alice.id, platform="discord")
        assert jobs[0].state == "done"
        assert jobs[0].result_file_id == str(delivered[0].id)
        assert jobs[0].guild_id == guild.id
        edits = [r for r in env.http_requests if r.method == "PATCH" and "webhooks" in r.path]
        assert edits, "the response was never edited"


async def test_bad_inputs_get_an_ephemeral_answer(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, core):
        guild = env.create_guild()
        channel = guild.create_text_channel("art")
        alice = guild.add_member(env.create_user("alice"))
        cases = [
            ({"image": ("notes.txt", b"hello")}, "isn't an image"),
            (
                {"image": ("photo.png", images.pattern(64, 48)), "style": "no_such_painting"},
                "no_such_painting",
            ),
            ({"image": ("photo.png", images.pattern(64, 48))}, "Choose a style"),
        ]
        for options, expected in cases:
            result = await alice.slash(channel, "paint", **options)
            assert result.ephemeral, (options, env.transcript()[-2000:])
            assert expected in result.response.content
        assert await core.db.recent_jobs(alice.id, platform="discord") == []


async def test_too_many_jobs_is_refused(discord_settings) -> None:
    async with discord_bot(discord_settings(max_active_jobs=1), engine="tests.fakes.engine:slow_engine") as (
        env,
        _core,
    ):
        guild = env.create_guild()
        channel = guild.create_text_channel("art")
        alice = guild.add_member(env.create_user("alice"))
        photo = ("photo.png", images.pattern(64, 48))
        await alice.slash(channel, "paint", image=photo, style="udnie")
        assert deferred_first(env)
        second = await alice.slash(channel, "paint", image=photo, style="udnie")
        assert "in progress" in second.response.content  # after the download: the response says it


async def test_autocomplete_offers_paintings_presets_and_personal_styles(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, core):
        guild = env.create_guild()
        channel = guild.create_text_channel("art")
        alice = guild.add_member(env.create_user("alice"))
        everything = await alice.autocomplete(channel, "paint", "style", "")
        assert len(everything) == min(25, len(core.catalog))
        starry = await alice.autocomplete(channel, "paint", "style", "starry")
        assert starry[0]["value"] == "starry_night"
        await core.db.upsert_user(alice.id, "alice", "alice", "en", platform="discord")
        await core.db.save_preset(
            alice.id, "Starry2", [{"preset": "udnie", "weight": 1.0}], {}, platform="discord"
        )
        mine = await alice.autocomplete(channel, "paint", "style", "starry")
        assert {c["value"] for c in mine} >= {"starry_night", "Starry2"}


async def test_only_the_owner_can_cancel(discord_settings) -> None:
    async with discord_bot(discord_settings(), engine="tests.fakes.engine:slow_engine") as (env, core):
        guild = env.create_guild()
        channel = guild.create_text_channel("art")
        alice = guild.add_member(env.create_user("alice"))
        bob = guild.add_member(env.create_user("bob"))
        result = await alice.slash(
            channel, "paint", image=("photo.png", images.pattern(64, 48)), style="udnie"
        )
        jobs = await core.db.recent_jobs(alice.id, platform="discord")
        response = channel.get_message(jobs[0].status_message_id) if hasattr(channel, "get_message") else None
        target = response or result.response
        refused = await bob.click(target, custom_id=f"cancel:{jobs[0].id}")
        assert refused.ephemeral
        assert (await core.db.get_job(jobs[0].id)).is_active
        await alice.click(target, custom_id=f"cancel:{jobs[0].id}")
        assert (await core.db.get_job(jobs[0].id)).state == "cancelled"


__all__ = ["simcord"]

"""``/paint`` end to end: registration, deferral, progress, the result, bad inputs, autocomplete, Cancel."""

from __future__ import annotations

from typing import Any

from bot.frontend import DISCORD, TELEGRAM
from bot.services.access import Admins
from tests.bot.discord.conftest import art_channel, discord_bot, downloaded, requests, results_for, until
from tests.fakes import images
from tests.fakes.engine import invert

PHOTO = images.pattern(64, 48)
SLOW = "tests.fakes.engine:slow_engine"  # 20 s a job, honouring cancel


def deferred_first(env, interaction_id: int | None = None) -> bool:
    """The first answer to the interaction was a deferral (type 5), as Discord's 3 seconds need."""
    callbacks = [r for r in env.http_requests if r.path.endswith("/callback")]
    if interaction_id is not None:
        callbacks = [r for r in callbacks if f"/interactions/{interaction_id}/" in r.path]
    return bool(callbacks) and (callbacks[0].json or {}).get("type") == 5


async def test_commands_are_registered(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, _core):
        _, channel, alice = art_channel(env)
        available = alice.available_commands(channel)
        for name in ("paint", "styles", "settings", "queue", "cancel", "preset save", "preset guild"):
            assert name in available, available


async def test_paint_with_a_painting_is_deferred_shows_progress_and_delivers(discord_settings) -> None:
    async with discord_bot(discord_settings(discord_status_interval=0.0)) as (env, core):
        guild, channel, alice = art_channel(env)
        result = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="starry_night")
        assert deferred_first(env)
        assert result.response is not None
        assert not result.ephemeral
        delivered = await until(env, lambda: results_for(channel, alice))
        assert "The Starry Night" in delivered[0].content
        assert downloaded(env, delivered[0].attachments[0]) == invert(PHOTO)  # this job's painting
        # Progress went through the interaction's token onto the original response, the result as a
        # followup (the token still lives), and the response then says it is done (an edit the bot makes
        # once the result is sent: waited for, not assumed).
        progress = [r for r in requests(env, "PATCH", "/messages/@original") if "%" in str(r.json)]
        assert progress, env.transcript()[-3000:]
        assert requests(env, "POST", "/webhooks/")
        await until(env, lambda: "Done" in result.response.content)
        assert not result.response.components
        jobs = await core.db.recent_jobs(alice.id, platform="discord")
        assert jobs[0].state == "done"
        assert jobs[0].result_file_id == str(delivered[0].id)
        assert jobs[0].guild_id == guild.id
        assert jobs[0].chat_id == channel.id


async def test_paint_with_a_style_image(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, core):
        _, channel, alice = art_channel(env)
        style = images.pattern(40, 40, fmt="PNG")
        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style_image=("art.png", style))
        assert deferred_first(env)
        delivered = await until(env, lambda: results_for(channel, alice))
        assert downloaded(env, delivered[0].attachments[0]) == invert(PHOTO)
        job = (await core.db.recent_jobs(alice.id, platform="discord"))[0]
        assert job.state == "done"
        assert job.styles == [{"image": 0, "weight": 1.0}]


async def test_paint_in_a_dm(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, core):
        env.create_guild()  # the bot's world needs a guild; the DM is the user's own
        bob = env.create_user("bob")
        dm = bob.dm_channel
        result = await bob.slash("paint", image=("photo.png", PHOTO), style="udnie")
        assert result.response is not None
        delivered = await until(env, lambda: results_for(dm, bob))
        assert "Udnie" in delivered[0].content
        job = (await core.db.recent_jobs(bob.id, platform="discord"))[0]
        assert job.guild_id is None
        assert job.chat_type == "private"


async def test_bad_inputs_get_an_ephemeral_answer(discord_settings) -> None:
    """Whether the payload shows the fault (before the deferral) or only the download does (after it),
    the answer is ephemeral and nothing public is left behind."""
    settings = discord_settings(max_image_pixels=1_000_000)
    async with discord_bot(settings) as (env, core):
        _, channel, alice = art_channel(env)
        cases: list[tuple[dict[str, Any], str]] = [
            ({"image": ("notes.txt", b"hello")}, "isn't an image"),
            ({"image": ("huge.png", b"\0" * (20 * 2**20 + 1)), "style": "udnie"}, "up to 20 MB"),
            ({"image": ("photo.png", PHOTO), "style": "no_such_painting"}, "no_such_painting"),
            ({"image": ("photo.png", PHOTO)}, "Choose a style"),
            ({"image": ("photo.png", b"\x89PNG\r\n\x1a\n broken"), "style": "udnie"}, "read that image"),
            ({"image": ("big.png", images.png(1001, 1000)), "style": "udnie"}, "too many pixels"),
        ]
        for options, expected in cases:
            result = await alice.slash(channel, "paint", **options)
            answers = ([result.response] if result.response else []) + result.followups
            assert [a.ephemeral for a in answers] == [True], (options, env.transcript()[-2000:])
            assert expected in answers[0].content, answers[0].content
        assert await core.db.recent_jobs(alice.id, platform="discord") == []
        public = [m for m in channel.history() if m.author.bot and not m.flags.ephemeral]
        assert public == [], [m.content for m in public]


async def test_too_many_jobs_is_refused_ephemerally(discord_settings) -> None:
    async with discord_bot(discord_settings(max_active_jobs=1), engine=SLOW) as (env, core):
        _, channel, alice = art_channel(env)
        first = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        assert first.response is not None
        assert not first.ephemeral
        second = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        assert second.response is None  # the public "thinking" response is gone
        assert [f.ephemeral for f in second.followups] == [True]
        assert "in progress" in second.followups[0].content
        assert len(await core.db.recent_jobs(alice.id, platform="discord")) == 1
        await alice.slash(channel, "cancel")


async def test_a_discord_admin_is_not_limited_and_a_telegram_admins_number_is_nobody_here(
    discord_settings,
) -> None:
    """The admin exemption is the core's (``JobService.submit``), for ``(platform, user id)``: it holds on
    Discord's /paint, and a Telegram admin's id means nothing on Discord (issue 18)."""
    async with discord_bot(discord_settings(max_active_jobs=1), engine=SLOW) as (env, core):
        guild, channel, alice = art_channel(env)
        bob = guild.add_member(env.create_user("bob"))
        core.jobs.admins = Admins({DISCORD: frozenset({alice.id}), TELEGRAM: frozenset({bob.id})})
        for _ in range(2):
            started = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
            assert started.response is not None
            assert not started.ephemeral
        assert len(await core.db.recent_jobs(alice.id, platform="discord")) == 2

        await bob.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        refused = await bob.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        assert [f.ephemeral for f in refused.followups] == [True]
        assert "in progress" in refused.followups[0].content
        assert len(await core.db.recent_jobs(bob.id, platform="discord")) == 1
        await alice.slash(channel, "cancel", everything=True)
        await bob.slash(channel, "cancel")


async def test_autocomplete_offers_paintings_presets_and_personal_styles(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, core):
        _, channel, alice = art_channel(env)
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
    async with discord_bot(discord_settings(), engine=SLOW) as (env, core):
        guild, channel, alice = art_channel(env)
        bob = guild.add_member(env.create_user("bob"))
        result = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        job = (await core.db.recent_jobs(alice.id, platform="discord"))[0]
        refused = await bob.click(result.response, custom_id=f"cancel:{job.id}")
        assert refused.ephemeral
        assert "Only the person" in refused.response.content
        assert (await core.db.get_job(job.id)).is_active
        await alice.click(result.response, custom_id=f"cancel:{job.id}")
        assert (await core.db.get_job(job.id)).state == "cancelled"
        await until(env, lambda: "ancel" in result.response.content and not result.response.components)

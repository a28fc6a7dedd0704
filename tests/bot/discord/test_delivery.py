"""Delivery past the interaction token's 15 minutes, a restart with jobs queued, the real engine once."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.bot.discord.conftest import art_channel, discord_world, downloaded, requests, results_for, until
from tests.fakes import images
from tests.fakes.engine import invert

PHOTO = images.pattern(64, 48)
SLOW = "tests.fakes.engine:slow_engine"  # 20 s a job, honouring cancel
STEADY = "tests.fakes.engine:steady_engine"  # 1 s a job


async def test_after_the_token_expires_the_result_is_a_channel_message(discord_settings) -> None:
    """The job outlives its interaction's token (15 minutes on SimCord's clock): the result goes to the
    channel as a new message that mentions its owner, and the response is edited as a message."""
    async with discord_world(discord_settings(), engine=STEADY) as bot:
        env, core = bot.env, bot.core
        _, channel, alice = art_channel(env)
        result = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        await env.advance_time(16 * 60)
        delivered = await until(env, lambda: results_for(channel, alice))
        assert downloaded(env, delivered[0].attachments[0]) == invert(PHOTO)
        assert f"<@{alice.id}>" in delivered[0].content
        assert result.followups == []  # not through the expired token (Discord would refuse it)
        assert requests(env, "POST", f"/channels/{channel.id}/messages")
        await until(env, lambda: "Done" in result.response.content)  # edited as the bot's own message
        assert requests(env, "PATCH", f"/channels/{channel.id}/messages/{result.response.id}")
        job = (await core.db.recent_jobs(alice.id, platform="discord"))[0]
        assert job.result_file_id == str(delivered[0].id)


async def test_a_queued_job_survives_a_restart_and_its_cancel_button_still_works(discord_settings) -> None:
    async with discord_world(discord_settings(), engine=SLOW) as bot:
        _, channel, alice = art_channel(bot.env)
        running = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        queued = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="the_scream")
        first, second = sorted(
            await bot.core.db.recent_jobs(alice.id, platform="discord"), key=lambda j: j.id
        )
        await until(bot.env, lambda: "%" in running.response.content)
        assert "number 1" in queued.response.content

        await bot.restart(engine=SLOW)  # the same database: both jobs come back, the first from the start
        assert (await bot.core.db.get_job(second.id)).state == "queued"
        # The Cancel button of a response sent before the restart still works (and only for its owner).
        await alice.click(running.response, custom_id=f"cancel:{first.id}")
        assert (await bot.core.db.get_job(first.id)).state == "cancelled"
        await until(bot.env, lambda: "ancel" in running.response.content and not running.response.components)
        # The click's own work scheduled the next status edit (throttled); in SimCord, a timer started
        # by a bot callback runs on the virtual clock: move it on.
        await bot.env.advance_time(1)
        await until(bot.env, lambda: "%" in queued.response.content)

        await bot.restart()  # the fast engine now: the job that was painting when stopped is finished
        delivered = await until(bot.env, lambda: results_for(channel, alice), seconds=60)
        assert "The Scream" in delivered[0].content
        assert downloaded(bot.env, delivered[0].attachments[0]) == invert(PHOTO)
        assert (await bot.core.db.get_job(second.id)).state == "done"


@pytest.mark.slow
async def test_a_style_image_really_paints(discord_settings) -> None:
    """The real engine in a real worker process at a tiny size: the result's style distance to the
    painting is below the photo's under the fixed evaluator."""
    from engine.metrics import style_distance
    from tests.engine.samples import encode, painting, photo

    settings = discord_settings(output_max_side=64, default_quality="draft")
    async with discord_world(settings, engine="engine.api:Engine.from_settings") as bot:
        _, channel, alice = art_channel(bot.env)
        source, art = photo(160, 120), painting(96, 96)
        result = await alice.slash(
            channel,
            "paint",
            image=("photo.jpg", encode(source, "JPEG")),
            style_image=("art.png", encode(art, "PNG")),
        )
        await until(bot.env, lambda: "%" in result.response.content, seconds=60)
        delivered = await until(bot.env, lambda: results_for(channel, alice), seconds=120)
        data = downloaded(bot.env, delivered[0].attachments[0])
    painted = Image.open(io.BytesIO(data)).convert("RGB")
    assert painted.size == (64, 48)
    assert style_distance(painted, art) < style_distance(source.resize((64, 48)), art)

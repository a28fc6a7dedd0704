"""The figures and "paint it again" on Discord (issue 13): the slash commands through ``start_job`` with a
figure, Surprise, and the buttons under a result (owner only, after a restart too)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from engine import figures
from engine.protocol import StyleSettings
from tests.bot.discord.conftest import art_channel, discord_bot, discord_world, downloaded, results_for, until
from tests.bot.telegram.e2e.conftest import paintings_on_disk
from tests.fakes import images
from tests.fakes.engine import invert

PHOTO = images.pattern(64, 48)


def picture(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def custom_ids(message) -> list[str]:
    return [item.custom_id for row in message.components for item in row.children]


async def test_strip_is_one_job_with_its_weight_delivered_as_one_image(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, core):
        _, channel, alice = art_channel(env)
        assert {"strip", "layers", "forming", "surprise"} <= set(alice.available_commands(channel))
        started = await alice.slash(channel, "strip", image=("photo.png", PHOTO), style="udnie")
        assert started.response is not None
        assert not started.ephemeral
        delivered = await until(env, lambda: results_for(channel, alice))
        assert len(delivered) == 1
        assert len(delivered[0].attachments) == 1
        assert "strength strip" in delivered[0].content
        strip = picture(downloaded(env, delivered[0].attachments[0]))
        negative = picture(invert(PHOTO))
        boxes = figures.panel_boxes(strip.size, len(figures.STRENGTHS))
        for box in boxes:
            assert np.array_equal(np.asarray(strip.crop(box)), np.asarray(negative))
        (job,) = await core.db.recent_jobs(alice.id, platform="discord")
        assert job.settings["figure"] == "strength"
        assert job.weight == figures.weight(StyleSettings(quality="normal", figure="strength"))
        assert job.weight >= 1  # five draft panels: about one normal job (engine.figures.weight)
        ids = custom_ids(delivered[0])  # under a figure's own result: another style, no strip of a strip
        assert ids == [f"again:{job.id}", f"delete:{job.id}"], ids


async def test_surprise_picks_a_painting_not_tried_and_says_which(discord_settings) -> None:
    settings = discord_settings()
    paintings_on_disk(settings)
    async with discord_bot(settings) as (env, core):
        _, channel, alice = art_channel(env)
        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        await until(env, lambda: results_for(channel, alice))
        surprised = await alice.slash(channel, "surprise", image=("photo.png", PHOTO))
        newest = (await core.db.recent_jobs(alice.id, platform="discord"))[0]
        (ref,) = newest.styles
        assert ref["preset"] != "udnie"
        title = core.catalog.get(ref["preset"]).label
        said = [f.content for f in surprised.followups]
        await until(env, lambda: len(results_for(channel, alice)) == 2)
        assert any(title in s and f"yet: {len(core.catalog) - 2}" in s for s in said), said


async def test_surprise_with_no_painting_on_disk_says_so_privately(discord_settings) -> None:
    """Offline (or while the paintings are still being fetched) Surprise offers only what can be painted
    now: nothing, so it says so instead of queueing a job that would fail to download its painting."""
    async with discord_bot(discord_settings()) as (env, core):
        _, channel, alice = art_channel(env)
        refused = await alice.slash(channel, "surprise", image=("photo.png", PHOTO))
        answers = ([refused.response] if refused.response else []) + refused.followups
        assert [a.ephemeral for a in answers] == [True]
        assert "ready" in answers[0].content
        assert await core.db.recent_jobs(alice.id, platform="discord") == []


async def test_another_style_repaints_the_kept_photo_for_its_owner_only(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, core):
        guild, channel, alice = art_channel(env)
        bob = guild.add_member(env.create_user("bob"))
        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        (result,) = await until(env, lambda: results_for(channel, alice))
        (job,) = await core.db.recent_jobs(alice.id, platform="discord")
        figure_ids = [f"fig:{k}:{job.id}" for k in figures.FIGURES]
        assert custom_ids(result) == [f"again:{job.id}", *figure_ids, f"delete:{job.id}"]

        refused = await bob.click(result, custom_id=f"again:{job.id}")
        assert refused.ephemeral
        assert "Only the person" in refused.response.content
        refused_figure = await bob.click(result, custom_id=f"fig:layers:{job.id}")
        assert refused_figure.ephemeral
        assert await core.db.recent_jobs(bob.id, platform="discord") == []

        picker = await alice.click(result, custom_id=f"again:{job.id}")
        assert picker.ephemeral
        painting = await alice.select(picker.response, ["the_scream"])
        assert painting.response is not None
        assert not painting.ephemeral
        again = await until(
            env, lambda: [m for m in results_for(channel, alice) if "The Scream" in m.content]
        )
        assert downloaded(env, again[0].attachments[0]) == invert(PHOTO)  # the kept photo, not sent again
        jobs = await core.db.recent_jobs(alice.id, platform="discord")
        assert len(jobs) == 2
        assert jobs[0].styles == [{"preset": "the_scream", "weight": 1.0}]


async def test_a_figure_button_works_after_a_restart_and_expired_photos_are_refused(discord_settings) -> None:
    async with discord_world(discord_settings()) as bot:
        env = bot.env
        _, channel, alice = art_channel(env)
        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        (result,) = await until(env, lambda: results_for(channel, alice))
        (job,) = await bot.core.db.recent_jobs(alice.id, platform="discord")
        await bot.restart()
        pressed = await alice.click(result, custom_id=f"fig:layers:{job.id}")
        assert pressed.response is not None
        assert not pressed.ephemeral
        strips = await until(
            env, lambda: [m for m in results_for(channel, alice) if "layer strip" in m.content]
        )
        strip = picture(downloaded(env, strips[0].attachments[0]))
        assert len(figures.panel_boxes(strip.size, len(figures.LAYER_SETS))) == len(figures.LAYER_SETS)
        newest = (await bot.core.db.recent_jobs(alice.id, platform="discord"))[0]
        assert newest.settings["figure"] == "layers"

        bot.core.figures.retention = bot.core.figures.retention * 0  # the photo is no longer kept
        expired = await alice.click(result, custom_id=f"fig:strength:{job.id}")
        assert expired.ephemeral
        assert "no longer keep" in expired.response.content


async def test_forming_sends_the_triptych_then_the_animation(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, _core):
        _, channel, alice = art_channel(env)
        await alice.slash(channel, "forming", image=("photo.png", PHOTO), style="udnie")
        gifs = await until(
            env,
            lambda: [
                m
                for m in channel.history()
                if m.author.bot and any(a.filename.endswith(".gif") for a in m.attachments)
            ],
        )
        (triptych,) = results_for(channel, alice)
        assert "as it formed" in triptych.content
        assert triptych.created_at <= gifs[0].created_at
        animation = Image.open(io.BytesIO(downloaded(env, gifs[0].attachments[0])))
        assert animation.format == "GIF"
        assert getattr(animation, "n_frames", 1) > 1  # the fake engine makes a few previews

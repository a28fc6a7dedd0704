"""``/clip`` end to end on Discord (issue 21), through SimCord and real worker processes running the fast
fake engine (each frame inverted): a GIF, an MP4 and a WebM attachment in, an MP4 (or a GIF when asked)
attachment out that decodes with the right frame count, Delete its only button; what is not a clip and a
clip over the limits refused ephemerally, the latter from its header; progress in frames; Cancel
mid-clip."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from bot.discord import attachments
from bot.discord import clips as clip_command_module
from bot.discord import jobs as jobs_module
from bot.services.preferences import STRENGTHS
from tests.bot.discord.conftest import art_channel, discord_bot, downloaded, requests, results_for, until
from tests.fakes import clips

SLOW = "tests.fakes.engine:slow_engine"  # a second a frame, honouring cancel


@pytest.mark.parametrize(
    ("name", "data"),
    [("dance.gif", clips.gif(6)), ("dance.mp4", clips.mp4(6)), ("dance.webm", clips.webm(6))],
    ids=["gif", "mp4", "webm"],
)
async def test_a_clip_comes_back_as_an_mp4_with_every_frame(discord_settings, name: str, data: bytes) -> None:
    async with discord_bot(discord_settings(discord_status_interval=0.0)) as (env, core):
        _, channel, alice = art_channel(env)
        result = await alice.slash(channel, "clip", clip=(name, data), style="udnie")
        assert result.response is not None
        assert not result.ephemeral
        delivered = await until(env, lambda: results_for(channel, alice))
        attachment = delivered[0].attachments[0]
        assert attachment.filename.endswith(".mp4")
        assert clips.frame_count(downloaded(env, attachment)) == 6
        assert "Udnie" in delivered[0].content
        ids = [c.custom_id for row in delivered[0].components for c in row.children]
        job = (await core.db.recent_jobs(alice.id, platform="discord"))[0]
        assert ids == [f"delete:{job.id}"]  # Delete alone: another style and the figures paint photos
        assert (job.kind, job.state) == ("clip", "done")
        await until(env, lambda: "Done" in result.response.content)


async def test_a_gif_comes_back_when_asked(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, _core):
        _, channel, alice = art_channel(env)
        await alice.slash(channel, "clip", clip=("dance.mp4", clips.mp4(5)), style="udnie", format="gif")
        delivered = await until(env, lambda: results_for(channel, alice))
        data = downloaded(env, delivered[0].attachments[0])
        assert data.startswith(b"GIF8")
        assert clips.frame_count(data) == 5


async def test_what_is_not_a_clip_or_over_the_limits_is_refused_ephemerally(discord_settings) -> None:
    async with discord_bot(discord_settings(clip_max_seconds=1)) as (env, core):
        _, channel, alice = art_channel(env)
        cases: list[tuple[dict[str, Any], str | None]] = [
            ({"clip": ("photo.png", b"\x89PNG\r\n\x1a\n")}, "can't read that clip"),
            ({"clip": ("dance.mp4", b"not really an mp4"), "style": "udnie"}, "can't read that clip"),
            ({"clip": ("long.mp4", clips.mp4(24)), "style": "udnie"}, "at most 1 s"),
            ({"clip": ("long.mp4", clips.mp4(6)), "style": "udnie", "quality": "painted"}, None),
            ({"clip": ("dance.gif", clips.gif(4))}, "Choose a style"),
        ]
        for options, expected in cases:
            result = await alice.slash(channel, "clip", **options)
            answers = ([result.response] if result.response else []) + result.followups
            if expected is None:  # half a second painted: within the CPU's three
                assert answers
                assert not answers[0].ephemeral
                continue
            assert [a.ephemeral for a in answers] == [True], (options, env.transcript()[-2000:])
            assert expected in answers[0].content, answers[0].content
        jobs = await core.db.recent_jobs(alice.id, platform="discord")
        assert [j.clip["quality"] for j in jobs] == ["painted"]


@pytest.mark.parametrize(
    ("name", "data"), [("dance.gif", clips.gif(5)), ("dance.mp4", clips.mp4(5))], ids=["gif", "mp4"]
)
async def test_a_gif_or_video_sent_to_paint_is_painted_as_a_clip(
    discord_settings, name: str, data: bytes
) -> None:
    """Not its first frame (a GIF) nor a pointer to /clip (a video): the clip, every frame, in the style
    /paint named, with its strength and colours; as Telegram paints an animation sent with a style."""
    async with discord_bot(discord_settings()) as (env, core):
        _, channel, alice = art_channel(env)
        result = await alice.slash(
            channel,
            "paint",
            image=(name, data),
            style="udnie",
            strength="strong",
            preserve_colors="luminance",
        )
        assert result.response is not None
        assert not result.ephemeral
        delivered = await until(env, lambda: results_for(channel, alice))
        attachment = delivered[0].attachments[0]
        assert attachment.filename.endswith(".mp4")
        assert clips.frame_count(downloaded(env, attachment)) == 5
        assert "Udnie" in delivered[0].content
        job = (await core.db.recent_jobs(alice.id, platform="discord"))[0]
        assert (job.kind, job.clip["quality"]) == ("clip", "instant")  # the clip's default quality
        assert job.settings["strength"] == STRENGTHS["strong"]
        assert job.settings["preserve_colors"] == "luminance"


async def test_paint_s_painted_qualities_ask_for_the_painted_clip(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, core):
        _, channel, alice = art_channel(env)
        await alice.slash(channel, "paint", image=("dance.gif", clips.gif(3)), style="udnie", quality="high")
        await until(env, lambda: results_for(channel, alice))
        job = (await core.db.recent_jobs(alice.id, platform="discord"))[0]
        assert job.clip["quality"] == "painted"


async def test_a_still_gif_sent_to_paint_is_painted_as_a_picture(
    discord_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also: the GIF is parsed off the event loop (its bytes can be the download limit's)."""
    threads: list[bool] = []

    def is_animated(data: bytes) -> bool:
        threads.append(threading.current_thread() is threading.main_thread())
        return attachments.is_animated(data)

    monkeypatch.setattr(jobs_module, "is_animated", is_animated)
    async with discord_bot(discord_settings()) as (env, core):
        _, channel, alice = art_channel(env)
        await alice.slash(channel, "paint", image=("still.gif", clips.gif(1)), style="udnie")
        delivered = await until(env, lambda: results_for(channel, alice))
        assert not delivered[0].attachments[0].filename.endswith((".mp4", ".gif"))
        job = (await core.db.recent_jobs(alice.id, platform="discord"))[0]
        assert job.clip is None
        assert threads == [False]


async def test_paint_this_on_a_gif_paints_the_clip(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, core):
        guild, channel, alice = art_channel(env)
        bob = guild.add_member(env.create_user("bob"))
        posted = await bob.send(channel, "look", attachments=[("dance.gif", clips.gif(4))])
        picker = await alice.context_menu(channel, "Paint this", posted)
        await alice.select(picker.response, ["the_scream"])
        delivered = await until(env, lambda: results_for(channel, alice))
        assert clips.frame_count(downloaded(env, delivered[0].attachments[0])) == 4
        job = (await core.db.recent_jobs(alice.id, platform="discord"))[0]
        assert job.kind == "clip"


async def test_a_switched_off_server_s_video_sent_to_paint_is_refused_before_it_is_downloaded(
    discord_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fetched(attachment: object) -> bytes:
        raise AssertionError("the clip was downloaded")

    monkeypatch.setattr(jobs_module, "download_clip", fetched)
    async with discord_bot(discord_settings()) as (env, core):
        guild, channel, alice = art_channel(env)
        await core.db.set_chat_enabled("discord", guild.id, False, by=1)
        result = await alice.slash(channel, "paint", image=("dance.mp4", clips.mp4(4)), style="udnie")
        answers = ([result.response] if result.response else []) + result.followups
        assert [a.ephemeral for a in answers] == [True]
        assert "switched off here" in answers[0].content
        assert await core.db.recent_jobs(alice.id, platform="discord") == []


async def test_progress_counts_frames_and_cancel_stops_a_clip(discord_settings) -> None:
    async with discord_bot(discord_settings(discord_status_interval=0.0), engine=SLOW) as (env, core):
        _, channel, alice = art_channel(env)
        result = await alice.slash(channel, "clip", clip=("dance.mp4", clips.mp4(12)), style="udnie")
        job = (await core.db.recent_jobs(alice.id, platform="discord"))[0]
        await until(
            env,
            lambda: [
                r for r in requests(env, "PATCH", "/messages/@original") if "frame 1 of 12" in str(r.json)
            ],
        )
        await alice.click(result.response, custom_id=f"cancel:{job.id}")
        assert (await core.db.get_job(job.id)).state == "cancelled"
        await until(env, lambda: "ancel" in result.response.content and not result.response.components)
        await until(env, lambda: core.queue.status().busy == 0)  # stopped between frames
        assert not results_for(channel, alice)


async def test_a_switched_off_server_s_clip_is_refused_before_it_is_downloaded(
    discord_settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moderation comes first (reviewer2 #6): "switched off", not "too long", and nothing is fetched."""

    async def fetched(attachment: object) -> bytes:
        raise AssertionError("the clip was downloaded")

    monkeypatch.setattr(clip_command_module, "download_clip", fetched)
    async with discord_bot(discord_settings(clip_max_seconds=1)) as (env, core):
        guild, channel, alice = art_channel(env)
        await core.db.set_chat_enabled("discord", guild.id, False, by=1)
        result = await alice.slash(channel, "clip", clip=("long.mp4", clips.mp4(24)), style="udnie")
        answers = ([result.response] if result.response else []) + result.followups
        assert [a.ephemeral for a in answers] == [True]
        assert "switched off here" in answers[0].content
        assert await core.db.recent_jobs(alice.id, platform="discord") == []

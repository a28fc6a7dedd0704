"""How the Discord front end lives with what Discord refuses or fails mid-job (issues 18 and 19): a status a
moderator deleted, an interaction token that stopped working, a channel the bot may not write in, rate
limits, server errors, timeouts and answers lost after Discord did the work (``DiscordFaults``, which runs
discord.py's own request loops, so its own waiting and retrying is what these tests see). Each job gets its
painting once (follow-up → channel message → DM), or is given up when Discord refuses every way; no retry
storm, and nothing raises."""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from typing import Any

import discord
import pytest

from bot import retrying
from tests.bot.discord.conftest import (
    GATED,
    art_channel,
    discord_world,
    downloaded,
    faulty_world,
    requests,
    results_for,
    until,
)
from tests.fakes import images
from tests.fakes.engine import Gate, invert

PHOTO = images.pattern(64, 48)
STEADY = "tests.fakes.engine:steady_engine"  # 20 steps of 50 ms: calls enough to meet the faults


FOLLOW_UP = "POST /webhooks/{id}/{token}"
STATUS_BY_TOKEN = "PATCH /webhooks/{id}/{token}/messages/@original"


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bot's own pauses between tries, shortened (discord.py's own are real)."""
    monkeypatch.setattr(retrying, "PAUSES", (0.05, 0.1, 0.1))
    monkeypatch.setattr(retrying, "PATIENT_FIRST", 0.05)
    monkeypatch.setattr(retrying, "PATIENT_CAP", 0.2)


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
    discord_settings, caplog: pytest.LogCaptureFixture, gate: Gate
) -> None:
    caplog.set_level(logging.INFO)
    settings = discord_settings(discord_status_interval=0.0)  # every event tries to edit
    async with discord_world(settings, engine=GATED) as bot:
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
        gate.release(2)

        def painted() -> list:
            return [m for m in results_for(channel, alice) if "The Scream" in m.content]

        delivered = await until(env, painted)
        assert downloaded(env, delivered[0].attachments[0]) == invert(PHOTO)
        assert queued.followups, "delivered as a follow-up: the token still works"
        second = await recorded(core, alice.id)
        assert second.state == "done"
        assert second.result_file_id == str(delivered[0].id)
        # One edit found the status gone; none after it (the job's steps were each a progress event).
        token = queued._interaction.token
        edits = [
            r
            for r in env.http_requests[since:]
            if r.method == "PATCH" and (f"/{token}/messages/@original" in r.path or str(status_id) in r.path)
        ]
        assert len(edits) == 1, [r.path for r in edits]
    assert tracebacks(caplog) == []


async def test_a_token_that_stops_working_falls_back_to_the_channel(
    discord_settings, caplog: pytest.LogCaptureFixture, gate: Gate
) -> None:
    caplog.set_level(logging.INFO)
    async with discord_world(discord_settings(), engine=GATED) as bot:
        env, core = bot.env, bot.core
        _, channel, alice = art_channel(env)
        result = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        assert result.response is not None
        token_dies(env)
        gate.release()

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
    discord_settings, caplog: pytest.LogCaptureFixture, gate: Gate
) -> None:
    caplog.set_level(logging.INFO)
    async with discord_world(discord_settings(), engine=GATED) as bot:
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
        gate.release()

        delivered = await until(env, lambda: results_for(user.dm_channel, alice))
        assert downloaded(env, delivered[0].attachments[0]) == invert(PHOTO)
        job = await recorded(core, alice.id)
        assert job.result_file_id == str(delivered[0].id)
    assert tracebacks(caplog) == []


def job_of(message: Any) -> int:
    """The job a result message belongs to (its buttons carry it)."""
    ids = [getattr(item, "custom_id", "") or "" for row in message.components for item in row.children]
    return next(int(m.group(1)) for i in ids if (m := re.fullmatch(r"again:(\d+)", i)))


async def latest_job(core, user_id: int) -> Any:
    return max(await core.db.recent_jobs(user_id, platform="discord"), key=lambda j: j.id)


def bot_warnings(caplog: pytest.LogCaptureFixture, fragment: str) -> list[str]:
    """The bot's own warnings holding ``fragment`` as a word (a pid 4293 in an info line is no 429)."""
    word = re.compile(rf"(?<!\w){re.escape(fragment)}(?!\w)")
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("bot.") and r.levelno >= logging.WARNING and word.search(r.getMessage())
    ]


async def test_rate_limits_are_waited_out_by_discord_py_and_the_painting_arrives_once(
    discord_settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = discord_settings(discord_status_interval=0.0)  # each of the 20 steps' progress is an edit
    async with faulty_world(settings, engine=STEADY) as (bot, faults):
        env, core = bot.env, bot.core
        _, channel, alice = art_channel(env)
        faults.set(share=0.3, kinds=("429",), retry_after=0.05)
        result = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        delivered = await until(env, lambda: results_for(channel, alice))
        await until(env, lambda: result.response is not None and "Done" in result.response.content)
        job = await recorded(core, alice.id)
        assert job.result_file_id == str(delivered[0].id)
        assert len(results_for(channel, alice)) == 1
        limited = sum(n for (_, kind), n in faults.injected.items() if kind == "429")
        assert limited >= 3, faults.injected
        # Each 429 was a real one to discord.py: it logged it and slept its retry_after before trying again.
        waited = [
            r for r in caplog.records if r.name.startswith("discord") and "rate limited" in r.getMessage()
        ]
        assert len(waited) == limited
        # None reached the bot's code, and the bot added no retry of its own.
        assert bot_warnings(caplog, "429") == []
        assert bot_warnings(caplog, "trying again") == []
    assert tracebacks(caplog) == []


async def test_a_rate_limit_that_outlasts_discord_py_is_not_retried_on_top(
    discord_settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings()) as (bot, faults):
        env, core = bot.env, bot.core
        _, channel, alice = art_channel(env)
        faults.set("POST", "/webhooks/*", share=1.0, kinds=("429",), retry_after=0.01, times=5)
        result = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        await until(env, lambda: "could not send it just now" in result.response.content)
        # discord.py's five tries, and not one more: the bot leaves the result for later.
        assert faults.outcomes(FOLLOW_UP) == Counter({"429": 5})
        assert results_for(channel, alice) == []
        await core.notifier.redeliver()
        delivered = await until(env, lambda: results_for(channel, alice))
        assert len(delivered) == 1
        assert (await recorded(core, alice.id)).result_file_id == str(delivered[0].id)
        await until(env, lambda: "Done" in result.response.content)
    assert tracebacks(caplog) == []


async def test_server_errors_are_retried_by_discord_py_and_then_by_the_bot(
    discord_settings, caplog: pytest.LogCaptureFixture, gate: Gate
) -> None:
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings(), engine=GATED) as (bot, faults):
        env, core = bot.env, bot.core
        _, channel, alice = art_channel(env)
        # A 502 on the follow-up: discord.py's webhook adapter tries again by itself (after 1 s).
        faults.set("POST", "/webhooks/*", share=1.0, kinds=("5xx",), server_errors=(502,), times=1)
        gate.release()
        first = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        await until(env, lambda: "Done" in first.response.content)
        assert len(first.followups) == 1
        assert faults.outcomes(FOLLOW_UP) == Counter({"502": 1, "ok": 1})

        # A 503 is not retried by discord.py's HTTP client: the bot tries the result and its last status
        # word again itself.
        second = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="the_scream")
        token_dies(env)  # the result goes to the channel, the status is edited as a message
        faults.set(
            "POST",
            f"/channels/{channel.id}/messages",
            share=1.0,
            kinds=("5xx",),
            server_errors=(503,),
            times=2,
        )
        faults.set(
            "PATCH",
            f"/channels/{channel.id}/messages/*",
            share=1.0,
            kinds=("5xx",),
            server_errors=(503,),
            times=2,
            where=lambda body: "Done" in str(body.get("content")),
        )
        gate.release()
        painted = await until(env, lambda: [m for m in results_for(channel, alice) if "Scream" in m.content])
        assert len(painted) == 1
        assert (await recorded(core, alice.id)).result_file_id == str(painted[0].id)
        assert faults.outcomes("POST /channels/{id}/messages") == Counter({"503": 2, "ok": 1})
        await until(env, lambda: "Done" in second.response.content)
        assert len(bot_warnings(caplog, "trying again")) == 4  # two for the result, two for "Done"
    assert tracebacks(caplog) == []


async def test_timeouts_on_status_edits_and_on_the_result_are_tried_again(
    discord_settings, caplog: pytest.LogCaptureFixture, gate: Gate
) -> None:
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings(), engine=GATED) as (bot, faults):
        env, core = bot.env, bot.core
        _, channel, alice = art_channel(env)
        result = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        faults.set("PATCH", "/webhooks/*/messages/@original", share=1.0, kinds=("timeout",), times=3)
        faults.set("POST", "/webhooks/*", share=1.0, kinds=("timeout",), times=2)
        gate.release()
        delivered = await until(env, lambda: results_for(channel, alice))
        assert downloaded(env, delivered[0].attachments[0]) == invert(PHOTO)
        await until(env, lambda: "Done" in result.response.content)
        assert len(results_for(channel, alice)) == 1
        assert (await recorded(core, alice.id)).result_file_id == str(delivered[0].id)
        assert faults.outcomes(FOLLOW_UP) == Counter({"timeout": 2, "ok": 1})
        assert faults.outcomes(STATUS_BY_TOKEN)["timeout"] == 3
    assert tracebacks(caplog) == []


async def test_a_channel_send_whose_answer_was_lost_is_not_sent_twice(
    discord_settings, caplog: pytest.LogCaptureFixture, gate: Gate
) -> None:
    """Discord created the message, the bot never heard: its retry carries the same nonce, and Discord
    (enforce_nonce) answers with the message it already created."""
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings(), engine=GATED) as (bot, faults):
        env, core = bot.env, bot.core
        _, channel, alice = art_channel(env)
        result = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        token_dies(env)
        faults.set("POST", f"/channels/{channel.id}/messages", share=1.0, kinds=("lost",), times=1)
        gate.release()
        delivered = await until(env, lambda: results_for(channel, alice))
        await until(env, lambda: "Done" in result.response.content)
        assert len(results_for(channel, alice)) == 1
        assert (await recorded(core, alice.id)).result_file_id == str(delivered[0].id)
        assert faults.outcomes("POST /channels/{id}/messages") == Counter({"lost": 1, "ok": 1})
    assert tracebacks(caplog) == []


@pytest.mark.parametrize("readable", [True, False])
async def test_a_follow_up_whose_answer_was_lost_is_looked_for_before_it_is_sent_again(
    discord_settings, caplog: pytest.LogCaptureFixture, readable: bool
) -> None:
    """A follow-up has no nonce: when Discord made it but its answer was lost, the bot looks for it among
    the channel's latest messages before sending again. Only where it may not read the channel does the
    painting come twice (the one duplicate allowed: better than leaving it unsent)."""
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings()) as (bot, faults):
        env, core = bot.env, bot.core
        _, channel, alice = art_channel(env)
        if not readable:
            env.inject_error("GET", f"/channels/{channel.id}/messages", status=403, code=50001, times=None)
        faults.set("POST", "/webhooks/*", share=1.0, kinds=("lost",), times=1)
        result = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        await until(env, lambda: "Done" in result.response.content)
        assert len(result.followups) == (1 if readable else 2)
        assert (await recorded(core, alice.id)).result_file_id == str(result.followups[-1].id)
        assert faults.outcomes(FOLLOW_UP) == Counter({"lost": 1} if readable else {"lost": 1, "ok": 1})
    assert tracebacks(caplog) == []


@pytest.mark.parametrize("kind", ["lost", "timeout"])
async def test_a_deferral_without_an_answer_still_starts_the_job(
    discord_settings, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """The interaction's deferral got no answer: Discord may have it ("lost") or not ("timeout"); the job
    starts either way and its painting comes once. (Discord refusing the deferral starts nothing.)"""
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings()) as (bot, faults):
        env, core = bot.env, bot.core
        _, channel, alice = art_channel(env)
        faults.set("POST", "/interactions/*", share=1.0, kinds=(kind,), times=1)
        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        delivered = await until(env, lambda: results_for(channel, alice))
        job = await recorded(core, alice.id)
        assert job.result_file_id == str(delivered[0].id)
        await asyncio.sleep(0.3)
        assert len(results_for(channel, alice)) == 1
    assert tracebacks(caplog) == []


async def test_an_interaction_that_expired_before_its_deferral_is_painted_all_the_same(
    discord_settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The deferral came after Discord's 3 seconds (slowed by a rate limit and retried 5xx): Discord says
    Unknown Interaction and shows the user "did not respond". The photo is here, so it is painted and
    delivered (found in the soak: before, no job was made and the photo was lost)."""
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings()) as (bot, _faults):
        env, core = bot.env, bot.core
        _, channel, alice = art_channel(env)
        env.inject_error("POST", "/interactions/*", status=404, code=10062, message="Unknown interaction")
        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        delivered = await until(env, lambda: results_for(channel, alice))
        job = await recorded(core, alice.id)
        assert job.result_file_id == str(delivered[0].id)
        assert downloaded(env, delivered[0].attachments[0]) == invert(PHOTO)
    assert any("expired before its deferral" in r.getMessage() for r in caplog.records)
    assert tracebacks(caplog) == []


async def test_the_animation_comes_once_through_a_server_error_and_a_lost_answer(
    discord_settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings()) as (bot, faults):
        env = bot.env
        _, channel, alice = art_channel(env)
        # The triptych goes as a follow-up; the channel's only message is the GIF: a 503, then a lost answer.
        faults.set("POST", f"/channels/{channel.id}/messages", share=1.0, kinds=("lost",), times=1)
        faults.set(
            "POST",
            f"/channels/{channel.id}/messages",
            share=1.0,
            kinds=("5xx",),
            server_errors=(503,),
            times=1,
        )
        await alice.slash(channel, "forming", image=("photo.png", PHOTO), style="udnie")

        def gifs() -> list[Any]:
            return [
                m
                for m in channel.history()
                if m.author.bot and any(a.filename.endswith(".gif") for a in m.attachments)
            ]

        await until(env, gifs)
        await asyncio.sleep(0.3)
        assert len(gifs()) == 1
        assert faults.outcomes("POST /channels/{id}/messages") == Counter({"503": 1, "lost": 1, "ok": 1})
    assert tracebacks(caplog) == []


async def test_an_ephemeral_refusal_comes_through_a_timeout(
    discord_settings, caplog: pytest.LogCaptureFixture, gate: Gate
) -> None:
    """A refusal after the deferral (here: one job at a time) is an ephemeral follow-up: tried again after a
    timeout, not raised out of the command."""
    caplog.set_level(logging.INFO)
    settings = discord_settings(max_active_jobs=1)
    async with faulty_world(settings, engine=GATED) as (bot, faults):  # the first job waits to be cancelled
        env = bot.env
        _, channel, alice = art_channel(env)
        first = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        assert first.response is not None
        faults.set("POST", "/webhooks/*", share=1.0, kinds=("timeout",), times=1)
        second = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        assert [f.ephemeral for f in second.followups] == [True]
        assert "in progress" in second.followups[0].content
        assert faults.outcomes(FOLLOW_UP) == Counter({"timeout": 1, "ok": 1})
        await alice.slash(channel, "cancel")
    assert tracebacks(caplog) == []


@pytest.mark.parametrize(
    ("status", "code", "message"), [(403, 50001, "Missing Access"), (404, 10003, "Unknown Channel")]
)
async def test_with_every_way_refused_the_painting_is_given_up_and_the_status_left_alone(
    discord_settings, caplog: pytest.LogCaptureFixture, gate: Gate, status: int, code: int, message: str
) -> None:
    """No token, a channel the bot was removed from (or that was deleted), a user whose DMs are closed: the
    result is given up once, and the job's progress events edit nothing after the first refusal."""
    caplog.set_level(logging.INFO)
    settings = discord_settings(discord_status_interval=0.0)  # every progress event would edit
    async with faulty_world(settings, engine=GATED) as (bot, faults):
        env, core = bot.env, bot.core
        _, channel, alice = art_channel(env)
        result = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        job = await latest_job(core, alice.id)
        since = len(faults.attempts)
        token_dies(env)
        faults.refuse_channel(channel.id, status=status, code=code, message=message)
        faults.refuse_dms(alice.id)
        gate.release()

        async def given_up() -> Any:
            current = await core.db.get_job(job.id)
            return current if current.delivery_given_up_at is not None else None

        ended = None
        for _ in range(400):
            if (ended := await given_up()) is not None:
                break
            await asyncio.sleep(0.05)
        assert ended is not None, env.transcript()[-3000:]
        assert "50007" in ended.delivery_given_up_reason
        assert ended.result_file_id is None
        await asyncio.sleep(0.5)  # anything still to come would come now
        paths = Counter(a.path for a in faults.attempts[since:])
        assert paths[f"/channels/{channel.id}/messages"] == 1  # the result, refused at once
        assert paths[f"/channels/{channel.id}/messages/{result.response.id}"] == 1  # the status, forgotten
        assert sum(n for p, n in paths.items() if p.endswith("/messages/@original")) == 1  # the dead token
        dm = [
            a
            for a in faults.attempts[since:]
            if a.path.endswith("/messages") and a.path != f"/channels/{channel.id}/messages"
        ]
        assert [a.outcome for a in dm] == ["403"]  # the DM, refused once
        assert results_for(channel, alice) == []
        assert "Done" not in result.response.content
    assert tracebacks(caplog) == []


async def test_random_faults_leave_every_painting_delivered_once(
    discord_settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Ten people's jobs under a fifth of every call failing (429, 5xx, timeouts, lost answers; interaction
    callbacks spared): each painting arrives exactly once, at once or when the notifier sends what waits
    (the bot's redelivery)."""
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings(), seed=19) as (bot, faults):
        env, core = bot.env, bot.core
        guild, channel, alice = art_channel(env)
        people = [alice, *(guild.add_member(env.create_user(f"painter{i}")) for i in range(9))]
        faults.set(share=0.2, retry_after=0.05, server_errors=(503,))
        faults.set("POST", "/interactions/*", share=0.0)
        for i, person in enumerate(people):
            await person.slash(
                channel, "paint", image=("photo.png", PHOTO), style=("udnie", "the_scream")[i % 2]
            )
        jobs = [await latest_job(core, person.id) for person in people]

        async def settled() -> bool:
            return not any([(await core.db.get_job(j.id)).is_active for j in jobs])

        for _ in range(600):
            if await settled():
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)
        assert sum(faults.injected.values()) >= 10, faults.injected
        faults.off()
        await core.notifier.redeliver()

        def results() -> list[Any]:
            return [m for m in channel.history() if m.author.bot and m.attachments and m.components]

        await until(env, lambda: len({job_of(m) for m in results()}) == 10)
        assert Counter(job_of(m) for m in results()) == Counter({j.id: 1 for j in jobs})
        for j in jobs:
            assert (await core.db.get_job(j.id)).result_file_id is not None
    assert tracebacks(caplog) == []


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


async def test_the_last_word_of_a_status_outlasts_an_outage(
    discord_settings, caplog: pytest.LogCaptureFixture
) -> None:
    """Discord fails the "Done" edit for longer than the quick tries (an outage of a minute, say): the last
    word is kept and tried again with growing pauses until it is shown, never dropped."""
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings()) as (bot, faults):
        env = bot.env
        _, channel, alice = art_channel(env)
        outage = len(retrying.PAUSES) + 1 + 5  # the quick tries, and five patient ones
        faults.set(
            "PATCH",
            "/webhooks/*/messages/@original",
            share=1.0,
            kinds=("timeout",),
            times=outage,
            where=lambda body: "Done" in str(body.get("content")),
        )
        result = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        await until(env, lambda: results_for(channel, alice))
        await until(env, lambda: "Done" in result.response.content)
        assert faults.outcomes(STATUS_BY_TOKEN)["timeout"] == outage
        assert not result.response.components  # no Cancel button left on a finished job
        retried = bot_warnings(caplog, "last status failed")
        assert len(retried) == outage - 1
        assert all(f"(user {alice.id})" in line for line in retried)
    assert errors_logged(caplog) == []
    assert tracebacks(caplog) == []


async def test_a_kept_last_word_gives_way_to_a_newer_one(
    discord_settings, caplog: pytest.LogCaptureFixture
) -> None:
    """ "Could not send it just now" cannot be shown (Discord keeps timing out on it) and is kept trying;
    the result then goes out on redelivery and "Done" replaces it: the old word is tried no more."""
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings()) as (bot, faults):
        env, core = bot.env, bot.core
        _, channel, alice = art_channel(env)
        faults.set("POST", "/webhooks/*", share=1.0, kinds=("429",), retry_after=0.01, times=5)
        faults.set(
            "PATCH",
            "/webhooks/*/messages/@original",
            share=1.0,
            kinds=("timeout",),
            where=lambda body: "could not send" in str(body.get("content")),
        )
        result = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        await until(env, lambda: faults.outcomes(STATUS_BY_TOKEN)["timeout"] > len(retrying.PAUSES) + 1)
        await core.notifier.redeliver()
        await until(env, lambda: "Done" in result.response.content)
        tried = faults.outcomes(STATUS_BY_TOKEN)["timeout"]
        await asyncio.sleep(3 * retrying.PATIENT_CAP)
        assert faults.outcomes(STATUS_BY_TOKEN)["timeout"] == tried
        assert "Done" in result.response.content
    assert errors_logged(caplog) == []
    assert tracebacks(caplog) == []

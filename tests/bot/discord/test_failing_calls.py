"""Discord failing the bot outside a job's way (issue 19): a command's or a button's call that Discord fails
(a timeout, a 503) is one WARNING line naming the user, never discord.py's "Ignoring exception" traceback;
a real bug still logs its traceback; the user hears an apology with a reference either way."""

from __future__ import annotations

import logging
import re

import pytest

from bot import retrying
from tests.bot.discord.conftest import GATED, art_channel, faulty_world, results_for, until
from tests.bot.discord.test_faults import PHOTO, latest_job, tracebacks
from tests.fakes.engine import Gate


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrying, "PAUSES", (0.05, 0.1, 0.1))
    monkeypatch.setattr(retrying, "PATIENT_FIRST", 0.05)
    monkeypatch.setattr(retrying, "PATIENT_CAP", 0.2)


def records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and r.name.startswith(("bot.", "discord"))]


async def test_a_command_whose_answer_discord_fails_is_a_warning_with_the_user(
    discord_settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings()) as (bot, faults):
        _, channel, alice = art_channel(bot.env)
        faults.set("POST", "/webhooks/*", share=1.0, kinds=("timeout",), times=1)  # /styles' follow-up
        result = await alice.slash(channel, "styles")
        assert [f.ephemeral for f in result.followups] == [True]
        assert "Reference" in result.followups[0].content  # the apology, ephemeral
        assert [type(e.__cause__) for e in bot.env.errors] == [TimeoutError]  # seen (and let go) by SimCord
    (warning,) = [r for r in records(caplog, logging.WARNING) if "a call failed" in r.getMessage()]
    assert f"user {alice.id}" in warning.getMessage()
    assert "TimeoutError" in warning.getMessage()
    assert records(caplog, logging.ERROR) == []
    assert tracebacks(caplog) == []


async def test_a_button_whose_answer_discord_fails_is_a_warning_with_the_user(
    discord_settings, caplog: pytest.LogCaptureFixture, gate: Gate
) -> None:
    """Cancel is a ``DynamicItem``: discord.py runs it outside any view and would log its exception itself."""
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings(), engine=GATED) as (bot, faults):
        env, core = bot.env, bot.core
        _, channel, alice = art_channel(env)
        result = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        job = await latest_job(core, alice.id)
        faults.set("POST", "/interactions/*", share=1.0, kinds=("timeout",), times=1)  # the press's deferral
        await alice.click(result.response, custom_id=f"cancel:{job.id}")
        await until(env, lambda: records(caplog, logging.WARNING) and "ancel" in result.response.content)
        assert (await core.db.get_job(job.id)).state == "cancelled"
    warnings = [
        r.getMessage() for r in records(caplog, logging.WARNING) if "acknowledgement" in r.getMessage()
    ]
    assert len(warnings) == 1  # the job is cancelled all the same: no apology, no "Discord failed a call"
    assert f"user {alice.id}" in warnings[0]
    assert records(caplog, logging.ERROR) == []
    assert tracebacks(caplog) == []


async def test_a_bug_in_a_command_is_still_an_error_with_its_traceback(
    discord_settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings()) as (bot, _):
        _, channel, alice = art_channel(bot.env)

        async def broken(**_: object) -> None:
            raise RuntimeError("a bug")

        monkeypatch.setattr(bot.core.paintings, "overview", broken)
        result = await alice.slash(channel, "styles")
        assert "Reference" in result.followups[0].content
        assert [type(e.__cause__) for e in bot.env.errors] == [RuntimeError]
    (error,) = records(caplog, logging.ERROR)
    assert error.exc_info is not None
    assert isinstance(error.exc_info[1], RuntimeError)
    assert f"discord user {alice.id}" in error.getMessage()


async def test_a_refusal_after_a_deferral_whose_answer_was_lost_reaches_the_user(
    discord_settings, caplog: pytest.LogCaptureFixture, gate: Gate
) -> None:
    """Discord had the deferral but its answer was lost: discord.py thinks nothing was answered, yet a
    first response now would be refused (40060 "already acknowledged") and leave "thinking…" up for
    good. The refusal (one job at a time) comes as an ephemeral follow-up, and the public response goes."""
    caplog.set_level(logging.INFO)
    settings = discord_settings(max_active_jobs=1)
    async with faulty_world(settings, engine=GATED) as (bot, faults):
        env = bot.env
        _, channel, alice = art_channel(env)
        first = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        assert first.response is not None
        faults.set("POST", "/interactions/*", share=1.0, kinds=("lost",), times=1)
        second = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        await until(env, lambda: second.followups)
        assert [f.ephemeral for f in second.followups] == [True]
        assert "in progress" in second.followups[0].content
        assert faults.outcomes("POST /interactions/{id}/{token}/callback") == {"ok": 1, "lost": 1}
        await alice.slash(channel, "cancel")
    # Discord's code 40060 as a number of its own, not digits inside an id, a port or a pid.
    assert not [r for r in caplog.records if re.search(r"(?<!\d)40060(?!\d)", r.getMessage())]
    assert not [r for r in caplog.records if "could not be sent" in r.getMessage()]
    assert tracebacks(caplog) == []


async def test_a_settings_change_whose_panel_discord_fails_is_saved_and_says_so_in_the_log(
    discord_settings, caplog: pytest.LogCaptureFixture
) -> None:
    """The /settings panel saves the choice, then edits itself (its acknowledgement): that edit failing is
    one WARNING saying the setting was saved, not "nothing was done" to a user whose setting changed."""
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings()) as (bot, faults):
        _, channel, alice = art_channel(bot.env)
        panel = await alice.slash(channel, "settings")
        faults.set("POST", "/interactions/*", share=1.0, kinds=("timeout",), times=1)  # the panel's edit
        await alice.select(panel.response, ["high"], custom_id="set:quality")
        await until(bot.env, lambda: records(caplog, logging.WARNING))
        user = await bot.core.db.get_user(alice.id, platform="discord")
        assert user.settings["quality"] == "high"  # changed; only showing it failed
        assert bot.env.errors == []  # handled: nothing raised to discord.py
    (warning,) = [r.getMessage() for r in records(caplog, logging.WARNING) if "saved" in r.getMessage()]
    assert f"discord user {alice.id}: quality saved, but the settings panel could not be refreshed" in warning
    assert not [
        r for r in caplog.records if "failed a call" in r.getMessage() or "acknowledge" in r.getMessage()
    ]
    assert records(caplog, logging.ERROR) == []
    assert tracebacks(caplog) == []


async def test_a_database_failure_before_the_acknowledgement_is_no_fault_of_discord(
    discord_settings, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/settings reads the preferences before its answer: the database refusing the connection (an
    OSError, as Discord's timeouts are) gets the apology, not "Discord didn't confirm my answer"."""
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings()) as (bot, _):
        _, channel, alice = art_channel(bot.env)

        async def unreachable(*_: object, **__: object) -> None:
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")

        monkeypatch.setattr(bot.core.users, "preferences", unreachable)
        result = await alice.slash(channel, "settings")
        answers = ([result.response] if result.response else []) + result.followups
        assert [a.ephemeral for a in answers] == [True]
        assert "went wrong on my side" in answers[0].content
        assert "Discord didn't confirm" not in answers[0].content
        assert [type(e.__cause__) for e in bot.env.errors] == [ConnectionRefusedError]  # seen, let go
    assert not [r for r in caplog.records if "Discord failed" in r.getMessage()]
    (warning,) = [r.getMessage() for r in records(caplog, logging.WARNING) if "call failed" in r.getMessage()]
    assert f"discord user {alice.id}" in warning
    assert "ConnectionRefusedError" in warning


async def test_a_command_discord_failed_to_acknowledge_says_nothing_was_done(
    discord_settings, caplog: pytest.LogCaptureFixture, gate: Gate
) -> None:
    """/cancel's deferral times out: the command stops there, cancelling nothing, and the user hears that
    Discord did not confirm the answer and to ask again, not "something went wrong on my side"."""
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings(), engine=GATED) as (bot, faults):
        env, core = bot.env, bot.core
        _, channel, alice = art_channel(env)
        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        job = await latest_job(core, alice.id)
        faults.set("POST", "/interactions/*", share=1.0, kinds=("timeout",), times=1)
        result = await alice.slash(channel, "cancel")
        answers = ([result.response] if result.response else []) + result.followups
        assert [a.ephemeral for a in answers] == [True]
        said = answers[0].content
        assert "Discord didn't confirm my answer in time" in said
        assert "nothing was done. Please try again." in said
        assert "Reference" in said
        assert "went wrong on my side" not in said
        assert (await core.db.get_job(job.id)).state != "cancelled"  # as it says
        assert [type(e.__cause__) for e in env.errors] == [TimeoutError]  # seen (and let go) by SimCord
        await alice.slash(channel, "cancel")
    assert records(caplog, logging.ERROR) == []


async def test_a_cancel_whose_acknowledgement_discord_dropped_cancels_without_an_apology(
    discord_settings, caplog: pytest.LogCaptureFixture, gate: Gate
) -> None:
    """Cancel withdraws the job, then acknowledges the press; Discord dropping the press by then (Unknown
    Interaction) leaves the job cancelled, its status saying so: no apology claiming something failed."""
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings(), engine=GATED) as (bot, _faults):
        env, core = bot.env, bot.core
        _, channel, alice = art_channel(env)
        result = await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        job = await latest_job(core, alice.id)
        env.inject_error("POST", "/interactions/*", status=404, code=10062, message="Unknown interaction")
        press = await alice.click(result.response, custom_id=f"cancel:{job.id}")
        await until(env, lambda: "ancel" in result.response.content)
        assert (await core.db.get_job(job.id)).state == "cancelled"
        said = ([press.response] if press.response else []) + press.followups
        assert not [m for m in said if "Reference" in (m.content or "")]
    assert records(caplog, logging.ERROR) == []


async def test_a_painting_whose_interaction_expired_is_announced_in_the_channel(
    discord_settings, caplog: pytest.LogCaptureFixture
) -> None:
    """/paint's deferral came after Discord's 3 seconds (Unknown Interaction): the user saw "did not
    respond" and no status can go up, but the painting goes on; the channel hears so, pinging the user,
    so they do not ask twice, and then the painting comes."""
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings()) as (bot, _faults):
        env = bot.env
        _, channel, alice = art_channel(env)
        env.inject_error("POST", "/interactions/*", status=404, code=10062, message="Unknown interaction")
        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        await until(env, lambda: results_for(channel, alice))
        told = [m for m in channel.history() if m.author.bot and "painted all the same" in m.content]
        assert len(told) == 1
        assert told[0].content.startswith(f"<@{alice.id}> Discord didn't pass my answer on in time")
        assert "it will appear here" in told[0].content
    assert records(caplog, logging.ERROR) == []
    assert tracebacks(caplog) == []


async def test_a_refusal_after_an_expired_interaction_is_told_in_the_channel(
    discord_settings, caplog: pytest.LogCaptureFixture, gate: Gate
) -> None:
    """/paint's deferral came too late (Unknown Interaction), and then the core refuses (one picture at a
    time): the token is dead, so the refusal comes in the channel, pinging the user, who would otherwise
    hear nothing after Discord's "did not respond"."""
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings(max_active_jobs=1), engine=GATED) as (bot, _faults):
        env = bot.env
        _, channel, alice = art_channel(env)
        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        env.inject_error("POST", "/interactions/*", status=404, code=10062, message="Unknown interaction")
        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style="udnie")
        told = await until(
            env,
            lambda: [m for m in channel.history() if m.author.bot and m.content.startswith(f"<@{alice.id}>")],
        )
        assert len(told) == 1
        assert "in progress" in told[0].content
        await alice.slash(channel, "cancel")
    assert records(caplog, logging.ERROR) == []
    assert tracebacks(caplog) == []


async def test_paint_this_whose_pick_expired_is_painted_all_the_same(
    discord_settings, caplog: pytest.LogCaptureFixture
) -> None:
    """ "Paint this" acknowledges its pick as /paint does (``jobs.begin``): a pick whose deferral came too
    late (Unknown Interaction) is painted all the same, and the painting comes in the channel."""
    caplog.set_level(logging.INFO)
    async with faulty_world(discord_settings()) as (bot, _faults):
        env = bot.env
        guild, channel, alice = art_channel(env)
        bob = guild.add_member(env.create_user("bob"))
        posted = await bob.send(channel, "look", attachments=[("photo.png", PHOTO)])
        picker = await alice.context_menu(channel, "Paint this", posted)
        env.inject_error("POST", "/interactions/*", status=404, code=10062, message="Unknown interaction")
        await alice.select(picker.response, ["the_scream"])
        await until(env, lambda: results_for(channel, alice))
    assert any("expired before its deferral" in r.getMessage() for r in caplog.records)
    assert records(caplog, logging.ERROR) == []
    assert tracebacks(caplog) == []

"""Tests of DiscordFaults itself, driven by discord.py's own client over SimCord as the bot would drive it:
what each kind of fault looks like to discord.py, and what discord.py makes of it."""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
import simcord

from tests.fakes.discord_faults import DiscordFaults, route_of


@contextlib.asynccontextmanager
async def world(seed: int = 0) -> AsyncIterator[tuple[Any, discord.Client, DiscordFaults, Any]]:
    client = discord.Client(intents=discord.Intents.default())
    async with simcord.run(client) as env:
        faults = DiscordFaults(env, seed=seed)
        guild = env.create_guild()
        channel = guild.create_text_channel("art")
        try:
            yield env, client, faults, channel
        finally:
            faults.close()


def sent(channel: Any) -> list[Any]:
    return [m for m in channel.history() if m.author.bot]


def test_routes_are_named_without_their_ids_and_tokens() -> None:
    assert route_of("PATCH", "/webhooks/123/abc.DEF/messages/@original") == (
        "PATCH /webhooks/{id}/{token}/messages/@original"
    )
    assert route_of("POST", "/interactions/9/tok/callback") == "POST /interactions/{id}/{token}/callback"
    assert route_of("POST", "/channels/42/messages") == "POST /channels/{id}/messages"


async def test_a_429_is_slept_out_by_discord_py_and_the_message_sent_once() -> None:
    async with world() as (_env, client, faults, channel):
        faults.set("POST", "/channels/*/messages", share=1.0, kinds=("429",), retry_after=0.01, times=2)
        await client.get_partial_messageable(channel.id).send("hello")
        assert [m.content for m in sent(channel)] == ["hello"]
        assert faults.outcomes("POST /channels") == Counter({"429": 2, "ok": 1})
        assert faults.injected == Counter({("POST /channels/{id}/messages", "429"): 2})


async def test_five_429s_reach_the_caller_as_discord_py_gives_up() -> None:
    async with world() as (_env, client, faults, channel):
        faults.set("POST", "/channels/*/messages", share=1.0, kinds=("429",), retry_after=0.01)
        with pytest.raises(discord.HTTPException) as raised:
            await client.get_partial_messageable(channel.id).send("hello")
        assert raised.value.status == 429
        assert faults.outcomes() == Counter({"429": 5})
        assert sent(channel) == []


async def test_server_errors_as_discord_py_treats_them() -> None:
    async with world() as (_env, client, faults, channel):
        target = client.get_partial_messageable(channel.id)
        faults.set("POST", "/channels/*/messages", share=1.0, kinds=("5xx",), server_errors=(503,), times=1)
        with pytest.raises(discord.DiscordServerError):  # the HTTP client does not retry a 503
            await target.send("first")
        faults.set("POST", "/channels/*/messages", share=1.0, kinds=("5xx",), server_errors=(502,), times=1)
        await target.send("second")  # a 502 it retries (after a second)
        assert [m.content for m in sent(channel)] == ["second"]
        assert [a.outcome for a in faults.attempts] == ["503", "502", "ok"]


async def test_a_timeout_is_not_carried_out_and_a_lost_answer_is() -> None:
    async with world() as (_env, client, faults, channel):
        target = client.get_partial_messageable(channel.id)
        faults.set("POST", "/channels/*/messages", share=1.0, kinds=("timeout",), times=1)
        with pytest.raises(TimeoutError):
            await target.send("timed out")
        faults.set("POST", "/channels/*/messages", share=1.0, kinds=("lost",), times=1)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await target.send("lost")
        assert [m.content for m in sent(channel)] == ["lost"]


async def test_a_nonce_makes_a_retry_return_the_message_already_made() -> None:
    async with world() as (_env, client, faults, channel):
        target = client.get_partial_messageable(channel.id)
        faults.set("POST", "/channels/*/messages", share=1.0, kinds=("lost",), times=1)
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await target.send("once", nonce="r1")
        again = await target.send("once", nonce="r1")
        assert [m.id for m in sent(channel)] == [again.id]
        await target.send("other", nonce="r2")
        assert len(sent(channel)) == 2


async def test_a_deleted_message_is_unknown_to_later_edits() -> None:
    async with world() as (_env, client, faults, channel):
        message = await client.get_partial_messageable(channel.id).send("status")
        faults.delete(channel.id, message.id)
        with pytest.raises(discord.NotFound) as gone:
            await message.edit(content="again")
        assert gone.value.code == 10008


async def test_refusals_last_and_shares_follow_the_seed() -> None:
    async with world() as (env, client, faults, channel):
        user = env.create_user("alice")
        faults.refuse_dms(user.id)
        dm = await (await client.fetch_user(user.id)).create_dm()
        with pytest.raises(discord.Forbidden) as refused:
            await dm.send("hi")
        assert refused.value.code == 50007
        faults.refuse_channel(channel.id, status=404, code=10003, message="Unknown Channel")
        with pytest.raises(discord.NotFound):
            await client.get_partial_messageable(channel.id).send("hi")
        faults.off()  # shares only: the refusals stay
        with pytest.raises(discord.NotFound):
            await client.get_partial_messageable(channel.id).send("hi")

    def draws(seed: int) -> list[str]:
        layer = DiscordFaults(type("Env", (), {"backend": type("Backend", (), {})()})(), seed=seed)
        layer.set(share=0.5)
        call = type("Call", (), {"method": "GET", "path": "/x", "json": None})()
        return [str(layer._roll(call)) for _ in range(20)]  # type: ignore[arg-type]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)
    with pytest.raises(ValueError, match="kinds"):
        DiscordFaults(type("Env", (), {"backend": type("Backend", (), {})()})()).set(
            share=0.1, kinds=("oops",)
        )

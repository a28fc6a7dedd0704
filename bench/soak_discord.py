"""The Discord half of ``bench.soak``: the bot in this process against SimCord, with ``DiscordFaults``.

SimCord is in-process only, so the bot's "kill" here abandons its core at once: its worker processes are
SIGKILLed, every task the core runs (the queue's dispatcher and event lines, the notifier's sends, the
redelivery, the status boards) is cancelled wherever it stands, nothing is stopped gracefully or drained,
and a new core and client start over the same database and data folder. Cancelled tasks still run their
``finally`` blocks, which a SIGKILL would not: the Telegram half's kill is the real one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.soak import (
    FAULT_KINDS,
    QUIET_SECONDS,
    REPO,
    STYLES,
    Photo,
    digest,
    jobs_of,
    kill,
    photo_bytes,
    rss_mb,
    shorten_redelivery,
    soak_queue,
    summary,
    worker_pids,
)
from bot.config import Settings
from bot.db import JobState
from bot.runtime import Runtime
from tests.fakes.engine import invert

CORE_CODE = str(REPO / "bot")


class DiscordLife:
    """One run of the bot's core and client in this process; ``kill`` abandons it as a crash would."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.core: Any = None
        self.runtime: Runtime | None = None

    async def start_core(self) -> Any:
        from bot.discord.app import build_client
        from bot.runtime import build_services

        self.core = build_services(self.settings, soak_queue)
        self.runtime = Runtime(self.core)
        await self.runtime.prepare()
        return build_client(self.settings, self.core)

    async def kill(self) -> int:
        """The workers SIGKILLed, then every task whose coroutine is the bot's own code cancelled at once
        and the database's lease let go (as the kernel drops a dead process's lock); returns how many
        tasks were abandoned."""
        for pid in worker_pids(os.getpid()):
            kill(pid)
        current = asyncio.current_task()
        tasks = [
            task
            for task in asyncio.all_tasks()
            if task is not current
            and not task.done()
            and getattr(getattr(task.get_coro(), "cr_code", None), "co_filename", "").startswith(CORE_CODE)
        ]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.runtime is not None:  # what the kernel does for a dead process: its file lock goes
            await self.runtime.lease.release()
        with contextlib.suppress(Exception):
            await self.core.db.dispose()
        self.runtime = None
        return len(tasks)

    async def stop(self) -> None:
        if self.runtime is not None:
            runtime, self.runtime = self.runtime, None
            await runtime.stop()


def discord_settings(tmp: Path, args: argparse.Namespace) -> Settings:
    return Settings(
        discord_bot_token="discord.soak.token",
        database_url=f"sqlite+aiosqlite:///{tmp / 'soak.db'}",
        data_dir=tmp / "data",
        styles_dir=tmp / "styles",
        style_cache_dir=tmp / "stats",
        styles_prefetch=False,
        sketch_preview=False,
        health_port=0,
        discord_status_interval=0.5,
        engine_workers=args.workers,
        max_active_jobs=50,
        max_jobs_per_hour=10_000,
        max_queue_length=10_000,
        max_image_pixels=4_000_000,
        log_level="WARNING",
    )


def seen_results(env: Any, channels: list[Any]) -> Counter[str]:
    """Every picture the bot posted where the users can see it (the channels, their DMs), by digest."""
    seen: Counter[str] = Counter()
    for channel in channels:
        for message in channel.history():
            if not message.author.bot:
                continue
            for attachment in message.attachments:
                data = env.backend.cdn.get(attachment.url)
                if data is not None:
                    seen[digest(data)] += 1
    return seen


async def soak_discord(args: argparse.Namespace) -> dict[str, Any]:
    """The Discord half; the bot's log goes to soak-discord.log beside ``args.out``."""
    rng = random.Random(args.seed)
    shorten_redelivery()
    log = args.out.with_name("soak-discord.log")
    log.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log, mode="w")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.WARNING)
    try:
        return await _soak(args, rng)
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


async def _soak(args: argparse.Namespace, rng: random.Random) -> dict[str, Any]:
    import discord
    import simcord

    from tests.fakes.discord_faults import DiscordFaults

    with tempfile.TemporaryDirectory(prefix="soak-discord-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "styles").mkdir()
        life = DiscordLife(discord_settings(tmp, args))
        client = await life.start_core()
        started = time.monotonic()
        rss: dict[str, float | None] = {}
        kills = {"workers": 0, "bot": 0}
        photos: list[Photo] = []
        interactions: dict[int, int] = {}  # photo index -> the interaction id (the job's source)
        tokens: dict[int, str] = {}  # photo index -> its interaction's token (follow-ups go through it)
        async with simcord.run(client, check_errors=False, shard_count=1) as env:
            with env.time_context():
                assert life.runtime is not None
                await life.runtime.start()
                faults = DiscordFaults(env, seed=args.seed)
                guild = env.create_guild()
                art = guild.create_text_channel("art")
                mods = guild.create_role("mods", permissions=discord.Permissions(manage_messages=True))
                moderator = guild.add_member(env.create_user("mod"), roles=[mods])
                users = [env.create_user(f"user{i}") for i in range(args.users)]
                members = [guild.add_member(user) for user in users]
                leavers = set(rng.sample(range(args.users), max(1, args.users // 10)))
                faults.set(share=args.share, kinds=FAULT_KINDS, retry_after=0.2)
                # Each leaver paints in a channel of their own, which the bot is removed from mid-run.
                gone = {who: guild.create_text_channel(f"gone{who}") for who in sorted(leavers)}
                channels = [art, *gone.values()] + [user.dm_channel for user in users]

                async def send(index: int) -> None:
                    """One /paint; every tenth status deleted by a moderator at once. SimCord runs one
                    operation at a time, so everything the users do happens in the one loop below."""
                    who = index % len(members)
                    data = photo_bytes(index)
                    channel = gone.get(who, art)
                    photos.append(Photo(index, members[who].id, channel.id, 0, digest(invert(data))))
                    with contextlib.suppress(Exception):  # an interaction the platform failed
                        result = await members[who].slash(
                            channel, "paint", image=(f"photo{index}.png", data), style=STYLES[index % 4]
                        )
                        interactions[index] = result._interaction.id
                        tokens[index] = result._interaction.token
                        if index % 10 == 5 and result.response is not None:
                            with contextlib.suppress(Exception):
                                await moderator.delete(result.response)
                    if who in leavers and index >= args.jobs - len(members):
                        leave(who)  # their last photo sent: what of theirs is still painting never arrives

                def leave(who: int) -> None:
                    """A leaver's channel: the bot is removed from it, their DMs are closed, and their
                    interactions' tokens stop working (as when the bot is removed from the server)."""
                    faults.refuse_channel(gone[who].id)
                    faults.refuse_dms(members[who].id)
                    for index, token in tokens.items():
                        if index % len(members) == who:
                            for method in ("PATCH", "POST"):
                                env.inject_error(
                                    method, f"/webhooks/*/{token}*", status=404, code=10015,
                                    message="Unknown Webhook", times=None,
                                )  # fmt: skip

                sent = 0
                kill_at = int(args.jobs * 0.4)
                next_worker_kill = time.monotonic() + rng.uniform(5, 15)
                since_start = 0
                next_report = time.monotonic() + 15
                abandoned = 0
                last_done, last_change = 0, time.monotonic()
                try:
                    while True:
                        if sent < args.jobs:
                            await send(sent)
                            sent += 1
                        await asyncio.sleep(args.interval)
                        await env.advance_time(args.interval)  # SimCord's clock (throttles, backoffs)
                        seen = seen_results(env, channels)
                        done = sum(1 for p in photos if seen[p.expected] > 0)
                        if not kills["bot"] and "first_process_at_50" not in rss and done >= 50:
                            rss["first_process_at_50"] = rss_mb(os.getpid())
                        if not kills["bot"] and done >= kill_at:
                            rss["first_process_at_kill"] = rss_mb(os.getpid())
                            abandoned = await life.kill()
                            kills["bot"] = 1
                            client = await life.start_core()
                            await env.restart_bot(client)
                            assert life.runtime is not None
                            await life.runtime.start()
                            since_start = done
                        if kills["bot"] and "after_restart_at_50" not in rss and done - since_start >= 50:
                            rss["after_restart_at_50"] = rss_mb(os.getpid())
                        if time.monotonic() >= next_worker_kill and kills["workers"] < args.worker_kills:
                            pids = worker_pids(os.getpid())
                            if pids and kill(rng.choice(pids)):
                                kills["workers"] += 1
                            next_worker_kill = time.monotonic() + rng.uniform(5, 15)
                        waiting = (
                            await unsettled(life, photos, interactions, seen)
                            if sent == args.jobs
                            else ["sending"]
                        )
                        if not waiting:
                            break
                        if done != last_done:
                            last_done, last_change = done, time.monotonic()
                        elif sent == args.jobs and time.monotonic() - last_change > QUIET_SECONDS:
                            print(
                                f"discord: nothing new for {QUIET_SECONDS:.0f} s; the rest counts as lost",
                                file=sys.stderr,
                            )
                            break
                        if time.monotonic() >= next_report:
                            next_report = time.monotonic() + 15
                            elapsed = time.monotonic() - started
                            line = f"{len(photos)} sent, {done} seen, kills {kills}, waiting: {waiting[:8]}"
                            print(f"discord {elapsed:.0f} s: {line}", file=sys.stderr)
                        if time.monotonic() - started > args.timeout:
                            print("discord: timed out; the rest counts as lost", file=sys.stderr)
                            break
                    for _ in range(round(args.settle * 2)):  # a late duplicate would show now
                        await asyncio.sleep(0.5)
                        await env.advance_time(0.5)
                    rss["end"] = rss_mb(os.getpid())
                    wall = time.monotonic() - started
                    seen = seen_results(env, channels)
                finally:
                    await life.stop()
                    faults.close()
                errors = len(env.errors)
                injected = Counter({f"{m} {k}": n for (m, k), n in faults.injected.items()})
                lost_paths = [a.path for a in faults.attempts if a.outcome == "lost" and a.method == "POST"]
        jobs = await jobs_of(life.settings.database_url, "discord", {p.user_id for p in photos})
        for photo in photos:
            photo.results = seen[photo.expected]
            photo.jobs = [j for j in jobs if j.source_message_id == interactions.get(photo.index)]
            # A lost follow-up names the job by its token; a lost channel or DM message names no job, so it
            # counts for every photo (an upper bound: "lost answer" is then a plausible cause, not a proof).
            token = tokens.get(photo.index, "\0")
            photo.lost_answers = sum(
                1 for path in lost_paths if token in path or not path.startswith("/webhooks/")
            )
        return summary(
            "discord",
            photos,
            {
                "wall_s": round(wall, 1),
                "rss_mb": rss,
                "rss_note": "the benchmark's own process (bot and SimCord together)",
                "kills": kills,
                "tasks_abandoned_at_kill": abandoned,
                "blocked_users": len(leavers),
                "faults_injected": sum(injected.values()),
                "faults_by_kind": dict(Counter(k.rsplit(" ", 1)[1] for k in injected.elements())),
                "calls": len(faults.attempts),
                "simcord_errors": errors,
            },
        )


async def unsettled(
    life: DiscordLife, photos: list[Photo], interactions: dict[int, int], seen: Counter[str]
) -> list[str]:
    """Photos with no result yet whose job is still on its way (or that made no job at all)."""
    missing = [p for p in photos if seen[p.expected] == 0]
    if not missing:
        return []
    db = life.core.db
    users = {p.user_id for p in missing}
    jobs = {
        j.source_message_id: j for u in users for j in await db.recent_jobs(u, 100_000, platform="discord")
    }
    waiting = []
    for photo in missing:
        source = interactions.get(photo.index)
        if source is None:
            continue  # the interaction itself failed: the user saw Discord's own error
        job = jobs.get(source)
        if job is None:
            waiting.append(f"#{photo.index}: no job")
        elif job.is_active or (job.state == JobState.DONE and job.delivery_given_up_at is None):
            waiting.append(f"#{photo.index}")
    return waiting

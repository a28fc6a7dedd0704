"""Soak benchmark (issue 19): nothing lost when the platforms misbehave, workers die and the bot is killed.

    python -m bench.soak                          # 300 jobs per platform, 10 % of platform calls faulted
    python -m bench.soak --jobs 40 --users 8      # a quick look
    python -m bench.soak --platform telegram

Each platform's half runs the real bot (handlers, database, embedded queue, real worker processes running
the fast fake engine ``tests.fakes.engine:steady_engine``, one second a job) against that platform's
stand-in with faults turned on: a share of every platform call (``--share``) answered with a 429, a 5xx, a
timeout or a lost answer (carried out, the answer dropped), some users blocking the bot after sending
their photos, and some statuses deleted under the bot. Meanwhile worker processes are SIGKILLed at random
and the bot itself is killed once and started again over the same database.

- Telegram: ``python -m bench.soak --serve-telegram`` (the bot as ``python -m bot`` runs it, with the fake
  engine) in a process of its own against FakeTelegram over ``TELEGRAM_API_URL``; its kill is a SIGKILL
  of its whole process group (the bot and its workers, as systemd kills a unit's cgroup).
- Discord: SimCord is in-process only, so the bot runs in this process; its "kill" abandons the running
  core at once (its worker processes SIGKILLed, every task of the core cancelled mid-await, no graceful
  stop, no drain) and a new core and client start over the same database. Cancelled tasks still run
  their ``finally`` blocks, which a SIGKILL would not: the Telegram half is the real kill.

Everything is counted from what the stand-ins hold (the messages a user can see), not from the bot's
word: per photo, the results its user sees (0 = lost unless the job was given up or failed with an
error shown, 2+ = a duplicate, whose cause is read from the faults injected: a lost answer to the send
that carried it, or else something to look into), the given-ups from the database, and the bot's RSS after
50 results and at the end. Prints a table; writes bench/results/soak.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.config import Settings
from bot.db import Database, JobRecord, JobState
from bot.queue.embedded import EmbeddedQueue
from engine.settings import EngineSettings
from engine.workers.runner import WorkerOptions
from tests.fakes import images
from tests.fakes.engine import invert

REPO = Path(__file__).resolve().parents[1]
ENGINE = "tests.fakes.engine:steady_engine"  # 20 steps of 50 ms: a worker kill lands mid-job
STYLES = ("udnie", "the_scream", "starry_night", "great_wave")
FAULT_KINDS = ("429", "5xx", "timeout", "lost")
REDELIVERY_SECONDS = 5.0  # the bench's look for unsent results (the bot's default is every 5 minutes)
SETTLE_SECONDS = 8.0  # after the last photo is accounted for: time for a late duplicate to show (--settle)
QUIET_SECONDS = 60.0  # no new result for this long (12 redelivery looks) and some still missing: lost


# -- the bot's side ------------------------------------------------------------------------------


def soak_queue(settings: Settings, db: Database) -> EmbeddedQueue:
    """The embedded queue with ``ENGINE_WORKERS`` real worker processes running the fast fake engine."""
    options = WorkerOptions(
        name="worker",
        device="cpu",
        engine_factory=ENGINE,
        engine_settings=settings.model_dump(mode="json", include=set(EngineSettings.model_fields)),
        threads=1,
        log_level="WARNING",
    )
    return EmbeddedQueue(
        db,
        worker_options=options,
        results_dir=settings.results_dir,
        workers=settings.engine_workers or 2,
        stall_seconds=settings.worker_stall_seconds,
    )


def shorten_redelivery() -> None:
    """The bench compresses time: unsent results are looked at every few seconds, not every 5 minutes."""
    from bot import notifier

    notifier.REDELIVERY_INTERVAL = REDELIVERY_SECONDS


def serve_telegram() -> int:
    """``--serve-telegram``: the bot as ``python -m bot`` runs it (settings from the environment, ``run_all``
    with its polling and signal handling), with the fake engine."""
    from bot.__main__ import configure_logging, run_all
    from bot.config import load_settings
    from bot.telegram.app import PollingEnded

    settings = load_settings()
    configure_logging(settings)
    shorten_redelivery()
    try:
        asyncio.run(run_all(settings, queue_factory=soak_queue))
    except PollingEnded:
        return 1
    return 0


# -- what the bench counts ----------------------------------------------------------------------


@dataclass
class Photo:
    """One photo a user sent, and what came of it."""

    index: int
    user_id: int
    chat_id: int
    message_id: int  # Telegram: the photo message; Discord: 0 (matched by the result's pixels)
    expected: str  # sha256 of the picture the fake engine paints from it
    results: int = 0  # results the user can see
    lost_answers: int = 0  # sends of its result carried out whose answer was dropped (injected "lost")
    answers: list[str] = field(default_factory=list)  # Telegram: the bot's texts in reply to the photo
    file_id: str = ""  # Telegram: the photo's file id (the bot downloads it)
    trail: list[str] = field(default_factory=list)  # for a lost photo: the platform calls about it
    sent_across_kill: bool = False  # copies sent both before the bot's kill and after its restart
    jobs: list[JobRecord] = field(default_factory=list)

    def outcome(self) -> str:
        if self.results == 1:
            return "delivered"
        if self.results > 1:
            return "duplicated"
        if any(j.delivery_given_up_at is not None for j in self.jobs):
            return "given up"
        if self.jobs and all(j.state == JobState.FAILED for j in self.jobs):
            return "failed (told)"
        if not self.jobs and self.answers:
            return "refused (told)"
        return "lost"

    def duplicate_cause(self) -> str:
        if len(self.jobs) > 1:
            return "the photo became two jobs"
        if self.lost_answers >= self.results - 1:
            return "lost answer"
        if self.sent_across_kill:
            return "bot killed between a send and its record"
        return "unexplained"


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def photo_bytes(index: int) -> bytes:
    """A photo of its own for each job (sizes differ), so each result can be told apart by its pixels."""
    return images.pattern(64 + index % 40, 48 + index // 40)


def rss_mb(pid: int) -> float | None:
    """Resident memory of one process (not its workers), from /proc."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    """Child processes of every thread of ``pid`` (the workers are started from a helper thread)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(p) for p in (task / "children").read_text().split()]
    return found


def worker_pids(pid: int) -> list[int]:
    """The bot's engine workers: its spawned children, less multiprocessing's resource tracker."""
    found = []
    for child in children(pid):
        try:
            command = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in command and b"resource_tracker" not in command:
            found.append(child)
    return found


def kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


async def jobs_of(url: str, platform: str, user_ids: set[int]) -> list[JobRecord]:
    """Every job of the bench's users, oldest first."""
    db = Database(url)
    try:
        jobs = [j for u in user_ids for j in await db.recent_jobs(u, 100_000, platform=platform)]
    finally:
        await db.dispose()
    return sorted(jobs, key=lambda j: j.id)


def summary(platform: str, photos: list[Photo], extra: dict[str, Any]) -> dict[str, Any]:
    outcomes = Counter(p.outcome() for p in photos)
    causes = Counter(p.duplicate_cause() for p in photos if p.outcome() == "duplicated")
    return {
        "platform": platform,
        "photos": len(photos),
        "jobs": sum(len(p.jobs) for p in photos),
        "delivered_once": outcomes["delivered"],
        "lost": outcomes["lost"],
        "lost_photos": {str(p.index): p.trail for p in photos if p.outcome() == "lost"},
        "duplicated": outcomes["duplicated"],
        "duplicate_causes": dict(causes),
        "unexplained_duplicates": {
            str(p.index): p.trail
            for p in photos
            if p.outcome() == "duplicated" and p.duplicate_cause() == "unexplained"
        },
        "extra_copies": sum(max(0, p.results - 1) for p in photos),
        "given_up": outcomes["given up"],
        "failed_told": outcomes["failed (told)"],
        "refused_told": outcomes["refused (told)"],
        "refusals": sorted({a[:80] for p in photos if p.outcome() == "refused (told)" for a in p.answers}),
        **extra,
    }


# -- Telegram ------------------------------------------------------------------------------------


def telegram_env(tg: Any, tmp: Path, args: argparse.Namespace) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TELEGRAM_BOT_TOKEN": tg.token,
        "TELEGRAM_API_URL": tg.root_url,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'soak.db'}",
        "DATA_DIR": str(tmp / "data"),
        "STYLES_DIR": str(tmp / "styles"),
        "STYLE_CACHE_DIR": str(tmp / "stats"),
        "STYLES_PREFETCH": "false",
        "SKETCH_PREVIEW": "false",
        "HEALTH_PORT": "0",
        "STATUS_INTERVAL_PRIVATE": "0.5",
        "QUEUE_URL": "",
        "ENGINE_WORKERS": str(args.workers),
        "MAX_ACTIVE_JOBS": "50",
        "MAX_JOBS_PER_HOUR": "10000",
        "MAX_QUEUE_LENGTH": "10000",
        "LOG_LEVEL": "WARNING",
    }


def start_telegram_bot(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.soak", "--serve-telegram"],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a group of its own: the kill takes the workers too
        )


def kill_group(bot: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(bot.pid, signal.SIGKILL)
    bot.wait(30)


def stop_group(bot: subprocess.Popen[bytes]) -> int:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(bot.pid, signal.SIGTERM)
    try:
        return bot.wait(60)
    except subprocess.TimeoutExpired:
        kill_group(bot)
        return -9


async def soak_telegram(args: argparse.Namespace) -> dict[str, Any]:
    from tests.fakes.telegram_api import FakeTelegram

    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="soak-telegram-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "styles").mkdir()
        log = args.out.with_name("soak-telegram.log")
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_bytes(b"")
        async with FakeTelegram(max_poll_timeout=1.0, fault_seed=args.seed) as tg:
            env = telegram_env(tg, tmp, args)
            users = [tg.user(f"User{i}") for i in range(args.users)]
            blockers = set(rng.sample(range(args.users), max(1, args.users // 10)))
            started = time.monotonic()
            bot = start_telegram_bot(env, log)
            await tg.wait_for("getUpdates", timeout=120)  # up: the database is migrated
            tg.faults.set("*", share=args.share, kinds=FAULT_KINDS, retry_after=1)
            photos: list[Photo] = []
            rss: dict[str, float | None] = {}
            kills = {"workers": 0, "bot": 0}
            exits: list[
                int
            ] = []  # the bot ending on its own; started again, as compose's restart policy does

            def seen() -> int:
                return sum(1 for p in photos if count_results(tg, p) > 0)

            async def send() -> None:
                for index in range(args.jobs):
                    user = users[index % len(users)]
                    chat = tg.private_chat(user)
                    data = photo_bytes(index)
                    message = await tg.send_photo(user, chat, data, caption=STYLES[index % len(STYLES)])
                    photo = Photo(index, user.id, chat.id, message.message_id, digest(invert(data)))
                    photo.file_id = message.photo[-1]["file_id"] if message.photo else ""
                    photos.append(photo)
                    if index >= args.jobs - len(users) and (index % len(users)) in blockers:
                        tg.block(user)  # their last photo sent: they block the bot while it paints
                    await asyncio.sleep(args.interval)

            async def delete_statuses() -> None:
                """Every tenth photo's status, once it is up, is deleted by its user."""
                deleted: set[int] = set()
                while True:
                    for photo in photos:
                        if photo.index % 10 != 5 or photo.index in deleted:
                            continue
                        for message in tg.messages_in(tg.chats[photo.chat_id]):
                            if (
                                message.text
                                and message.reply_to
                                and message.reply_to.message_id == photo.message_id
                            ):
                                if not message.deleted:
                                    tg.delete_message(tg.chats[photo.chat_id], message.message_id)
                                deleted.add(photo.index)
                    await asyncio.sleep(0.5)

            sender = asyncio.create_task(send())
            deleter = asyncio.create_task(delete_statuses())
            kill_at = int(args.jobs * 0.4)
            killed_at = float("inf")
            next_worker_kill = time.monotonic() + rng.uniform(5, 15)
            since_start = 0
            next_report = time.monotonic() + 15
            last_done, last_change = 0, time.monotonic()
            try:
                while True:
                    await asyncio.sleep(0.5)
                    done = seen()
                    if not kills["bot"] and "first_process_at_50" not in rss and done >= 50:
                        rss["first_process_at_50"] = rss_mb(bot.pid)
                    if kills["bot"] == 0 and done >= kill_at:
                        rss["first_process_at_kill"] = rss_mb(bot.pid)
                        killed_at = time.monotonic()
                        await asyncio.to_thread(kill_group, bot)
                        kills["bot"] = 1
                        await asyncio.sleep(2.0)  # photos keep coming while nobody polls
                        bot = start_telegram_bot(env, log)
                        since_start = seen()
                    if bot.poll() is not None:
                        exits.append(bot.returncode)
                        await asyncio.sleep(1.0)
                        bot = start_telegram_bot(env, log)
                    if kills["bot"] and "after_restart_at_50" not in rss and done - since_start >= 50:
                        rss["after_restart_at_50"] = rss_mb(bot.pid)
                    if time.monotonic() >= next_worker_kill and kills["workers"] < args.worker_kills:
                        pids = worker_pids(bot.pid)
                        if pids and kill(rng.choice(pids)):
                            kills["workers"] += 1
                        next_worker_kill = time.monotonic() + rng.uniform(5, 15)
                    if sender.done() and await settled_telegram(tg, photos, env["DATABASE_URL"]):
                        break
                    if done != last_done:
                        last_done, last_change = done, time.monotonic()
                    elif sender.done() and time.monotonic() - last_change > QUIET_SECONDS:
                        print(
                            f"telegram: nothing new for {QUIET_SECONDS:.0f} s; the rest counts as lost",
                            file=sys.stderr,
                        )
                        break
                    if time.monotonic() >= next_report:
                        next_report = time.monotonic() + 15
                        waiting = await unsettled_telegram(tg, photos, env["DATABASE_URL"])
                        print(
                            f"telegram {time.monotonic() - started:.0f} s: {len(photos)} sent, {done} seen, "
                            f"kills {kills}, waiting: {waiting[:8]}",
                            file=sys.stderr,
                        )
                    if time.monotonic() - started > args.timeout:
                        print("telegram: timed out; the rest counts as lost", file=sys.stderr)
                        break
                await asyncio.sleep(args.settle)  # a late duplicate would show now
                rss["end"] = rss_mb(bot.pid)
                wall = time.monotonic() - started
            finally:
                sender.cancel()
                deleter.cancel()
                await asyncio.gather(sender, deleter, return_exceptions=True)
                code = await asyncio.to_thread(stop_group, bot)
            await account_telegram(tg, photos, env["DATABASE_URL"], killed_at)
            injected = Counter({f"{m} {k}": n for (m, k), n in tg.faults.injected.items()})
            errors = [line for line in log.read_text(errors="replace").splitlines() if "Traceback" in line]
        return summary(
            "telegram",
            photos,
            {
                "wall_s": round(wall, 1),
                "rss_mb": rss,
                "kills": kills,
                "bot_exits": exits,
                "blocked_users": len(blockers),
                "faults_injected": sum(injected.values()),
                "faults_by_kind": dict(Counter(k.rsplit(" ", 1)[1] for k in injected.elements())),
                "calls": len([c for c in tg.calls if c.method != "getUpdates"]),
                "exit_code": code,
                "tracebacks_in_log": len(errors),
            },
        )


def count_results(tg: Any, photo: Photo) -> int:
    """Results (a photo, or the painting as a file) the user sees in reply to this photo."""
    return sum(
        1
        for m in tg.messages_in(tg.chats[photo.chat_id])
        if (m.photo or m.document) and m.reply_to is not None and m.reply_to.message_id == photo.message_id
    )


async def unsettled_telegram(tg: Any, photos: list[Photo], url: str) -> list[str]:
    """The photos still waiting for a result or an ending the user was told of, each with why."""
    waiting: list[str] = []
    if any(count_results(tg, p) == 0 for p in photos):
        jobs = await jobs_of(url, "telegram", {p.user_id for p in photos})
        by_source = {(j.chat_id, j.source_message_id): j for j in jobs}
        for photo in photos:
            if count_results(tg, photo) > 0:
                continue
            job = by_source.get((photo.chat_id, photo.message_id))
            if job is None:
                waiting.append(f"#{photo.index}: no job")
            elif job.is_active or (job.state == JobState.DONE and job.delivery_given_up_at is None):
                waiting.append(f"#{photo.index}: job {job.id} {job.state}")
    return waiting


async def settled_telegram(tg: Any, photos: list[Photo], url: str) -> bool:
    """Every photo has a result or an ending the user was told of, and no job is left to send."""
    return not await unsettled_telegram(tg, photos, url)


def about(call: Any, photo: Photo) -> bool:
    """Whether a Bot API call concerned this photo: its file, or a message replying to it."""
    params = call.params
    if params.get("file_id") == photo.file_id:
        return True
    return (
        int(params.get("chat_id") or 0) == photo.chat_id
        and int((params.get("reply_parameters") or {}).get("message_id") or 0) == photo.message_id
    )


async def account_telegram(tg: Any, photos: list[Photo], url: str, killed_at: float) -> None:
    jobs = await jobs_of(url, "telegram", {p.user_id for p in photos})
    for photo in photos:
        photo.results = count_results(tg, photo)
        photo.answers = [
            m.text
            for m in tg.messages_in(tg.chats[photo.chat_id])
            if m.text and m.reply_to is not None and m.reply_to.message_id == photo.message_id
        ]
        photo.jobs = [
            j for j in jobs if (j.chat_id, j.source_message_id) == (photo.chat_id, photo.message_id)
        ]
        sends = [
            c for c in tg.calls if c.ok and c.method in ("sendPhoto", "sendDocument") and about(c, photo)
        ]
        photo.sent_across_kill = any(c.time < killed_at for c in sends) and any(
            c.time > killed_at for c in sends
        )
        if photo.outcome() in ("lost", "duplicated"):
            photo.trail = [
                f"{c.time - killed_at:+.1f} s from the kill: {c.method} {c.status}{' lost' if c.lost else ''}"
                for c in tg.calls
                if about(c, photo)
            ]
        photo.lost_answers = sum(
            1
            for c in tg.calls
            if c.lost
            and c.method in ("sendPhoto", "sendDocument")
            and int(c.params.get("chat_id", 0)) == photo.chat_id
            and int((c.params.get("reply_parameters") or {}).get("message_id", 0)) == photo.message_id
        )


# -- report --------------------------------------------------------------------------------------


def markdown(reports: list[dict[str, Any]]) -> str:
    rows: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        ("photos (jobs made)", lambda r: f"{r['photos']} ({r['jobs']})"),
        ("lost", lambda r: r["lost"]),
        ("delivered once", lambda r: r["delivered_once"]),
        ("duplicated (extra copies)", lambda r: f"{r['duplicated']} ({r['extra_copies']})"),
        (
            "duplicates' causes",
            lambda r: ", ".join(f"{k}: {v}" for k, v in r["duplicate_causes"].items()) or "-",
        ),
        ("given up (blocked users)", lambda r: f"{r['given_up']} ({r['blocked_users']})"),
        ("failed, error shown", lambda r: r["failed_told"]),
        ("no job, refusal shown", lambda r: r["refused_told"]),
        ("faults injected (of calls)", lambda r: f"{r['faults_injected']} ({r['calls']})"),
        ("by kind", lambda r: ", ".join(f"{k}: {v}" for k, v in sorted(r["faults_by_kind"].items()))),
        ("kills (workers, bot)", lambda r: f"{r['kills']['workers']}, {r['kills']['bot']}"),
        ("bot exits on its own (codes)", lambda r: ", ".join(map(str, r.get("bot_exits", []))) or "-"),
        (
            "bot RSS MB: 50 results, at kill",
            lambda r: f"{r['rss_mb'].get('first_process_at_50')}, {r['rss_mb'].get('first_process_at_kill')}",
        ),
        (
            "bot RSS MB: 50 after restart, end",
            lambda r: f"{r['rss_mb'].get('after_restart_at_50')}, {r['rss_mb'].get('end')}",
        ),
        ("wall time s", lambda r: r["wall_s"]),
    ]
    lines = ["| | " + " | ".join(r["platform"] for r in reports) + " |", "|---|" + "---|" * len(reports)]
    lines += [f"| {name} | " + " | ".join(str(cell(r)) for r in reports) + " |" for name, cell in rows]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--platform", choices=("telegram", "discord", "both"), default="both")
    parser.add_argument("--jobs", type=int, default=300, help="photos per platform")
    parser.add_argument("--users", type=int, default=30)
    parser.add_argument("--share", type=float, default=0.10, help="share of platform calls faulted")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--worker-kills", type=int, default=6, help="worker SIGKILLs per platform")
    parser.add_argument("--interval", type=float, default=0.3, help="seconds between photos")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=600.0, help="per platform")
    parser.add_argument(
        "--settle", type=float, default=SETTLE_SECONDS, help="seconds to wait for late duplicates at the end"
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "soak.json")
    parser.add_argument("--serve-telegram", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_telegram:
        return serve_telegram()
    reports = []
    if args.platform in ("telegram", "both"):
        reports.append(asyncio.run(soak_telegram(args)))
    if args.platform in ("discord", "both"):
        from bench.soak_discord import soak_discord

        reports.append(asyncio.run(soak_discord(args)))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "runs": reports}, indent=2)
    )
    print(markdown(reports))
    lost = sum(r["lost"] for r in reports)
    unexplained = sum(r["duplicate_causes"].get("unexplained", 0) for r in reports)
    print(f"\nlost: {lost}; unexplained duplicates: {unexplained}; raw numbers: {args.out}")
    return 0 if lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

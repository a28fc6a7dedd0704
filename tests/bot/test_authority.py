"""One authority over the jobs (issue 19), end to end: ``python -m bot`` processes over one database and the
local stand-in for Telegram's Bot API. A second process says that it waits, polls nobody and takes nothing
while the first runs; it takes over within seconds when the first is SIGKILLed mid-job, and every job is
painted to the end and delivered once.

The takeover runs on a SQLite file: what the processes do around the lease is the same on either back end,
and the lease itself is tested on both (``tests/bot/db/test_lease.py``, a SIGKILLed holder included). On
PostgreSQL, a bot whose lease connection is terminated exits here.

``python -m tests.bot.test_authority FACTORY`` is ``python -m bot`` (the same ``main``: settings from the
environment, ``run_all`` with the bot's own polling loop and signal handling) with the workers running the
fake engine ``FACTORY``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import pytest
from sqlalchemy import make_url

from bot.__main__ import run_all
from bot.config import Settings
from bot.db import Database
from bot.db.lease import lease_for
from bot.runtime import EXIT_LEASE_LOST
from tests.bot.db.conftest import POSTGRES_ADMIN_URL, PostgresServer
from tests.bot.test_main import IdleQueue
from tests.fakes import images
from tests.fakes.telegram_api import FakeTelegram

ROOT = Path(__file__).resolve().parents[2]
SLOW = "tests.fakes.engine:slow_engine"  # 20 s a job: the first bot is mid-job whenever it dies
FAST = "tests.fakes.engine:fake_engine"
WAIT = 30.0  # a bound for the test's waits (a loaded machine starts Python slowly), never an assertion
UP = "Stylebot core is up"
WAITING = "another bot process holds this database"
CONFLICT = "Conflict"  # PTB logs Telegram's 409 ("Conflict: terminated by other getUpdates request")


@pytest.fixture(scope="module")
def postgres() -> Iterator[PostgresServer]:
    server = PostgresServer(POSTGRES_ADMIN_URL)
    try:
        server.ping()
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({exc!r})")
    yield server
    server.drop_all()


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram(max_poll_timeout=0.5, wait_timeout=WAIT) as server:
        yield server


class Bot:
    """One ``python -m bot`` in a process group of its own (as a service manager starts it), its log in a
    file."""

    def __init__(
        self, name: str, tmp_path: Path, tg: FakeTelegram, database_url: str, factory: str = FAST
    ) -> None:
        self.log = tmp_path / f"{name}.log"
        self.orphans: list[int] = []
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "TELEGRAM_BOT_TOKEN": tg.token,
            "TELEGRAM_API_URL": tg.root_url,
            "DISCORD_BOT_TOKEN": "",
            "DATABASE_URL": database_url,
            "DATA_DIR": str(tmp_path / "data"),  # shared, as on one machine: the jobs' inputs and results
            "STYLES_DIR": str(tmp_path / "styles"),
            "STYLE_CACHE_DIR": str(tmp_path / "stats"),
            "STYLES_PREFETCH": "false",
            "SKETCH_PREVIEW": "false",
            "HEALTH_PORT": "0",
            "ENGINE_WORKERS": "1",
            "STATUS_INTERVAL_PRIVATE": "0.3",
            "QUEUE_URL": "",
            "LOG_LEVEL": "INFO",
        }
        (tmp_path / "styles").mkdir(exist_ok=True)
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.bot.test_authority", factory],
                cwd=tmp_path,  # no .env of the checkout
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def logged(self, line: str) -> None:
        """Until the log shows ``line`` (the process must not exit meanwhile)."""
        async with asyncio.timeout(WAIT):
            while line not in self.text():
                assert self.process.poll() is None, f"exited with {self.process.returncode}:\n{self.text()}"
                await asyncio.sleep(0.05)

    async def exit_code(self) -> int:
        return await asyncio.to_thread(self.process.wait, WAIT)

    def signal(self, sig: signal.Signals) -> None:
        os.killpg(self.pid, sig)

    def sigkill(self) -> None:
        """Death without a word. Its workers (in sessions of their own) outlive it until their job ends
        and their pipe is found closed; the test ends them itself."""
        self.orphans = children(self.pid)
        self.signal(signal.SIGKILL)

    def kill(self) -> None:
        """At the end, whatever happened: nothing left running."""
        if self.process.poll() is None:
            self.orphans += children(self.pid)
            os.killpg(self.pid, signal.SIGKILL)
            self.process.wait(WAIT)
        for pid in self.orphans:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid`` (the bot's workers)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


@pytest.fixture
def bots(tmp_path: Path, tg: FakeTelegram) -> Iterator[list[Bot]]:
    started: list[Bot] = []
    yield started
    for bot in started:
        bot.kill()


async def until(condition: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 - the fake and the log announce nothing
            await asyncio.sleep(0.05)


def conflicts(tg: FakeTelegram) -> list[object]:
    return [c for c in tg.calls_to("getUpdates") if c.status == 409]


@pytest.mark.timeout(120)
async def test_a_second_bot_waits_and_takes_over_the_jobs_of_a_killed_first_each_job_delivered_once(
    tg: FakeTelegram, bots: list[Bot], tmp_path: Path
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    first = Bot("first", tmp_path, tg, database_url, SLOW)
    bots.append(first)
    await first.logged(UP)
    alice = tg.user("Alice")
    chat = tg.private_chat(alice)
    photos = [
        await tg.send_photo(alice, chat, images.pattern(64 + 8 * n, 48), caption="udnie") for n in range(3)
    ]
    second = Bot("second", tmp_path, tg, database_url)  # it starts while the first's worker warms up
    bots.append(second)
    await tg.wait_for("editMessageText", lambda c: "%" in c.params.get("text", ""))  # one is being painted
    await second.logged(WAITING)
    waiting = next(line for line in second.text().splitlines() if WAITING in line)
    assert f"pid {first.pid} on " in waiting  # it names the holder
    assert UP not in second.text()
    assert not tg.calls_to("sendPhoto")  # the first is mid-job
    assert not conflicts(tg)

    first.sigkill()  # no stop, no release: the lock goes with the process
    assert await first.exit_code() == -signal.SIGKILL
    await second.logged("holds the database's lease after waiting")
    await second.logged(UP)
    await until(lambda: len([c for c in tg.calls_to("sendPhoto") if c.ok]) >= 3)

    second.signal(signal.SIGTERM)
    assert await second.exit_code() == 0, second.text()
    assert "released the database's lease" in second.text()
    assert len(second.text().split(WAITING)) == 2  # one line while it waited, not one per attempt
    assert CONFLICT not in first.text()
    assert CONFLICT not in second.text()
    sent = [c for c in tg.calls_to("sendPhoto") if c.ok]
    assert sorted(c.result["reply_to_message"]["message_id"] for c in sent) == [p.message_id for p in photos]
    db = Database(database_url)
    try:
        jobs = await db.recent_jobs(alice.id, 10, platform="telegram")
    finally:
        await db.dispose()
    assert sorted(job.state for job in jobs) == ["done"] * 3
    assert all(job.result_file_id for job in jobs)  # each delivery confirmed once, by the one process


async def test_a_bot_that_must_wait_polls_nobody_and_a_sigterm_ends_the_wait(
    tg: FakeTelegram, bots: list[Bot], tmp_path: Path
) -> None:
    """The lease held by this test: the bot says so and waits without a single getUpdates (no 409 to
    provoke); SIGTERM then stops it at once, having started nothing. (PTB's path, the same on either back
    end: ``tests/bot/db/test_lease.py`` waits on both.)"""
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}"
    held = lease_for(database_url, on_lost=print)
    assert await held.acquire(asyncio.Event())
    try:
        bot = Bot("waiting", tmp_path, tg, database_url)
        bots.append(bot)
        await bot.logged(WAITING)
        assert f"pid {os.getpid()} on " in bot.text()
        assert not tg.calls_to("getUpdates")
        bot.signal(signal.SIGTERM)
        assert await bot.exit_code() == 0, bot.text()
    finally:
        await held.release()
    assert "stopped before this process held the database's lease" in bot.text()
    assert UP not in bot.text()
    assert not tg.calls_to("getUpdates")


@pytest.mark.postgres
async def test_a_bot_whose_lease_is_gone_exits_at_once(
    tg: FakeTelegram, bots: list[Bot], tmp_path: Path, postgres: PostgresServer
) -> None:
    """Its connection to PostgreSQL ends (a server restart, pg_terminate_backend): another process may take
    the jobs now, so this one exits with EXIT_LEASE_LOST instead of dispatching on."""
    url = postgres.create_database()
    bot = Bot("lost", tmp_path, tg, url)
    bots.append(bot)
    await bot.logged(UP)
    bot.orphans = children(bot.pid)  # its idle worker leaves by itself when the pipe ends; to be sure
    admin = await asyncpg.connect(make_url(url).render_as_string(hide_password=False), timeout=5)
    try:
        terminated = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name LIKE $1",
            f"stylebot pid {bot.pid} on %",
        )
    finally:
        await admin.close()
    assert terminated == 1
    assert await bot.exit_code() == EXIT_LEASE_LOST, bot.text()
    assert "lost the database's lease" in bot.text()


async def test_run_all_connects_no_front_end_before_it_holds_the_lease(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Discord (alone or with Telegram) runs through ``run_all``: a second run waits without connecting
    anything, a stop ends its wait, and a third takes over once the first stops (and releases the lease)."""
    caplog.set_level(logging.INFO)
    settings = Settings(
        telegram_bot_token="777:authority-telegram-token",
        discord_bot_token="authority-discord-token",
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        data_dir=tmp_path / "data",
        styles_prefetch=False,
        health_port=0,
    )
    started: list[str] = []

    def front_end(name: str) -> Callable[..., contextlib.AbstractAsyncContextManager[None]]:
        @contextlib.asynccontextmanager
        async def running(*_: object, **__: object) -> AsyncIterator[None]:
            started.append(name)
            yield
            started.append(f"{name} stopped")

        return running

    monkeypatch.setattr("bot.telegram.app.running", front_end("telegram"))
    monkeypatch.setattr("bot.telegram.app.build_application", lambda settings, **_: None)
    monkeypatch.setattr("bot.discord.app.running", front_end("discord"))

    def run(stop: asyncio.Event) -> asyncio.Task[None]:
        return asyncio.create_task(run_all(settings, lambda settings, db: IdleQueue(), stop=stop))

    def said(text: str) -> int:
        return sum(text in record.getMessage() for record in caplog.records)

    stops = [asyncio.Event() for _ in range(3)]
    first = run(stops[0])
    await until(lambda: said(UP) == 1)
    assert started == ["telegram", "discord"]
    second = run(stops[1])
    await until(lambda: said(WAITING) == 1)
    stops[1].set()  # SIGTERM while it waits
    async with asyncio.timeout(WAIT):
        await second
    assert said("stopped before this process held the database's lease") == 1
    third = run(stops[2])
    await until(lambda: said(WAITING) == 2)
    assert started == ["telegram", "discord"]  # neither waiting run connected a front end
    stops[0].set()
    async with asyncio.timeout(WAIT):
        await first
    await until(lambda: said(UP) == 2)
    assert started[:2] == ["telegram", "discord"]
    assert sorted(started[2:4]) == ["discord stopped", "telegram stopped"]
    assert started[4:] == ["telegram", "discord"]
    stops[2].set()
    async with asyncio.timeout(WAIT):
        await third
    assert said("released the database's lease") == 2


def main(factory: str) -> int:
    """``python -m bot``, its workers running the fake engine ``factory``."""
    import bot.runtime
    from bot.__main__ import main as bot_main
    from tests.bot.telegram.e2e.conftest import fake_queue

    bot.runtime.make_queue = fake_queue(factory)
    return bot_main([])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))

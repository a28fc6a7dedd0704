"""The database's lease on both back ends: one holder, a waiter that says so once and takes over when the
holder releases it or dies, a stop that ends the wait, and a holder told when its lease is gone."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import pytest
from sqlalchemy import make_url

from bot.db.lease import FileLease, Lease, PostgresLease, Unshared, lease_for
from tests.bot.db.conftest import PostgresServer

ROOT = Path(__file__).resolve().parents[3]
POLL = 0.05
WAIT = 15.0  # a bound for the test's own waits, never a timing assertion

HOLDER = """
import asyncio, sys
from bot.db.lease import lease_for

async def main():
    lease = lease_for(sys.argv[1], on_lost=print)
    assert await lease.acquire(asyncio.Event())
    print("held", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


@pytest.fixture
def url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database of its own (the lease needs no tables): the lock is per database."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'stylebot.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    created = server.create_database()
    yield created
    server.drop_database(created)


class Lost:
    """An ``on_lost`` that remembers why, and lets a test wait for it."""

    def __init__(self) -> None:
        self.reasons: list[str] = []
        self.called = asyncio.Event()

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)
        self.called.set()


@pytest.fixture
async def leases() -> AsyncIterator[list[Lease]]:
    """Leases made by ``make``; each released at the end, whatever the test did with it."""
    made: list[Lease] = []
    yield made
    for lease in made:
        await lease.release()


def make(leases: list[Lease], url: str, lost: Lost | None = None) -> Lease:
    lease = lease_for(url, on_lost=lost or Lost(), poll_seconds=POLL, check_seconds=POLL)
    leases.append(lease)
    return lease


async def attempts_after(lease: Lease, count: int) -> None:
    """Until ``lease`` has tried ``count`` more times (it waits, trying every ``POLL``)."""
    tried = asyncio.Event()
    seen = 0
    try_once = lease._try

    async def counted() -> str | None:
        nonlocal seen
        result = await try_once()
        seen += 1
        if seen >= count:
            tried.set()
        return result

    lease._try = counted  # type: ignore[method-assign]
    async with asyncio.timeout(WAIT):
        await tried.wait()


def start_holder(url: str) -> subprocess.Popen[bytes]:
    """Another process that takes the lease, says "held" and keeps it until it dies."""
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, url],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
    )


def waiting_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "another bot process holds" in r.getMessage()]


def test_each_back_end_has_its_lease(tmp_path: Path) -> None:
    lost = Lost()
    assert isinstance(lease_for(f"sqlite:///{tmp_path / 'a.db'}", on_lost=lost), FileLease)
    assert lease_for(f"sqlite:///{tmp_path / 'a.db'}", on_lost=lost).path == tmp_path / "a.db.lock"  # type: ignore[attr-defined]
    assert isinstance(lease_for("sqlite+aiosqlite://", on_lost=lost), Unshared)
    assert isinstance(lease_for("postgres://u@localhost/db", on_lost=lost), PostgresLease)
    with pytest.raises(ValueError, match="mysql"):
        lease_for("mysql://u@localhost/db", on_lost=lost)


async def test_an_in_memory_database_needs_no_lease() -> None:
    first, second = (lease_for("sqlite+aiosqlite://", on_lost=Lost()) for _ in range(2))
    assert await first.acquire(asyncio.Event())
    assert await second.acquire(asyncio.Event())
    await first.release()
    await second.release()


async def test_a_second_holder_waits_saying_so_once_and_takes_over_at_the_release(
    url: str, leases: list[Lease], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.db.lease")
    first, second = make(leases, url), make(leases, url)
    assert await first.acquire(asyncio.Event())
    waiting = asyncio.create_task(second.acquire(asyncio.Event()))
    await attempts_after(second, 5)
    assert not waiting.done()
    lines = waiting_lines(caplog)
    assert len(lines) == 1, lines  # one line, not one per attempt
    assert f"pid {os.getpid()} on " in lines[0]  # it names the holder
    await first.release()
    async with asyncio.timeout(WAIT):
        assert await waiting
    assert second.held
    assert not first.held


async def test_a_killed_holder_frees_the_lease_for_the_waiter(
    url: str, leases: list[Lease], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bot.db.lease")
    holder = start_holder(url)
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(holder.stdout.readline), WAIT)
        assert line == b"held\n"
        lease = make(leases, url)
        waiting = asyncio.create_task(lease.acquire(asyncio.Event()))
        await attempts_after(lease, 2)
        assert not waiting.done()
        assert f"pid {holder.pid} on " in waiting_lines(caplog)[0]
        holder.send_signal(signal.SIGKILL)  # no release: the kernel or the server frees the lock
        async with asyncio.timeout(WAIT):
            assert await waiting
    finally:
        holder.kill()
        holder.wait(WAIT)


async def test_a_stop_ends_the_wait_and_leaves_nothing_held(url: str, leases: list[Lease]) -> None:
    first, second = make(leases, url), make(leases, url)
    assert await first.acquire(asyncio.Event())
    stop = asyncio.Event()
    waiting = asyncio.create_task(second.acquire(stop))
    await attempts_after(second, 2)
    stop.set()
    async with asyncio.timeout(WAIT):
        assert not await waiting
    assert not second.held
    await first.release()
    third = make(leases, url)
    async with asyncio.timeout(WAIT):
        assert await third.acquire(asyncio.Event())  # the stopped waiter kept nothing


async def test_a_stop_during_the_winning_attempt_gives_the_lease_back(url: str, leases: list[Lease]) -> None:
    """The stop comes while the attempt that succeeds is under way: the lease is not kept."""
    lease = make(leases, url)
    stop = asyncio.Event()
    try_once = lease._try

    async def then_stop() -> str | None:
        result = await try_once()
        stop.set()
        return result

    lease._try = then_stop  # type: ignore[method-assign]
    assert not await lease.acquire(stop)
    assert not lease.held
    other = make(leases, url)
    async with asyncio.timeout(WAIT):
        assert await other.acquire(asyncio.Event())


async def test_a_lock_file_removed_under_the_holder_is_a_lost_lease(
    tmp_path: Path, leases: list[Lease]
) -> None:
    lost = Lost()
    lease = make(leases, f"sqlite+aiosqlite:///{tmp_path / 'stylebot.db'}", lost)
    assert await lease.acquire(asyncio.Event())
    (tmp_path / "stylebot.db.lock").unlink()  # another process could lock a new file now
    async with asyncio.timeout(WAIT):
        await lost.called.wait()
    assert len(lost.reasons) == 1
    assert "removed or replaced" in lost.reasons[0]
    assert not lease.held


@pytest.mark.postgres
async def test_a_dropped_connection_is_a_lost_lease(
    postgres_server: PostgresServer, leases: list[Lease]
) -> None:
    url = postgres_server.create_database()
    try:
        lost = Lost()
        lease = make(leases, url, lost)
        assert await lease.acquire(asyncio.Event())
        admin = await asyncpg.connect(make_url(url).render_as_string(hide_password=False), timeout=5)
        try:
            terminated = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name LIKE $1",
                f"stylebot pid {os.getpid()} on %",
            )
        finally:
            await admin.close()
        assert terminated == 1  # the lease's connection names its holder
        async with asyncio.timeout(WAIT):
            await lost.called.wait()
        assert len(lost.reasons) == 1
        assert "connection" in lost.reasons[0]
        assert not lease.held
        other = make(leases, url)
        async with asyncio.timeout(WAIT):
            assert await other.acquire(asyncio.Event())
    finally:
        for lease in leases:
            await lease.release()
        leases.clear()
        postgres_server.drop_database(url)


async def test_a_check_that_fails_is_a_lost_lease(tmp_path: Path, leases: list[Lease]) -> None:
    """A check that cannot tell (an OSError reading the lock file, a driver error) proves nothing: the lease
    counts as lost rather than the watch ending quietly and never checking again."""
    lost = Lost()
    lease = make(leases, f"sqlite+aiosqlite:///{tmp_path / 'stylebot.db'}", lost)
    assert await lease.acquire(asyncio.Event())

    async def broken() -> str | None:
        raise PermissionError("lock file unreadable")

    lease._lost = broken  # type: ignore[method-assign]
    async with asyncio.timeout(WAIT):
        await lost.called.wait()
    assert lost.reasons == ["the lease's check failed: PermissionError: lock file unreadable"]
    assert not lease.held


async def test_a_takeover_waits_a_check_before_it_counts_as_held(url: str, leases: list[Lease]) -> None:
    """Taking the lease from a holder it saw, a process holds off one check interval and more, so that a
    holder which lost the lease without dying has noticed (and exited) before the jobs are touched."""
    first = make(leases, url)
    second = lease_for(url, on_lost=Lost(), poll_seconds=POLL, check_seconds=3.0)
    leases.append(second)
    assert await first.acquire(asyncio.Event())
    waiting = asyncio.create_task(second.acquire(asyncio.Event()))
    await attempts_after(second, 2)
    await first.release()
    await asyncio.sleep(0.3)  # the second has taken the lock by now (POLL) but holds off for 4 s
    assert not waiting.done()
    async with asyncio.timeout(WAIT):
        assert await waiting


async def test_a_stop_while_holding_off_gives_the_lease_back(url: str, leases: list[Lease]) -> None:
    first = make(leases, url)
    second = lease_for(url, on_lost=Lost(), poll_seconds=POLL, check_seconds=5.0)
    leases.append(second)
    assert await first.acquire(asyncio.Event())
    stop = asyncio.Event()
    waiting = asyncio.create_task(second.acquire(stop))
    await attempts_after(second, 2)
    await first.release()
    await asyncio.sleep(0.3)  # taken, holding off for 6 s
    stop.set()
    async with asyncio.timeout(WAIT):
        assert not await waiting
    assert not second.held
    third = make(leases, url)
    async with asyncio.timeout(WAIT):
        assert await third.acquire(asyncio.Event())

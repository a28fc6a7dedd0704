"""The database's lease on both back ends: one holder, a waiter that says so once and takes over when the
holder releases it or dies, a stop that ends the wait, and a holder told when its lease is gone."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import pytest
from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError

from bot import retrying
from bot.db import lease as lease_module
from bot.db.lease import FileLease, Lease, PostgresLease, Unshared, describe, lease_for, passing
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


def retry_lines(caplog: pytest.LogCaptureFixture, level: int = logging.WARNING) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "bot.retrying" and r.levelno == level and "database's lease" in r.getMessage()
    ]


@pytest.mark.postgres
async def test_a_waiter_whose_connection_is_terminated_reconnects_and_takes_the_lease_when_free(
    postgres_server: PostgresServer,
    leases: list[Lease],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server drops the waiting process's connection (a restart, ``pg_terminate_backend``): the wait
    goes on over a new connection, saying so once with the error's class, and takes the lease once the
    holder is gone. (It used to raise out of ``acquire``, ending the standby process.)"""
    monkeypatch.setattr(retrying, "PATIENT_FIRST", POLL)
    caplog.set_level(logging.INFO)
    url = postgres_server.create_database()
    holder = start_holder(url)
    try:
        assert holder.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(holder.stdout.readline), WAIT)
        assert line == b"held\n"
        lease = make(leases, url)
        waiting = asyncio.create_task(lease.acquire(asyncio.Event()))
        await attempts_after(lease, 2)
        assert lease.holder is not None
        assert f"pid {holder.pid} on " in lease.holder
        admin = await asyncpg.connect(make_url(url).render_as_string(hide_password=False), timeout=5)
        try:  # every backend of this database but the holder's (which names itself) and this one
            terminated = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND application_name NOT LIKE 'stylebot %'"
            )
        finally:
            await admin.close()
        assert terminated == 1  # the waiter's
        await attempts_after(lease, 2)  # tried again over a new connection, and still waiting
        assert not waiting.done()
        (warning,) = retry_lines(caplog)  # one line for the outage
        assert "InterfaceError" in warning
        assert any("reached the database again" in r.getMessage() for r in caplog.records)
        assert len(waiting_lines(caplog)) == 1  # the same holder: not said again
        holder.send_signal(signal.SIGKILL)
        async with asyncio.timeout(WAIT):
            assert await waiting
        assert lease.held
    finally:
        holder.kill()
        holder.wait(WAIT)
        for made in leases:
            await made.release()
        leases.clear()
        postgres_server.drop_database(url)


class Outage:
    """A ``_try`` that fails with ``errors`` (one per call) after the first call, then works again."""

    def __init__(self, lease: Lease, *errors: BaseException) -> None:
        self.try_once, self.errors, self.calls = lease._try, list(errors), 0
        self.began = asyncio.Event()  # the first failure came
        self.over = asyncio.Event()  # the last failure came
        lease._try = self  # type: ignore[method-assign]

    async def __call__(self) -> str | None:
        self.calls += 1
        if self.calls > 1 and self.errors:
            self.began.set()
            error = self.errors.pop(0)
            if not self.errors:
                self.over.set()
            raise error
        return await self.try_once()


async def test_a_long_outage_while_waiting_is_one_warning_and_the_wait_goes_on(
    tmp_path: Path, leases: list[Lease], caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retrying, "PATIENT_FIRST", 0.01)
    caplog.set_level(logging.DEBUG)
    url = f"sqlite+aiosqlite:///{tmp_path / 'stylebot.db'}"
    first, second = make(leases, url), make(leases, url)
    assert await first.acquire(asyncio.Event())
    outage = Outage(second, *(ConnectionRefusedError(111, "Connect call failed ('10.0.0.5', 5432)"),) * 5)
    waiting = asyncio.create_task(second.acquire(asyncio.Event()))
    async with asyncio.timeout(WAIT):
        await outage.over.wait()
    await attempts_after(second, 2)  # through, and still waiting
    assert not waiting.done()
    (warning,) = retry_lines(caplog)
    assert "ConnectionRefusedError" in warning
    assert "10.0.0.5" not in warning  # the class, not the text
    assert len(retry_lines(caplog, logging.DEBUG)) == 4
    await first.release()
    async with asyncio.timeout(WAIT):
        assert await waiting


async def test_a_stop_ends_the_wait_in_a_pause_of_an_outage(
    tmp_path: Path, leases: list[Lease], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(retrying, "PATIENT_FIRST", 3600.0)  # the pause the stop must cut short
    monkeypatch.setattr(lease_module, "OUTAGE_PAUSE_POLLS", 3600.0 / POLL)
    url = f"sqlite+aiosqlite:///{tmp_path / 'stylebot.db'}"
    first, second = make(leases, url), make(leases, url)
    assert await first.acquire(asyncio.Event())
    outage = Outage(second, ConnectionResetError())
    stop = asyncio.Event()
    waiting = asyncio.create_task(second.acquire(stop))
    async with asyncio.timeout(WAIT):
        await outage.began.wait()  # the attempt is in its hour-long pause by now
    stop.set()
    async with asyncio.timeout(WAIT):
        assert not await waiting
    assert not second.held


@pytest.mark.parametrize(
    "error",
    [ValueError("a bug"), PermissionError(13, "Permission denied"), FileNotFoundError(2, "No such file")],
    ids=["bug", "read-only lock directory", "gone"],
)
async def test_a_failure_that_is_not_passing_still_ends_the_wait(
    tmp_path: Path, leases: list[Lease], error: Exception
) -> None:
    """A bug, or a lock file the process may not write (an OSError, but no outage): the wait ends."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'stylebot.db'}"
    first, second = make(leases, url), make(leases, url)
    assert await first.acquire(asyncio.Event())
    Outage(second, error)
    async with asyncio.timeout(WAIT):
        with pytest.raises(type(error)):
            await second.acquire(asyncio.Event())


async def test_after_an_outage_the_waiter_tries_again_within_a_few_polls(
    tmp_path: Path, leases: list[Lease], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The patient pauses grow to minutes; a waiter's stop at ``OUTAGE_PAUSE_POLLS`` polls, so that it takes
    over soon after the database is back (its holder usually died in the same outage)."""
    monkeypatch.setattr(retrying, "PATIENT_FIRST", 3600.0)
    url = f"sqlite+aiosqlite:///{tmp_path / 'stylebot.db'}"
    first, second = make(leases, url), make(leases, url)
    assert await first.acquire(asyncio.Event())
    outage = Outage(second, ConnectionResetError())
    waiting = asyncio.create_task(second.acquire(asyncio.Event()))
    try:
        async with asyncio.timeout(WAIT):
            await outage.over.wait()
        await attempts_after(second, 1)  # after a pause of 10 polls, not an hour
        assert not waiting.done()
        await first.release()
        async with asyncio.timeout(WAIT):
            assert await waiting
    finally:
        waiting.cancel()  # an hour's pause holds the lease's lock: its release would wait for it


def test_passing_failures_are_the_server_going_away_not_a_refused_login() -> None:
    def dbapi(sqlstate: str | None, invalidated: bool = False) -> DBAPIError:
        orig = Exception("driver")
        orig.sqlstate = sqlstate  # type: ignore[attr-defined]
        return DBAPIError("SELECT 1", {}, orig, connection_invalidated=invalidated)

    assert passing(ConnectionRefusedError())
    assert passing(ConnectionResetError())
    assert passing(TimeoutError())
    assert passing(socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"))
    assert passing(OSError(errno.EHOSTUNREACH, "No route to host"))
    assert passing(OSError("Multiple exceptions: [Errno 111] Connect call failed ('::1', 5432, 0, 0), ..."))
    assert not passing(PermissionError(errno.EACCES, "Permission denied"))  # a lock file's read-only folder
    assert not passing(FileNotFoundError(errno.ENOENT, "No such file or directory"))
    assert not passing(OSError(errno.EROFS, "Read-only file system"))
    assert passing(dbapi(None, invalidated=True))
    for sqlstate in ("57P01", "57P03", "08006"):  # admin shutdown, starting up, connection failure
        assert passing(dbapi(sqlstate))
    assert passing(dbapi("53300"))  # too many connections, while everyone reconnects
    assert not passing(dbapi("28P01"))  # password authentication failed
    assert not passing(dbapi("3D000"))  # no such database
    assert not passing(ValueError())
    assert describe(dbapi("57P01")) == "DBAPIError / Exception (SQLSTATE 57P01)"


async def test_the_first_attempt_s_failure_still_ends_the_start(unused_tcp_port: int) -> None:
    """A bot that cannot reach its database at all does not start (compose or systemd say so)."""
    lease = lease_for(
        f"postgresql://stylebot:hunter2@127.0.0.1:{unused_tcp_port}/nothing",
        on_lost=Lost(),
        poll_seconds=POLL,
    )
    try:
        async with asyncio.timeout(WAIT):
            with pytest.raises(OSError, match="Connect call failed"):
                await lease.acquire(asyncio.Event())
    finally:
        await lease.release()

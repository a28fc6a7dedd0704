"""The database's lease: one bot process at a time recovers and dispatches a database's jobs.

Two bot processes on one database (a rolling deploy, a second replica, ``make run`` twice) would each put
every job left ``running`` back in the queue at start-up, the second taking the first one's jobs, and then
both dispatch; Telegram answers the second poller with 409 Conflict. So a bot process takes the lease
before it recovers or dispatches anything, polls Telegram or connects to Discord (``bot.runtime``), and a
second process on the same database waits for it:

- PostgreSQL: a session advisory lock (``pg_try_advisory_lock``) held by a connection of its own. The
  server frees it when that connection ends, a killed process's included (its socket closes).
- SQLite: ``flock`` on ``<database file>.lock``; the kernel frees it when the process ends. An in-memory
  database is seen by one engine only and needs no lease.

The holder says who it is (process id, host, since when) where a waiter can read it: in the lock file, and
as its connection's ``application_name``. A waiter tries again every ``POLL_SECONDS`` and says that it
waits, and for whom, in one line (another only if the holder changes). A waiter may wait for hours, so
once it has reached the database, a passing failure of it (a server restart, a dropped connection:
``passing``) does not end the process: the attempt is tried again with ``bot.retrying``'s patient pauses,
one WARNING naming the error's class per outage, and the wait goes on on a new connection. (The first
attempt's errors still propagate: a bot that cannot reach its database at all does not start.)

Once held, the lease is checked every ``CHECK_SECONDS``: a PostgreSQL connection that dropped (a server
restart, a network cut, ``pg_terminate_backend``) or a lock file removed or replaced means another process
may take the jobs now. The lease then calls ``on_lost`` once, and the bot exits at once (``bot.runtime``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import URL, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from bot import retrying
from bot.db.database import is_sqlite_memory, normalize_url

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # how often a waiting process tries again: it takes over about this long after a death
CHECK_SECONDS = 1.0  # how often the holder makes sure it still holds the lease
CHECK_TIMEOUT = 10.0  # a check that takes longer counts as a lost lease
CLOSE_TIMEOUT = 5.0
# After taking the lease from a holder it saw, a process waits one check interval and this long before it
# recovers anything: a holder that lost the lease without dying (its connection terminated, its lock file
# replaced) notices at its next check and exits, so the two never work the jobs at the same time.
TAKEOVER_HOLDOFF = 1.0
# The advisory lock's key: one per database, the same in every Stylebot (31 bits: pg_locks shows it as objid).
PG_LOCK_KEY = (
    int.from_bytes(hashlib.sha256(b"stylebot: one process works the jobs").digest()[:4]) & 0x7FFFFFFF
)
APPLICATION_NAME_MAX = 63  # PostgreSQL's NAMEDATALEN - 1
# SQLSTATE classes of a server going away or not taking connections yet: connection exceptions (08),
# operator intervention (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now), and
# insufficient resources (53: too many connections while the others reconnect).
PASSING_SQLSTATES = ("08", "57P", "53")
# OS errors of a network on its way back (a server's host rebooting, its name not resolving yet); other OS
# errors (a lock file's directory made read-only, a path that is gone) do not pass by themselves.
PASSING_ERRNOS = frozenset(
    {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN, errno.ETIMEDOUT}
)
# A waiting process's pauses in an outage grow no longer than this many of its polls: the holder usually
# dies in the same outage, and the waiter should take over soon after the database is back, not minutes on.
OUTAGE_PAUSE_POLLS = 10

LostCallback = Callable[[str], None]


def passing(err: BaseException) -> bool:
    """A failure to wait out: the server unreachable, restarting or out of connections, the connection
    dropped. Not: a refused login, a database that does not exist, a bug in a statement."""
    if isinstance(err, (ConnectionError, TimeoutError, socket.gaierror)):  # refused, reset, timed out
        return True
    if isinstance(err, OSError):  # unreachable; asyncio's "Multiple exceptions" when every address failed
        return err.errno in PASSING_ERRNOS or (
            err.errno is None and str(err).startswith("Multiple exceptions")
        )
    if isinstance(err, DBAPIError):
        state = str(getattr(err.orig, "sqlstate", None) or "")
        return err.connection_invalidated or state.startswith(PASSING_SQLSTATES)
    return False


def describe(err: BaseException) -> str:
    """An error for the log: its class, the driver's beneath it and the SQLSTATE, never its text (which may
    quote the server's address, a role or the SQL)."""
    names = [type(err).__name__]
    orig = err.orig if isinstance(err, DBAPIError) else None
    driver = orig.__cause__ if orig is not None and orig.__cause__ is not None else orig
    if driver is not None and type(driver).__name__ not in names:
        names.append(type(driver).__name__)
    state = getattr(orig, "sqlstate", None)
    return " / ".join(names) + (f" (SQLSTATE {state})" if state else "")


def identity() -> str:
    """Who holds the lease, as a waiting process shows it: process id, host and since when."""
    since = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"pid {os.getpid()} on {socket.gethostname()} since {since}"


class Lease(ABC):
    """``acquire`` waits until this process holds the lease; ``release`` gives it back. Not reentrant:
    one ``acquire`` and one ``release`` per process run."""

    def __init__(
        self,
        *,
        on_lost: LostCallback,
        poll_seconds: float = POLL_SECONDS,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        self.on_lost = on_lost
        self.poll_seconds = poll_seconds
        self.check_seconds = check_seconds
        self.held = False
        self.holder: str | None = None  # who holds the lease while this process waits ("unknown" if unseen)
        self._lock = asyncio.Lock()  # an attempt and a release never overlap
        self._watch: asyncio.Task[None] | None = None

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait for the lease: ``True`` once held, ``False`` if ``stop`` is set first (then it is not held).

        Errors of the first attempt propagate: a bot that cannot reach its database does not start. After
        that, passing ones (``passing``) are waited out (``_attempt``)."""
        told: str | None = None
        started = time.monotonic()
        reached = False
        while not stop.is_set():
            attempt = asyncio.create_task(self._attempt(stop, patient=reached), name="lease-attempt")
            stopped = asyncio.create_task(stop.wait(), name="lease-stop")
            try:  # a stop ends the attempt, even in one of its pauses
                await asyncio.wait({attempt, stopped}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
                attempt.cancel()  # nothing if it is done
                await asyncio.wait({attempt, stopped})
            if attempt.cancelled():
                break
            holder = attempt.result()  # a failure that is not passing ends the process, as at the start
            reached = True
            if self.held and told is not None and not await self._held_off(stop):
                await self.release()  # stopped while holding off: nothing was recovered
                return False
            if self.held:
                self.holder = None
                log.info(
                    "this process (%s) holds the database's lease%s; it alone recovers and dispatches jobs",
                    identity(),
                    f" after waiting {time.monotonic() - started:.1f} s" if told is not None else "",
                )
                return True
            if holder is not None and holder != told:
                log.warning(
                    "another bot process holds this database (%s): waiting for it to stop, "
                    "trying every %g s; only one process may run the jobs",
                    holder or "unknown",
                    self.poll_seconds,
                )
                told = holder
                self.holder = holder or "unknown"
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.poll_seconds)
        async with self._lock:  # a waiting connection, or a lease taken just as the stop came
            await self._give_back()
        return False

    async def _attempt(self, stop: asyncio.Event, *, patient: bool) -> str | None:
        """One attempt (``_try``), and the lease's watch if it was taken. ``patient``: the database was
        reached before, so a passing failure is tried again (``bot.retrying``'s patient pauses, capped at
        ``OUTAGE_PAUSE_POLLS`` polls; one WARNING per outage) until it goes through or the stop cancels it."""
        async with self._lock:
            if not patient:
                holder = await self._try()
            else:
                outage: list[float] = []  # when the first failure of this attempt came

                async def attempt() -> str | None:
                    try:
                        return await self._try()
                    except Exception:
                        if not outage:
                            outage.append(time.monotonic())
                        raise

                holder = await retrying.retried(
                    attempt,
                    passing=passing,
                    what="waiting for the database's lease",
                    pauses=(min(p, OUTAGE_PAUSE_POLLS * self.poll_seconds) for p in retrying.patient()),
                    describe=describe,
                    quiet=True,
                )
                if outage:
                    log.info(
                        "reached the database again after %.1f s; still waiting for the lease",
                        time.monotonic() - outage[0],
                    )
            if holder is None and not stop.is_set():
                self.held = True
                self._watch = asyncio.create_task(self._watch_forever(), name="lease-watch")
            return holder

    async def _held_off(self, stop: asyncio.Event) -> bool:
        """Give the holder just seen the time to notice it lost the lease (see ``TAKEOVER_HOLDOFF``);
        False if ``stop`` came meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), self.check_seconds + TAKEOVER_HOLDOFF)
        return not stop.is_set()

    async def release(self) -> None:
        """Give the lease back (at a stop, after the queue put its jobs back): a waiting process takes over
        within ``POLL_SECONDS``. Nothing happens when it is not held."""
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
        async with self._lock:
            await self._give_back()  # also what a failed or stopped acquire left open
            if self.held:
                self.held = False
                log.info("released the database's lease")

    async def _watch_forever(self) -> None:
        while True:
            await asyncio.sleep(self.check_seconds)
            try:
                async with asyncio.timeout(CHECK_TIMEOUT):
                    reason = await self._lost()
            except TimeoutError:
                reason = f"the lease's check took over {CHECK_TIMEOUT:g} s"
            except Exception as err:  # a check that cannot tell proves nothing: the lease may be gone
                reason = f"the lease's check failed: {type(err).__name__}: {err}"
            if reason is not None:
                self.held = False
                log.critical("lost the database's lease: %s", reason)
                self.on_lost(reason)
                return

    @abstractmethod
    async def _try(self) -> str | None:
        """One attempt: ``None`` when this process holds the lease now, or who holds it ("" if unknown)."""

    @abstractmethod
    async def _lost(self) -> str | None:
        """``None`` while this process still holds the lease, or why it no longer does."""

    @abstractmethod
    async def _give_back(self) -> None:
        """Free the lease (or the attempt's resources); never raises."""


class Unshared(Lease):
    """An in-memory SQLite database: no other process can see it, so there is nothing to share."""

    async def _try(self) -> str | None:
        return None

    async def _lost(self) -> str | None:
        return None

    async def _give_back(self) -> None:
        return None


class FileLease(Lease):
    """SQLite: ``flock`` on a file beside the database; the kernel drops it with the process."""

    def __init__(
        self,
        path: Path,
        *,
        on_lost: LostCallback,
        poll_seconds: float = POLL_SECONDS,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        super().__init__(on_lost=on_lost, poll_seconds=poll_seconds, check_seconds=check_seconds)
        self.path = path
        self._fd: int | None = None

    async def _try(self) -> str | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by child processes (PEP 446)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip()
            os.close(fd)
            return holder or ""
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{identity()}\n".encode(), 0)
        self._fd = fd
        return None

    async def _lost(self) -> str | None:
        assert self._fd is not None
        try:
            same = os.stat(self.path).st_ino == os.fstat(self._fd).st_ino
        except FileNotFoundError:
            same = False
        return None if same else f"{self.path} was removed or replaced"

    async def _give_back(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the last descriptor drops the flock


class PostgresLease(Lease):
    """PostgreSQL: a session advisory lock on a connection of its own, freed by the server when the
    connection ends. The connection runs in autocommit (no transaction left open for hours)."""

    def __init__(
        self,
        url: URL,
        *,
        on_lost: LostCallback,
        poll_seconds: float = POLL_SECONDS,
        check_seconds: float = CHECK_SECONDS,
    ) -> None:
        super().__init__(on_lost=on_lost, poll_seconds=poll_seconds, check_seconds=check_seconds)
        self._engine: AsyncEngine = create_async_engine(url, poolclass=NullPool)
        self._conn: AsyncConnection | None = None

    async def _connection(self) -> AsyncConnection:
        if self._conn is None:
            conn = await self._engine.connect()
            self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    async def _try(self) -> str | None:
        try:
            return await self._try_on(await self._connection())
        except Exception:  # a dropped connection is useless: the next attempt makes a new one
            await self._close_connection()
            raise

    async def _try_on(self, conn: AsyncConnection) -> str | None:
        if await conn.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": PG_LOCK_KEY}):
            name = f"stylebot {identity()}"[:APPLICATION_NAME_MAX]
            await conn.execute(text("SELECT set_config('application_name', :name, false)"), {"name": name})
            return None
        row = (
            await conn.execute(
                text(
                    "SELECT a.application_name, a.pid, host(a.client_addr) FROM pg_locks l "
                    "JOIN pg_stat_activity a ON a.pid = l.pid "
                    "WHERE l.locktype = 'advisory' AND l.granted AND l.classid = 0 "
                    "AND l.objid::text::bigint = :key AND l.objsubid = 1 "
                    "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"key": PG_LOCK_KEY},
            )
        ).first()
        if row is None:  # freed between the two statements, or not visible to this role
            return ""
        name, pid, address = row
        if name and name.startswith("stylebot "):
            return str(name).removeprefix("stylebot ")
        return f"PostgreSQL backend {pid}" + (f" from {address}" if address else "")

    async def _lost(self) -> str | None:
        conn = self._conn
        if conn is None:
            return "its connection is closed"
        try:
            held = await conn.scalar(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid() "
                    "AND granted AND classid = 0 AND objid::text::bigint = :key AND objsubid = 1"
                ),
                {"key": PG_LOCK_KEY},
            )
        except (SQLAlchemyError, OSError) as err:
            return f"its connection to PostgreSQL failed ({type(err).__name__}: {err})"
        return None if held else "PostgreSQL no longer shows the advisory lock as held"

    async def _close_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:  # closing the session frees its advisory locks
            with contextlib.suppress(SQLAlchemyError, OSError, TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await conn.close()

    async def _give_back(self) -> None:
        await self._close_connection()
        with contextlib.suppress(SQLAlchemyError, OSError, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await self._engine.dispose()


def lease_for(
    url: str | URL,
    *,
    on_lost: LostCallback,
    poll_seconds: float = POLL_SECONDS,
    check_seconds: float = CHECK_SECONDS,
) -> Lease:
    """The lease that guards the database at ``url``: an advisory lock on PostgreSQL, a lock file beside a
    SQLite file, none for an in-memory SQLite database."""
    url = normalize_url(url)
    backend = url.get_backend_name()
    if backend == "sqlite" and is_sqlite_memory(url):
        return Unshared(on_lost=on_lost)
    if backend == "sqlite":
        database = (url.database or "").removeprefix("file:").partition("?")[0]
        path = Path(f"{database}.lock")
        return FileLease(path, on_lost=on_lost, poll_seconds=poll_seconds, check_seconds=check_seconds)
    if backend == "postgresql":
        return PostgresLease(url, on_lost=on_lost, poll_seconds=poll_seconds, check_seconds=check_seconds)
    raise ValueError(f"no lease for a {backend} database: Stylebot runs on SQLite or PostgreSQL")

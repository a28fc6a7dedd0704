"""Fixtures that run the data layer on SQLite (a file in tmp_path) and on a local PostgreSQL.

PostgreSQL: the server named by ``STYLEBOT_TEST_POSTGRES_URL`` (default: the ``test`` database on
127.0.0.1:5432 as ``postgres``) is only used to create uniquely named ``stylebot_test_<hex>`` databases,
which are dropped when the session ends. Without a reachable server those cases are skipped.

Blocking work (asyncpg admin statements, Alembic, whose env.py calls ``asyncio.run``) runs in a worker
thread, so it never meets the event loop pytest-asyncio keeps for async tests.
"""

from __future__ import annotations

import asyncio
import functools
import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped]  # asyncpg ships no type information
import pytest
from alembic import command
from sqlalchemy import make_url, text

from bot.db import Database, alembic_config

T = TypeVar("T")

POSTGRES_ADMIN_URL = os.environ.get("STYLEBOT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
TABLES = ("style_images", "jobs", "chat_defaults", "presets", "users", "blocked_users", "disabled_chats")


def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """Run blocking code (which may call ``asyncio.run``) away from the test's event loop."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(fn, *args).result()


def run_async(make_coro: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await make_coro()

    return in_thread(asyncio.run, main())


def alembic(name: str, url: str, *args: Any) -> None:
    """``alembic <name> <args>`` against ``url``, the way ``Database.migrate()`` configures it."""
    in_thread(getattr(command, name), alembic_config(url), *args)


class PostgresServer:
    """Creates throw-away databases on the local server and drops them all at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.created: list[str] = []

    async def _admin(self, sql: str) -> None:
        # asyncpg runs statements outside a transaction unless asked: CREATE DATABASE needs that.
        connection = await asyncpg.connect(self.admin_url, timeout=5)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    def ping(self) -> None:
        run_async(lambda: self._admin("SELECT 1"))

    def create_database(self) -> str:
        """A new empty database; returns its SQLAlchemy URL (plain postgresql://, as users give it)."""
        name = f"stylebot_test_{uuid.uuid4().hex[:12]}"
        run_async(lambda: self._admin(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return make_url(self.admin_url).set(database=name).render_as_string(hide_password=False)

    def drop_database(self, url: str) -> None:
        name = make_url(url).database
        assert name is not None
        assert name.startswith("stylebot_test_")
        run_async(lambda: self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.created.remove(name)

    def drop_all(self) -> None:
        for name in list(self.created):
            run_async(functools.partial(self._admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.created.clear()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer(POSTGRES_ADMIN_URL)
    try:
        server.ping()
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        pytest.skip(
            f"PostgreSQL is not reachable at {POSTGRES_ADMIN_URL} ({exc!r}); set STYLEBOT_TEST_POSTGRES_URL"
        )
    yield server
    server.drop_all()


@pytest.fixture(scope="session")
def migrated_postgres_url(postgres_server: PostgresServer) -> str:
    """One migrated database for every repository test; each test starts by emptying its tables."""
    url = postgres_server.create_database()
    alembic("upgrade", url, "head")
    return url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def empty_url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A database with no tables yet: for the migration tests."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.create_database()
    yield url
    server.drop_database(url)


@pytest.fixture
async def database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """A migrated, empty database on each back end."""
    if backend == "sqlite":
        db = Database(f"sqlite+aiosqlite:///{tmp_path / 'stylebot.db'}")
        await db.migrate()
    else:
        db = Database(request.getfixturevalue("migrated_postgres_url"))
        async with db.session() as session:
            await session.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
async def user(database: Database) -> int:
    """A stored user, as jobs and presets need one."""
    await database.upsert_user(1001, "ada", "Ada", "en", platform="telegram")
    return 1001

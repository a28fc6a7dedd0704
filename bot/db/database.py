"""The engine, the sessions and the migrations: one ``Database`` object per process.

``Database`` also carries every repository method (see ``bot.db.repositories``), so the bot passes a
single object around and tests can swap it for a fake with the same methods.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import URL, Connection, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from bot.db.repositories import (
    ChatDefaultsRepository,
    ChatMoveRepository,
    JobRepository,
    ModerationRepository,
    PresetRepository,
    StatsRepository,
    StyleImageRepository,
    UserRepository,
)

log = logging.getLogger(__name__)

DEFAULT_URL = "sqlite+aiosqlite:///data/stylebot.db"
MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 5000


def normalize_url(url: str | URL) -> URL:
    """Give a URL the async driver it needs.

    Hosting providers hand out ``postgres://`` or ``postgresql://`` URLs (the psycopg2 default) and users
    paste them as they are; the bot runs on asyncio, so those mean asyncpg here. The same goes for a plain
    ``sqlite://`` URL and aiosqlite. libpq's ``sslmode=`` query parameter, common in such URLs, is
    spelled ``ssl=`` for asyncpg. An explicitly named driver is left alone.
    """
    url = make_url(url)
    backend, _, driver = url.drivername.partition("+")
    if backend in ("postgres", "postgresql") and not driver:
        url = url.set(drivername="postgresql+asyncpg")
    elif backend == "sqlite" and not driver:
        url = url.set(drivername="sqlite+aiosqlite")
    if url.drivername == "postgresql+asyncpg" and "sslmode" in url.query and "ssl" not in url.query:
        url = url.difference_update_query(["sslmode"]).update_query_dict({"ssl": url.query["sslmode"]})
    return url


def prepare_sqlite_path(url: URL) -> None:
    """Create the directory of a SQLite file (``data/`` for the default URL): SQLite will not."""
    if url.get_backend_name() != "sqlite":
        return
    database = url.database or ""
    if is_sqlite_memory(url) or database.startswith("file:") or url.query.get("uri"):
        return
    Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def is_sqlite_memory(url: URL) -> bool:
    """An in-memory SQLite database (``sqlite+aiosqlite://``), which another engine cannot see."""
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and (
        database in ("", ":memory:") or "mode=memory" in database or url.query.get("mode") == "memory"
    )


def _upgrade_on_connection(connection: Connection, config: Config) -> None:
    """Alembic's connection sharing: env.py uses ``config.attributes["connection"]`` when present.

    SQLite's foreign keys go off meanwhile, as batch migrations need (dropping the old copy of a table
    must not cascade); the pragma is ignored inside a transaction, so it is set before one begins.
    """
    connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
    connection.commit()
    try:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    finally:
        connection.commit()
        connection.exec_driver_sql("PRAGMA foreign_keys=ON")
        connection.commit()


def alembic_config(url: str | URL) -> Config:
    """An Alembic config for ``url`` that does not read alembic.ini.

    alembic.ini is for maintainers at the command line; reading it here would run its logging setup,
    which replaces the bot's handlers and disables the loggers that already exist.
    """
    url = normalize_url(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolates '%', which URL-encoded passwords contain.
    config.set_main_option("sqlalchemy.url", url.render_as_string(hide_password=False).replace("%", "%%"))
    return config


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Per connection: WAL lets readers run beside the writer, foreign keys are off unless asked for,
    and the busy timeout makes a second writer wait for the lock instead of failing at once."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    finally:
        cursor.close()


class Database(
    UserRepository,
    PresetRepository,
    ChatDefaultsRepository,
    ChatMoveRepository,
    JobRepository,
    StyleImageRepository,
    ModerationRepository,
    StatsRepository,
):
    """Owns the async engine and the session factory; every repository method is on this object."""

    def __init__(self, url: str | URL = DEFAULT_URL, *, echo: bool = False) -> None:
        self.url = normalize_url(url)
        options: dict[str, Any] = {"echo": echo}
        if self.url.get_backend_name() == "sqlite":
            prepare_sqlite_path(self.url)
            options["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        else:
            options["pool_pre_ping"] = True  # the server may restart while the bot runs for weeks
        self._engine: AsyncEngine = create_async_engine(self.url, **options)
        if self.url.get_backend_name() == "sqlite":
            event.listen(self._engine.sync_engine, "connect", _set_sqlite_pragmas)
        self._sessions = async_sessionmaker(self._engine, expire_on_commit=False)

    @property
    def dialect_name(self) -> str:
        return self._engine.dialect.name

    @property
    def engine(self) -> AsyncEngine:
        """For tests and maintenance scripts; the bot itself goes through the repository methods."""
        return self._engine

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        async with self._sessions.begin() as session:
            yield session

    async def migrate(self) -> None:
        """Bring the schema to the newest revision.

        Runs in a thread: the async migrations environment calls ``asyncio.run``, which cannot nest
        inside the bot's running loop. An in-memory SQLite database exists only inside this engine's
        connection, so that one is migrated through the connection itself.
        """
        log.info("migrating %s", self.url.render_as_string(hide_password=True))
        if is_sqlite_memory(self.url):
            async with self._engine.connect() as connection:
                await connection.run_sync(_upgrade_on_connection, alembic_config(self.url))
        else:
            await asyncio.to_thread(command.upgrade, alembic_config(self.url), "head")

    async def dispose(self) -> None:
        """Close pooled connections; call once at shutdown."""
        await self._engine.dispose()

    def __repr__(self) -> str:
        return f"Database({self.url.render_as_string(hide_password=True)!r})"

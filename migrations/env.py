"""Alembic environment, async style: an async engine runs the migrations through ``run_sync``.

The URL comes from the config's ``sqlalchemy.url`` (``Database.migrate()`` and the tests set it), else
from the ``DATABASE_URL`` environment variable, else the bot's default SQLite file. alembic.ini does not
set one, so the command line follows DATABASE_URL like the bot does.
"""

from __future__ import annotations

import asyncio
import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import URL, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from bot.db.database import DEFAULT_URL, normalize_url, prepare_sqlite_path
from bot.db.models import Base

config = context.config

# Only when run from the alembic command line: the bot builds its config without a file, so its own
# logging is left alone.
if config.config_file_name is not None:
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = Base.metadata


def database_url() -> URL:
    url = config.get_main_option("sqlalchemy.url") or os.environ.get("DATABASE_URL") or DEFAULT_URL
    return normalize_url(url)


def configure(backend: str, **options: object) -> None:
    context.configure(
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite cannot ALTER most things; batch mode copies the table instead.
        render_as_batch=backend == "sqlite",
        **options,
    )


def run_migrations_offline() -> None:
    """``alembic upgrade --sql``: print the SQL instead of running it."""
    url = database_url()
    configure(url.get_backend_name(), url=url, literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def do_run_migrations(connection: Connection) -> None:
    configure(connection.dialect.name, connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    url = database_url()
    prepare_sqlite_path(url)
    # A plain engine: no pooled connections to leak, and SQLite's foreign keys stay off, as batch
    # migrations need (dropping the old copy of a table must not cascade).
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # Database.migrate() lends its own connection (in-memory SQLite)
        do_run_migrations(connection)
    else:
        asyncio.run(run_async_migrations())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

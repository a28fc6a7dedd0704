"""Settings every test process shares, and the migrated SQLite database tests copy."""

from __future__ import annotations

import asyncio
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

# No test downloads the bundled catalog's paintings from the internet: processes the tests start (Celery
# workers, the CLI) inherit this. Tests of the background fetch turn it on with their own local server.
os.environ.setdefault("STYLES_PREFETCH", "off")


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database migrated to the newest revision once per session. Tests that start the bot or its
    core copy it (``copy_sqlite``) instead of running every migration again (about half a second each on
    two cores); the bot's own migrate then finds nothing to do. The migrations themselves are tested from
    an empty database in tests/bot/db."""
    from bot.db import Database

    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"

    async def migrate() -> None:
        db = Database(f"sqlite+aiosqlite:///{path}")
        try:
            await db.migrate()
        finally:
            await db.dispose()

    # Alembic's env.py calls asyncio.run, which cannot nest in a running loop: a thread of its own.
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, migrate()).result()
    assert not path.with_name(path.name + "-wal").exists()  # closed: the one file holds it all
    return path


def copy_sqlite(template: Path, path: Path) -> str:
    """``path`` as a copy of the migrated template (unless it exists); returns its database URL."""
    if not path.exists():
        shutil.copyfile(template, path)
    return f"sqlite+aiosqlite:///{path}"

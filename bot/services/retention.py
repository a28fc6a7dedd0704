"""What the bot keeps on disk, and for how long: a sweep at start-up and then periodically.

- Results (``DATA_DIR/results``) stay ``RESULT_RETENTION_DAYS`` for the full-resolution button; a
  half-written ``.tmp`` left by a crash goes once ``ORPHAN_INPUT_HOURS`` old.
- Job inputs (``DATA_DIR/jobs``) are removed when their job fails or is cancelled; a finished job's stay
  ``RESULT_RETENTION_DAYS`` (its owner may have the photo painted again). What no queued, running or
  recently finished job uses any more (an input whose removal failed, a job abandoned by a crash, a
  submission that stopped between storing its photo and adding its row, a finished job's past the
  retention time) goes once ``ORPHAN_INPUT_HOURS`` old; the age spares a submission still in progress.

The sweep knows no chat platform and touches nothing outside those two folders.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.db import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionPolicy:
    results: timedelta  # RESULT_RETENTION_DAYS
    orphans: timedelta  # ORPHAN_INPUT_HOURS
    every: timedelta  # RETENTION_SWEEP_MINUTES


@dataclass(frozen=True)
class Swept:
    results: int
    inputs: int


class Retention:
    def __init__(self, db: Database, *, results_dir: Path, jobs_dir: Path, policy: RetentionPolicy) -> None:
        self.db = db
        self.results_dir = results_dir
        self.jobs_dir = jobs_dir
        self.policy = policy
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Sweep once now (so a restart tidies at once), then every ``policy.every`` until ``stop``.

        A sweep that fails (a file where a folder should be, a full disk) is logged, never fatal: tidying
        up must not keep the bot from starting."""
        await self._sweep_logged()
        self._task = asyncio.create_task(self._periodically(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _periodically(self) -> None:
        while True:
            await asyncio.sleep(self.policy.every.total_seconds())
            await self._sweep_logged()

    async def _sweep_logged(self) -> None:
        try:
            await self.sweep()
        except Exception:  # a full disk or a database hiccup must not end the sweeping for good
            log.exception("retention sweep failed; trying again in %s", self.policy.every)

    async def sweep(self) -> Swept:
        """Delete what the policy no longer keeps; returns how much went."""
        in_use = set()
        # Active first: jobs only move from active to finished, so a job that ends between the two
        # queries is in the second one; the other order could miss it and delete its photo.
        active = await self.db.queued_and_running()
        kept = await self.db.finished_since(datetime.now(UTC) - self.policy.results)
        for job in [*active, *kept]:
            for path in (job.content_path, *job.style_paths):
                in_use.add(_top_entry(Path(path), self.jobs_dir))
        swept = await asyncio.to_thread(self._sweep_files, in_use)
        if swept.results or swept.inputs:
            log.info("retention: removed %d results and %d job inputs", swept.results, swept.inputs)
        return swept

    def _sweep_files(self, in_use: set[Path | None]) -> Swept:
        now = time.time()
        results = 0
        for path in _entries(self.results_dir):
            limit = self.policy.orphans if path.suffix == ".tmp" else self.policy.results
            if _older_than(path, now - limit.total_seconds()) and _remove(path):
                results += 1
        inputs = 0
        for path in _entries(self.jobs_dir):
            if path not in in_use and _older_than(path, now - self.policy.orphans.total_seconds()):
                inputs += _remove(path)
        return Swept(results, inputs)


def _top_entry(path: Path, root: Path) -> Path | None:
    """The entry directly inside ``root`` that holds ``path`` (a job's folder), if it is under ``root``."""
    try:
        relative = path.resolve().relative_to(root.resolve())
    except ValueError:
        return None
    return (root / relative.parts[0]).resolve() if relative.parts else None


def _entries(folder: Path) -> list[Path]:
    try:
        return [entry.resolve() for entry in folder.iterdir()]
    except FileNotFoundError:
        return []


def _older_than(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except OSError:
        return False


def _remove(path: Path) -> bool:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        return False
    except OSError as err:
        log.warning("retention: cannot remove %s: %s", path, err)
        return False
    return True

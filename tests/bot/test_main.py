"""``python -m bot`` (what ``make run`` runs): which front ends start, and the answer when none can."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import bot.__main__ as entry
from bot.config import load_settings
from bot.queue.base import JobQueue, QueueStatus

ROOT = Path(__file__).resolve().parents[2]
# Tokens no other test writes: ``main`` registers them with the log redaction for the whole process.
TG = "777:test-main-telegram-token"
DC = "test-main-discord-token"


def tokens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, telegram: str, discord: str) -> None:
    monkeypatch.chdir(tmp_path)  # no .env of the developer's
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", telegram)  # empty: not set
    monkeypatch.setenv("DISCORD_BOT_TOKEN", discord)
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STYLES_PREFETCH", "false")
    monkeypatch.setenv("HEALTH_PORT", "0")


def test_without_any_token_it_says_so_and_exits(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "TELEGRAM_BOT_TOKEN": "",
        "DISCORD_BOT_TOKEN": "",
    }
    done = subprocess.run(
        [sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "neither TELEGRAM_BOT_TOKEN nor DISCORD_BOT_TOKEN is set" in done.stderr


@pytest.mark.parametrize(("telegram", "discord"), [(TG, ""), ("", DC), (TG, DC)])
def test_every_configuration_runs_in_run_all(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, telegram: str, discord: str
) -> None:
    """Every front end, alone or together, runs over one core in ``run_all`` (Telegram alone no longer
    in PTB's run_polling, whose Updater confirmed updates before their handlers ran)."""
    tokens(monkeypatch, tmp_path, telegram, discord)
    taken: list[str] = []

    async def run_all(settings: Any, *_: Any) -> None:
        taken.append("run_all")

    monkeypatch.setattr(entry, "run_all", run_all)
    assert entry.main([]) == 0
    assert taken == ["run_all"]


class IdleQueue(JobQueue):
    async def start(self, events: Any) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def submit(self, job_id: int) -> None:
        return None

    async def cancel(self, job_id: int) -> Any:
        return None

    def status(self) -> QueueStatus:
        return QueueStatus(backend="idle", workers=1, busy=0, healthy=True)


@pytest.mark.parametrize(("telegram", "discord"), [("", DC), (TG, DC)])
async def test_run_all_attaches_exactly_the_configured_front_ends(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, telegram: str, discord: str
) -> None:
    tokens(monkeypatch, tmp_path, telegram, discord)
    settings = load_settings()
    started: list[str] = []
    stop = asyncio.Event()

    def front_end(name: str) -> Any:
        @contextlib.asynccontextmanager
        async def running(*_: Any, **__: Any) -> AsyncIterator[None]:
            started.append(name)
            yield
            started.append(f"{name} stopped")

        return running

    monkeypatch.setattr("bot.telegram.app.running", front_end("telegram"))
    monkeypatch.setattr("bot.telegram.app.build_application", lambda settings, **_: None)
    monkeypatch.setattr("bot.discord.app.running", front_end("discord"))
    asyncio.get_running_loop().call_later(0.5, stop.set)
    await entry.run_all(settings, lambda settings, db: IdleQueue(), stop=stop)
    expected = (["telegram"] if telegram else []) + ["discord"]
    assert started[: len(expected)] == expected
    assert sorted(started[len(expected) :]) == sorted(f"{name} stopped" for name in expected)

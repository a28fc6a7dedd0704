"""bench.soak in miniature, so that the soak benchmark does not rot: a few photos per platform through the
real bot with faults on, a worker killed, the bot killed and started again; the counts add up and nothing
is lost."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pytest

from bench.soak import markdown, soak_telegram
from bench.soak_discord import soak_discord

JOBS = 4


def tiny(tmp_path: Path) -> argparse.Namespace:
    """Four photos of two users (one blocks the bot), the bot killed after the first result, a second to
    wait for a late duplicate: the scripts run and report; the soak itself is ``python -m bench.soak``."""
    return argparse.Namespace(
        jobs=JOBS, users=2, share=0.1, workers=1, worker_kills=1, interval=0.05, seed=0, timeout=150.0,
        settle=1.0, out=tmp_path / "soak.json",
    )  # fmt: skip


def check(report: dict[str, Any]) -> None:
    assert report["photos"] == JOBS
    outcomes = ("delivered_once", "duplicated", "given_up", "failed_told", "refused_told", "lost")
    assert sum(report[name] for name in outcomes) == JOBS  # every photo counted once
    assert report["lost"] == 0, report["lost_photos"]
    assert report["duplicate_causes"].get("unexplained", 0) == 0, report["unexplained_duplicates"]
    assert report["kills"]["bot"] == 1
    assert report["rss_mb"]["end"] is not None
    assert report["platform"] in markdown([report])


@pytest.mark.timeout(240)
async def test_the_telegram_half_runs(tmp_path: Path) -> None:
    check(await soak_telegram(tiny(tmp_path)))


@pytest.mark.timeout(240)
async def test_the_discord_half_runs(tmp_path: Path) -> None:
    check(await soak_discord(tiny(tmp_path)))

"""The style statistics cache on disk: a size cap, least recently used first out (issue 12, item 5)."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from engine.settings import EngineSettings
from engine.style_stats import StyleStatsCache

CPU = torch.device("cpu")


def grams(value: float) -> dict[str, torch.Tensor]:
    return {"relu1_1": torch.full((64, 64), value)}  # 16 KiB, as one layer of a small Gram target


def files(directory: Path) -> set[str]:
    return {p.stem for p in directory.glob("*.pt")}


def age(directory: Path, key: str, seconds: int) -> None:
    """Pretend the entry was last used at ``seconds`` after the epoch (long ago)."""
    os.utime(directory / f"{key}.pt", (seconds, seconds))


def test_the_least_recently_used_entries_leave_when_the_cap_is_passed(tmp_path: Path) -> None:
    writer = StyleStatsCache(tmp_path, max_bytes=10**9)
    writer.put("a", grams(1.0))
    entry = (tmp_path / "a.pt").stat().st_size
    writer.put("b", grams(2.0))
    age(tmp_path, "a", 1000)
    age(tmp_path, "b", 2000)  # b was used after a...

    cache = StyleStatsCache(tmp_path, max_bytes=int(entry * 2.5))  # a fresh process: nothing in memory
    hit = cache.get("a", CPU)  # ...but now a is used again
    assert hit is not None
    assert torch.equal(hit["relu1_1"], grams(1.0)["relu1_1"])
    cache.put("c", grams(3.0))
    assert files(tmp_path) == {"a", "c"}  # b, the least recently used, made room

    age(tmp_path, "a", 1000)
    age(tmp_path, "c", 2000)
    assert cache.get("a", CPU) is not None  # a hit in memory marks the file as used too
    cache.put("d", grams(4.0))
    assert files(tmp_path) == {"a", "d"}


def test_an_entry_larger_than_the_cap_is_kept_until_the_next_one(tmp_path: Path) -> None:
    cache = StyleStatsCache(tmp_path, max_bytes=1)
    cache.put("a", grams(1.0))
    assert files(tmp_path) == {"a"}  # the entry just computed stays: the job about to run reads it
    cache.put("b", grams(2.0))
    assert files(tmp_path) == {"b"}


def test_stale_half_written_files_are_removed(tmp_path: Path) -> None:
    stale, fresh = tmp_path / "x.tmp", tmp_path / "y.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"being written")
    os.utime(stale, (1000, 1000))
    StyleStatsCache(tmp_path).put("a", grams(1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "y.tmp"]


def test_the_cap_is_a_setting() -> None:
    assert EngineSettings(style_cache_max_mb=5).style_cache_max_mb == 5
    assert EngineSettings().style_cache_max_mb == 1024


def test_the_engine_takes_the_cap_and_the_fetch_deadline_from_its_settings(tmp_path: Path) -> None:
    from engine.api import Engine

    settings = EngineSettings(
        styles_dir=tmp_path, style_cache_dir=tmp_path, style_cache_max_mb=3, styles_fetch_seconds=7
    )
    engine = Engine.from_settings(settings, device="cpu")
    assert engine.stats.max_bytes == 3 * 2**20
    assert engine.store.deadline == 7

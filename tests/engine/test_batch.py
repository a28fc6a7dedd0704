"""Batched optimization: several jobs in one run, each image on the trajectory it would follow alone."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from engine import figures
from engine import sketch as sketch_module
from engine.api import Engine
from engine.errors import Cancelled, CorruptImageError, SketchUnavailableError
from engine.images import fit_within
from engine.protocol import DEFAULT_STYLE_LAYERS, StyleSettings, StyleSource, StylizeRequest, StylizeResult
from engine.sketch import Sketcher
from tests.engine.samples import checker, encode, painting, photo

ADAM = StyleSettings(quality="draft", size=48, steps=12, optimizer="adam")
LBFGS = StyleSettings(quality="draft", size=48, steps=12)


def pixels(result: StylizeResult | Exception) -> np.ndarray:
    assert isinstance(result, StylizeResult), result
    return np.asarray(Image.open(io.BytesIO(result.image))).astype(int)


def mixed_requests(settings: StyleSettings = LBFGS, shapes: bool = False) -> list[StylizeRequest]:
    """Jobs with one schedule, different in all else: photo, painting, strength, colours, start and, with
    ``shapes``, the photo's shape (a portrait and a wider landscape beside a 4:3 one)."""
    mirrored = photo(64, 48).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return [
        StylizeRequest(encode(photo(64, 48)), (StyleSource(image=encode(painting())),), settings),
        StylizeRequest(
            encode(photo(48, 64) if shapes else mirrored),
            (StyleSource(image=encode(checker())),),
            settings.replace(strength=0.8, seed=3, init="noise"),
        ),
        StylizeRequest(
            encode(photo(64, 40) if shapes else photo(64, 48)),
            (StyleSource(image=encode(painting(seed=2, hue="cool"))),),
            settings.replace(preserve_colors="luminance"),
        ),
        StylizeRequest(
            encode(photo(64, 48)),
            (StyleSource(image=encode(painting(seed=5))),),
            settings.replace(preserve_colors="histogram", init="gray", strength=0.3),
        ),
    ]


def batch_sizes(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Records the size of every run ``engine`` makes, so a test can see that jobs really shared one."""
    real_run, sizes = engine._run, []

    def run(jobs):  # type: ignore[no-untyped-def]
        sizes.append(len(jobs))
        return real_run(jobs)

    monkeypatch.setattr(engine, "_run", run)
    return sizes


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return Engine(device="cpu", styles_dir=tmp_path_factory.mktemp("styles"))


@pytest.fixture(scope="module")
def exact(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return Engine(device="cpu", styles_dir=tmp_path_factory.mktemp("styles"), precision="fp64")


@pytest.mark.slow
@pytest.mark.parametrize("settings", [LBFGS, ADAM], ids=["lbfgs", "adam"])
@pytest.mark.parametrize("shapes", [False, True], ids=["one shape", "mixed shapes"])
def test_in_exact_arithmetic_a_batch_is_the_same_as_single_runs(
    exact: Engine, monkeypatch: pytest.MonkeyPatch, settings: StyleSettings, shapes: bool
) -> None:
    """In float64 the batch and the single runs agree to about 1e-13 (measured: at most 5e-14 in 0..1
    units), whatever differs between the jobs, shapes included: batching changes nothing but the order of
    floating-point sums. Float64 is slow: small and short, but through two scales."""
    requests = mixed_requests(settings.replace(size=40, steps=10), shapes)
    jobs = [exact._prepare(r, None, None) for r in requests]
    alone = [exact._run([job])[0] for job in jobs]
    sizes = batch_sizes(exact, monkeypatch)
    together = exact._run(jobs)
    assert sizes == [len(jobs)]  # one run for all
    for single, batched in zip(alone, together, strict=True):
        assert isinstance(single, tuple)
        assert isinstance(batched, tuple)
        assert batched[0].shape == single[0].shape
        assert (batched[0] - single[0]).abs().max().item() < 1e-11
        assert batched[1] == single[1]  # steps
        assert batched[2]["total"] == pytest.approx(single[2]["total"], rel=1e-11)


@pytest.mark.slow
def test_in_exact_arithmetic_jobs_with_different_style_layers_batch_as_single_runs(
    exact: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Style layers and their weights are per image: each image weighs the union's other layers by zero,
    and its own weights are normalized over its own layers, so the batch follows each single run. (Not the
    noise-started job: at conv1_1..conv3_1 its L-BFGS run amplifies rounding to ~2e-10 even in a batch of
    equal layers.)"""
    requests = [mixed_requests(LBFGS.replace(size=40, steps=10))[i] for i in (0, 2, 3)]
    layer_sets = [
        {"style_layers": ("conv1_1",)},
        {"style_layers": DEFAULT_STYLE_LAYERS[:3]},
        {"style_layer_weights": (1.0, 0.5, 0.25, 0.125, 0.0625)},  # all five
    ]
    requests = [
        StylizeRequest(r.content, r.styles, r.settings.replace(**layers))
        for r, layers in zip(requests, layer_sets, strict=True)
    ]
    jobs = [exact._prepare(r, None, None) for r in requests]
    alone = [exact._run([job])[0] for job in jobs]
    sizes = batch_sizes(exact, monkeypatch)
    together = exact._run(jobs)
    assert sizes == [len(jobs)]
    for single, batched in zip(alone, together, strict=True):
        assert isinstance(single, tuple)
        assert isinstance(batched, tuple)
        assert (batched[0] - single[0]).abs().max().item() < 1e-11
        assert batched[1] == single[1]
        assert batched[2]["style"] == pytest.approx(single[2]["style"], rel=1e-11)
        assert batched[2]["total"] == pytest.approx(single[2]["total"], rel=1e-11)
    assert alone[0][2]["style"] != pytest.approx(alone[1][2]["style"], rel=1e-3)  # the layers do matter


def test_a_batch_goes_through_stylize_batch_as_one_run(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every bot job is L-BFGS: photos of different shapes share one run, and every result comes back.
    The 48x30 landscape would make the 48x48 canvas of the others waste more than MAX_PADDING."""
    requests = mixed_requests(LBFGS.replace(steps=6), shapes=True)
    sizes = batch_sizes(engine, monkeypatch)
    results = engine.stylize_batch(requests)
    assert sizes == [3, 1]
    for request, result in zip(requests, results, strict=True):
        assert isinstance(result, StylizeResult)
        assert result.steps == 6
        assert (result.width, result.height) == fit_within(*Image.open(io.BytesIO(request.content)).size, 48)


def test_in_float32_an_adam_batch_stays_within_rounding_of_single_runs(engine: Engine) -> None:
    """float32 convolutions round differently for a batch than for one image, and an optimization amplifies
    that slowly; over a short Adam run the pictures stay practically the same. (L-BFGS amplifies rounding
    much faster, batch or no batch: bench/engine.py measures its drift beside a single run's own drift
    between one and two threads.)"""
    requests = mixed_requests(ADAM)
    alone = [engine.stylize(r) for r in requests]
    together = engine.stylize_batch(requests)
    for single, batched in zip(alone, together, strict=True):
        difference = np.abs(pixels(single) - pixels(batched))
        assert difference.mean() < 1.0  # in 0..255 levels
        assert difference.max() <= 16


def test_batch_keys(engine: Engine) -> None:
    def key(settings: StyleSettings, size: tuple[int, int] = (64, 48)) -> object:
        request = StylizeRequest(encode(photo(*size)), (StyleSource(image=encode(painting())),), settings)
        return engine._prepare(request, None, None).batch_key()

    assert key(LBFGS) == key(
        LBFGS.replace(strength=0.9, seed=5, preserve_colors="histogram", init="noise", time_budget=5.0)
    )
    assert key(LBFGS) == key(LBFGS, size=(48, 64))  # another shape: a padded canvas
    auto = LBFGS.replace(size=None)  # the tier's size, or the photo's if smaller
    assert key(auto) != key(auto, size=(96, 72))  # a larger photo: another size, another schedule
    assert key(LBFGS) == key(LBFGS.replace(style_layers=("conv1_1", "conv3_1"), style_layer_weights=(2, 1)))
    assert key(LBFGS) != key(LBFGS.replace(steps=13))
    assert key(LBFGS) != key(ADAM)
    assert key(LBFGS) != key(LBFGS.replace(content_layers=("conv3_2",)))


def test_jobs_are_grouped_by_key_and_by_the_padding_they_would_waste(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = LBFGS.replace(steps=3)
    requests = [
        StylizeRequest(encode(photo(64, 48)), (StyleSource(image=encode(painting())),), settings),
        StylizeRequest(encode(photo(64, 48)), (StyleSource(image=encode(checker())),), ADAM.replace(steps=3)),
        StylizeRequest(encode(photo(48, 64)), (StyleSource(image=encode(painting())),), settings),  # 25%
        StylizeRequest(encode(photo(64, 32)), (StyleSource(image=encode(painting())),), settings),  # 33%
        StylizeRequest(encode(photo(64, 48)), (StyleSource(image=encode(checker())),), ADAM.replace(steps=3)),
    ]
    sizes = batch_sizes(engine, monkeypatch)
    results = engine.stylize_batch(requests)
    assert sorted(sizes) == [1, 2, 2]  # L-BFGS 4:3 and 3:4; the two Adam jobs; the panorama alone
    assert all(isinstance(r, StylizeResult) for r in results)
    assert np.array_equal(pixels(engine.stylize(requests[3])), pixels(results[3]))


def test_a_bad_item_fails_alone(engine: Engine) -> None:
    requests = mixed_requests()
    requests[1] = StylizeRequest(
        encode(photo(64, 48), "JPEG")[:200], requests[1].styles, requests[1].settings
    )
    results = engine.stylize_batch(requests)
    assert isinstance(results[1], CorruptImageError)
    assert isinstance(results[0], StylizeResult)
    assert isinstance(results[2], StylizeResult)


def test_a_cancelled_item_stops_while_the_others_finish(engine: Engine) -> None:
    checks = [0]

    def cancel_second() -> bool:
        checks[0] += 1
        return checks[0] > 4

    requests = mixed_requests()
    results = engine.stylize_batch(requests, should_cancel=[None, cancel_second, None, None])
    assert isinstance(results[1], Cancelled)
    for index in (0, 2, 3):  # every step each takes alone (one may converge before the budget's end)
        result, alone = results[index], engine.stylize(requests[index])
        assert isinstance(result, StylizeResult)
        assert result.steps == alone.steps > 4


def test_a_time_budget_stops_its_own_image_only(engine: Engine) -> None:
    """A spent budget ends that image's scale; it rejoins the batch at the next scale and still reaches the
    final size, while the others take every step."""
    requests = mixed_requests(LBFGS.replace(size=200, steps=6))
    requests[2] = StylizeRequest(
        requests[2].content, requests[2].styles, requests[2].settings.replace(time_budget=1e-6)
    )
    results = engine.stylize_batch(requests)
    hurried = results[2]
    assert isinstance(hurried, StylizeResult)
    assert hurried.steps == 2  # one step at each of the two scales
    assert max(hurried.width, hurried.height) == 200
    for result in (results[0], results[1], results[3]):
        assert isinstance(result, StylizeResult)
        assert result.steps == 6


def test_cancelling_every_item_stops_the_run(engine: Engine) -> None:
    results = engine.stylize_batch(mixed_requests(), should_cancel=[lambda: True] * 4)
    assert all(isinstance(r, Cancelled) for r in results)


def test_out_of_memory_for_the_batch_falls_back_to_one_by_one(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_run = engine._run
    sizes: list[int] = []

    def small_device(jobs):  # type: ignore[no-untyped-def]
        sizes.append(len(jobs))
        if len(jobs) > 1:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        return real_run(jobs)

    monkeypatch.setattr(engine, "_run", small_device)
    results = engine.stylize_batch(mixed_requests())
    assert sizes == [4, 1, 1, 1, 1]
    assert all(isinstance(r, StylizeResult) for r in results)


@pytest.mark.parametrize("figure", ["strength", "layers"])
def test_each_strip_is_one_batch_of_five_panels(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, figure: str
) -> None:
    """The strength strip's panels differ in strength, the layer strip's in style layers: either way
    ``stylize_batch`` makes one run of all five. (The runs are stubbed: the float64 tests above show a
    batch paints what single runs paint.)"""
    runs: list[list[tuple[str, ...]]] = []

    def run(jobs):  # type: ignore[no-untyped-def]
        runs.append([job.settings.style_layers for job in jobs])
        return [(torch.zeros(1, 3, *reversed(job.final_size())), 0, {"total": 0.0}) for job in jobs]

    monkeypatch.setattr(engine, "_run", run)
    request = StylizeRequest(
        encode(photo(64, 48)), (StyleSource(image=encode(painting())),), StyleSettings(figure=figure)
    )
    figures.run(engine, request)
    assert len(runs) == 1
    assert runs[0] == [s.style_layers for _, s in figures.panels(request.settings)]


def test_instant_jobs_never_join_a_batch_and_each_sketch_start_is_its_own(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Instant jobs are sketched on their own; the optimized ones share a run, each starting from the sketch
    of its own photo (one Adam step: within a few levels of it, see test_stylize)."""
    art = encode(painting())
    upside_down = photo(64, 48).transpose(Image.Transpose.FLIP_TOP_BOTTOM)  # another photo, one shape
    one_step = ADAM.replace(steps=1, multiscale=False, size=64)
    requests = [
        StylizeRequest(encode(photo(64, 48)), (StyleSource(image=art),), StyleSettings(quality="instant")),
        StylizeRequest(encode(photo(64, 48)), (StyleSource(image=art),), one_step.replace(init="sketch")),
        StylizeRequest(encode(upside_down), (StyleSource(image=art),), one_step.replace(init="sketch")),
        StylizeRequest(encode(photo(64, 48)), (StyleSource(image=art),), one_step),  # from the photo
        StylizeRequest(
            encode(upside_down), (StyleSource(image=art),), StyleSettings(quality="instant", size=48)
        ),
    ]
    starts = [engine._prepare(r, None, None).start for r in requests]
    sizes = batch_sizes(engine, monkeypatch)
    results = engine.stylize_batch(requests)
    assert sizes == [3]  # the three optimized jobs together; no run for the sketches
    for index in (0, 4):
        alone = engine.stylize(requests[index])
        assert isinstance(results[index], StylizeResult)
        assert results[index].steps == 0  # type: ignore[union-attr]
        assert results[index].image == alone.image  # type: ignore[union-attr]
    assert (results[4].width, results[4].height) == (48, 36)  # type: ignore[union-attr]
    for index in (1, 2):
        start = starts[index]
        assert start is not None
        gap = np.abs(pixels(results[index]) - np.asarray(start).astype(int)).mean()
        assert gap < 6.5, (index, gap)  # ADAM_LR is 5 levels
    own_photo = np.asarray(photo(64, 48)).astype(int)
    assert np.abs(pixels(results[3]) - own_photo).mean() < 6.5
    assert np.abs(pixels(results[2]) - np.asarray(starts[1]).astype(int)).mean() > 20  # not one shared sketch


def test_a_sketch_that_cannot_load_fails_its_jobs_only(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sketch_module, "PACKAGE", "no_such_sketch_package")
    monkeypatch.setattr(engine, "_sketcher", Sketcher())
    art = (StyleSource(image=encode(painting())),)
    requests = [
        StylizeRequest(encode(photo(64, 48)), art, StyleSettings(quality="instant")),
        StylizeRequest(encode(photo(64, 48)), art, LBFGS.replace(steps=2, init="sketch")),
        StylizeRequest(encode(photo(64, 48)), art, LBFGS.replace(steps=2)),
    ]
    results = engine.stylize_batch(requests)
    assert isinstance(results[0], SketchUnavailableError)
    assert isinstance(results[1], SketchUnavailableError)
    assert isinstance(results[2], StylizeResult)

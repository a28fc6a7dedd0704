"""Batched optimization: several jobs in one run, each image on the trajectory it would follow alone."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from engine.api import Engine
from engine.errors import Cancelled, CorruptImageError
from engine.protocol import StyleSettings, StyleSource, StylizeRequest, StylizeResult
from tests.engine.samples import checker, encode, painting, photo

ADAM = StyleSettings(quality="draft", size=48, steps=12, optimizer="adam")


def pixels(result: StylizeResult | Exception) -> np.ndarray:
    assert isinstance(result, StylizeResult), result
    return np.asarray(Image.open(io.BytesIO(result.image))).astype(int)


def mixed_requests(settings: StyleSettings = ADAM) -> list[StylizeRequest]:
    """Three jobs with one schedule and size, different in all else: photo, painting, strength, colours."""
    mirrored = photo(64, 48).transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return [
        StylizeRequest(encode(photo(64, 48)), (StyleSource(image=encode(painting())),), settings),
        StylizeRequest(
            encode(mirrored),
            (StyleSource(image=encode(checker())),),
            settings.replace(strength=0.8, seed=3, init="noise"),
        ),
        StylizeRequest(
            encode(photo(64, 48)),
            (StyleSource(image=encode(painting(seed=2, hue="cool"))),),
            settings.replace(preserve_colors="luminance"),
        ),
    ]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return Engine(device="cpu", styles_dir=tmp_path_factory.mktemp("styles"))


@pytest.mark.slow
def test_in_exact_arithmetic_a_batch_is_the_same_as_single_runs(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """In float64 the batch and the single runs agree to the last bit that survives 8-bit output: batching
    changes nothing but the order of floating-point sums."""
    exact = Engine(device="cpu", styles_dir=tmp_path_factory.mktemp("styles"), precision="fp64")
    requests = mixed_requests(ADAM.replace(size=40, steps=6))  # float64 is slow: small and short
    alone = [exact.stylize(r) for r in requests]
    together = exact.stylize_batch(requests)
    for single, batched in zip(alone, together, strict=True):
        assert np.array_equal(pixels(single), pixels(batched))
        assert isinstance(batched, StylizeResult)
        assert batched.losses["total"] == pytest.approx(single.losses["total"], rel=1e-9)


def test_in_float32_a_batch_stays_within_rounding_of_single_runs(engine: Engine) -> None:
    """float32 convolutions round differently for a batch than for one image, and an optimization amplifies
    that slowly; over a short run the pictures stay practically the same."""
    requests = mixed_requests()
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

    assert key(ADAM) is not None
    assert key(ADAM) == key(ADAM.replace(strength=0.9, seed=5, preserve_colors="histogram"))
    assert key(ADAM) != key(ADAM, size=(48, 64))  # another shape
    assert key(ADAM) != key(ADAM.replace(steps=13))
    assert key(ADAM.replace(optimizer="lbfgs")) is None  # L-BFGS couples the images of a batch
    assert key(ADAM.replace(time_budget=5.0)) is None  # a budget would stop all of them at once


def test_jobs_that_cannot_share_a_run_are_painted_one_by_one(engine: Engine) -> None:
    requests = mixed_requests(ADAM.replace(optimizer="lbfgs", steps=5))
    together = engine.stylize_batch(requests)
    for request, batched in zip(requests, together, strict=True):
        assert np.array_equal(pixels(engine.stylize(request)), pixels(batched))


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

    results = engine.stylize_batch(mixed_requests(), should_cancel=[None, cancel_second, None])
    assert isinstance(results[1], Cancelled)
    assert isinstance(results[0], StylizeResult)
    assert results[0].steps == ADAM.steps
    assert isinstance(results[2], StylizeResult)


def test_cancelling_every_item_stops_the_run(engine: Engine) -> None:
    results = engine.stylize_batch(mixed_requests(), should_cancel=[lambda: True] * 3)
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
    assert sizes == [3, 1, 1, 1]
    assert all(isinstance(r, StylizeResult) for r in results)

"""The precision of the network's passes: chosen per machine, and bf16 only where it is safe.

bf16 runs the VGG passes (forward and backward) in bfloat16 on a CPU with native bf16 dot products; what
needs float32's range and precision stays float32: the image, the Gram matrices, the losses, the L-BFGS
state and the targets the steps aim for.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import engine.api
import engine.optimize
from engine import devices, losses
from engine.api import Engine, _Job
from engine.canvas import Canvas
from engine.devices import CPU, Choice, choose_precision, read_cpu
from engine.lbfgs import BatchLBFGS
from engine.protocol import StyleSettings, StyleSource, StylizeRequest, StylizeResult
from engine.settings import EngineSettings
from engine.vgg import VGGFeatures
from tests.engine.samples import checker, encode, painting, photo

ZEN4 = CPU("AMD EPYC 9354", frozenset({"avx2", "fma", "avx512f", "avx512_bf16"}))
SAPPHIRE_RAPIDS = CPU("Intel Xeon Platinum 8480+", frozenset({"avx512f", "amx_tile", "amx_bf16"}))
SKYLAKE = CPU("Intel Xeon Gold 6148", frozenset({"avx2", "fma", "avx512f", "avx512bw"}))
CPU_DEVICE = torch.device("cpu")
TINY = StyleSettings(quality="draft", size=40, steps=6)


class Timer:
    """A stand-in for one timed pass: fixed seconds per candidate, and the order it was asked in."""

    def __init__(self, **seconds: float) -> None:
        self.seconds = seconds
        self.calls: list[str] = []

    def __call__(self, precision: str) -> float:
        self.calls.append(precision)
        return self.seconds[precision]


@pytest.fixture(autouse=True)
def fresh_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts as a new process: nothing timed yet."""
    monkeypatch.setattr(devices, "_chosen", {})


def never(precision: str) -> float:
    raise AssertionError("nothing should be timed")


def test_cpuinfo_gives_the_model_and_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 9354\nflags\t\t: fpu avx2 avx512f avx512_bf16\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 9354\nflags\t\t: fpu avx2 avx512f avx512_bf16\n"
    )
    cpu = read_cpu(cpuinfo)
    assert cpu == CPU("AMD EPYC 9354", frozenset({"fpu", "avx2", "avx512f", "avx512_bf16"}))
    assert cpu.native_bf16
    assert SAPPHIRE_RAPIDS.native_bf16
    assert not SKYLAKE.native_bf16  # AVX-512 alone: oneDNN emulates bf16 there
    assert read_cpu(tmp_path / "absent") == CPU("unknown", frozenset())
    assert not read_cpu(tmp_path / "absent").native_bf16


@pytest.mark.parametrize("asked", ["fp32", "bf16", "fp64"])
@pytest.mark.parametrize("cpu", [ZEN4, SKYLAKE], ids=["native bf16", "no bf16"])
def test_a_forced_precision_is_kept_without_timing(asked: str, cpu: CPU) -> None:
    assert choose_precision(asked, CPU_DEVICE, time_pass=never, cpu=cpu) == Choice(asked, "forced")


def test_auto_is_float32_on_a_cpu_without_native_bf16() -> None:
    choice = choose_precision("auto", CPU_DEVICE, time_pass=never, cpu=SKYLAKE)
    assert choice.precision == "fp32"
    assert "no native bf16" in choice.reason


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_auto_is_float32_on_accelerators(device: str) -> None:
    assert choose_precision("auto", torch.device(device), time_pass=never, cpu=ZEN4).precision == "fp32"


@pytest.mark.parametrize(("fp32", "bf16", "chosen"), [(0.5, 0.23, "bf16"), (0.5, 0.9, "fp32")])
def test_auto_times_both_in_turn_where_bf16_is_native_and_takes_the_faster(
    fp32: float, bf16: float, chosen: str
) -> None:
    timer = Timer(fp32=fp32, bf16=bf16)
    choice = choose_precision("auto", CPU_DEVICE, time_pass=timer, cpu=SAPPHIRE_RAPIDS)
    assert choice.precision == chosen
    assert choice.seconds == {"fp32": fp32, "bf16": bf16}
    assert timer.calls == ["fp32", "bf16"] * devices.TIMING_ROUNDS  # interleaved: a passing load hits both
    choose_precision("auto", CPU_DEVICE, time_pass=timer, cpu=SAPPHIRE_RAPIDS)
    assert len(timer.calls) == 2 * devices.TIMING_ROUNDS  # once per process


def test_auto_keeps_its_choice_per_cpu_model_in_the_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = choose_precision(
        "auto", CPU_DEVICE, time_pass=Timer(fp32=0.5, bf16=0.2), cache_dir=tmp_path, cpu=ZEN4
    )
    monkeypatch.setattr(devices, "_chosen", {})  # another process, sharing the cache
    again = choose_precision("auto", CPU_DEVICE, time_pass=never, cache_dir=tmp_path, cpu=ZEN4)
    assert again.precision == first.precision == "bf16"
    assert again.reason.startswith("auto: cached")
    other = Timer(fp32=0.5, bf16=0.7)  # another CPU model is timed on its own
    assert (
        choose_precision(
            "auto", CPU_DEVICE, time_pass=other, cache_dir=tmp_path, cpu=SAPPHIRE_RAPIDS
        ).precision
        == "fp32"
    )
    assert other.calls
    entries = json.loads((tmp_path / devices.PRECISION_CACHE_FILE).read_text())
    assert {entry["precision"] for entry in entries.values()} == {"bf16", "fp32"}


def test_an_unreadable_cache_is_timed_again(tmp_path: Path) -> None:
    (tmp_path / devices.PRECISION_CACHE_FILE).write_text("{not json")
    timer = Timer(fp32=0.5, bf16=0.2)
    assert (
        choose_precision("auto", CPU_DEVICE, time_pass=timer, cache_dir=tmp_path, cpu=ZEN4).precision
        == "bf16"
    )
    assert timer.calls


def test_an_unknown_precision_is_refused() -> None:
    with pytest.raises(ValueError, match="precision"):
        choose_precision("fp16", CPU_DEVICE, time_pass=never, cpu=ZEN4)
    with pytest.raises(ValueError, match="precision"):
        Engine(device="cpu", precision="fp16")


def test_the_engine_takes_engine_precision_from_its_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENGINE_PRECISION", "bf16")
    assert EngineSettings().engine_precision == "bf16"
    assert Engine.from_settings(EngineSettings(), device="cpu").precision == "bf16"
    monkeypatch.delenv("ENGINE_PRECISION")
    assert EngineSettings().engine_precision == "auto"
    monkeypatch.setattr(devices, "read_cpu", lambda: SKYLAKE)
    painter = Engine.from_settings(EngineSettings(), device="cpu")
    assert painter.precision == "fp32"
    assert painter.precision_choice.reason == "auto: no native bf16 on this CPU"


def test_auto_times_real_passes_on_a_native_cpu(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(devices, "read_cpu", lambda: ZEN4)
    monkeypatch.setattr(engine.api, "PRECISION_PASS_SIZE", (32, 48))  # a test's size: the same code
    painter = Engine(device="cpu", precision="auto", stats_dir=tmp_path)
    assert painter.precision in ("fp32", "bf16")
    assert painter.precision_choice.seconds is not None
    assert set(painter.precision_choice.seconds) == {"fp32", "bf16"}
    assert (tmp_path / devices.PRECISION_CACHE_FILE).is_file()


def test_gram_matrices_stay_float32_under_bf16_autocast() -> None:
    features = torch.rand(2, 8, 6, 5)
    with devices.autocast(CPU_DEVICE, "bf16"):
        assert torch.mm(features[0, 0], features[0, 0].T).dtype == torch.bfloat16  # autocast is on
        gram = losses.gram_matrix(features)
        from_bf16 = losses.gram_matrix(features.bfloat16())
    assert gram.dtype == from_bf16.dtype == torch.float32
    assert torch.equal(gram, losses.gram_matrix(features))


@pytest.fixture(scope="module")
def bf16(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return Engine(device="cpu", precision="bf16", styles_dir=tmp_path_factory.mktemp("styles"))


def request(settings: StyleSettings = TINY, seed: int = 0) -> StylizeRequest:
    return StylizeRequest(encode(photo(64, 48)), (StyleSource(image=encode(painting(seed=seed))),), settings)


def test_bf16_runs_the_network_in_bf16_and_keeps_the_rest_float32(
    bf16: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The convolutions' outputs are bf16 during the steps; the Gram matrices, every loss, the image, its
    gradient and every tensor of the L-BFGS state are float32."""
    seen: dict[str, set[torch.dtype]] = {"conv": set(), "gram": set(), "loss": set(), "state": set()}
    real_gram = losses.gram_matrix

    def gram(features: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        out = real_gram(features, positions)
        seen["gram"].add(out.dtype)
        return out

    class Recording(BatchLBFGS):
        def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
            def checked() -> torch.Tensor:
                total = closure()
                seen["loss"].add(total.dtype)
                return total

            out = super().step(checked)
            assert self.x.grad is not None
            seen["state"] |= {self.x.dtype, self.x.grad.dtype}
            for name in (
                "direction",
                "step_size",
                "previous_grad",
                "hessian_diag",
                "steps_s",
                "grads_y",
                "rho",
            ):
                if (value := getattr(self, name)) is not None:
                    seen["state"].add(value.dtype)
            return out

    monkeypatch.setattr(losses, "gram_matrix", gram)
    monkeypatch.setattr(engine.optimize, "BatchLBFGS", Recording)
    job = bf16._prepare(request(), None, None)
    extractor = bf16._objective(
        [job], [bf16._tensor(job.content)], [bf16._tensor(job.content)], 40, Canvas((job.content.size,))
    ).extractor
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: seen["conv"].add(out.dtype))
        for m in extractor.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    try:
        ((image, steps, parts),) = bf16._run([job])  # type: ignore[misc]
    finally:
        for hook in hooks:
            hook.remove()
    assert steps == 6
    assert image.dtype == torch.float32
    assert seen == {
        "conv": {torch.float32, torch.bfloat16},  # float32: the targets, once per scale
        "gram": {torch.float32},
        "loss": {torch.float32},
        "state": {torch.float32},
    }
    assert all(np.isfinite(v) for v in parts.values())


def test_the_targets_are_the_same_in_every_precision(bf16: Engine, tmp_path: Path) -> None:
    """The painting's statistics are computed in float32 in a bf16 run too: one cache serves both."""
    fp32 = Engine(device="cpu", precision="fp32", styles_dir=tmp_path)
    job = bf16._prepare(request(), None, None)
    photo_tensor = bf16._tensor(job.content)
    grams: dict[str, dict[str, torch.Tensor]] = {}
    for painter in (bf16, fp32):
        objective = painter._objective([job], [photo_tensor], [photo_tensor], 40, Canvas((job.content.size,)))
        grams[painter.precision] = {k: m.get_buffer("target") for k, m in objective.style.items()}
        grams[painter.precision + " content"] = {
            k: m.get_buffer("target") for k, m in objective.content.items()
        }
    for key in ("bf16", "bf16 content"):
        other = grams[key.replace("bf16", "fp32")]
        for layer, target in grams[key].items():
            assert target.dtype == torch.float32
            assert torch.equal(target, other[layer])


def pixels(result: StylizeResult | Exception) -> np.ndarray:
    assert isinstance(result, StylizeResult), result
    return np.asarray(Image.open(io.BytesIO(result.image))).astype(int)


def test_a_bf16_batch_matches_single_bf16_runs(bf16: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two jobs in one bf16 batch end where each ends alone, within bf16 rounding: the batch changes only
    the order of sums (tests/engine/test_batch.py). Measured: at most 10 levels (mean 1.3) from the single
    runs, as much as the same single runs on one thread instead of two differ (10, mean 0.8); float32: 1."""
    requests = [
        request(TINY),
        StylizeRequest(
            encode(photo(64, 48)),
            (StyleSource(image=encode(checker())),),
            TINY.replace(strength=0.8, init="noise", seed=3),
        ),
    ]
    alone = [bf16.stylize(r) for r in requests]
    sizes: list[int] = []
    real_run = bf16._run

    def run(jobs: list[_Job]) -> Sequence[object]:
        sizes.append(len(jobs))
        return real_run(jobs)

    monkeypatch.setattr(bf16, "_run", run)
    together = bf16.stylize_batch(requests)
    assert sizes == [2]
    for single, batched in zip(alone, together, strict=True):
        difference = np.abs(pixels(single) - pixels(batched))
        assert difference.max() <= 20
        assert difference.mean() <= 2.5
        assert isinstance(batched, StylizeResult)
        assert isinstance(single, StylizeResult)
        assert batched.steps == single.steps
        # The last loss is more sensitive than the pixels: on a CPU that emulates bf16 (AVX2 only, an AMD
        # Zen 3 of CI's kind) the batch ends 6% from the single run with its pixels within the bounds above.
        assert batched.losses["total"] == pytest.approx(single.losses["total"], rel=0.1)


def test_a_style_layer_weighed_zero_is_not_computed(bf16: Engine) -> None:
    """conv5_1 weighed zero (the default deep style weight): the steps' network stops at conv4_2, the
    content layer, which saves conv4_3..conv5_1 forward and backward; the painting's cached statistics
    still cover every layer, for a job that weighs conv5_1."""
    zero = TINY.replace(style_layer_weights=(1.0, 1.0, 1.0, 1.0, 0.0))
    job = bf16._prepare(request(zero), None, None)
    photo_tensor = bf16._tensor(job.content)
    objective = bf16._objective([job], [photo_tensor], [photo_tensor], 40, Canvas((job.content.size,)))
    assert set(objective.style) == {"conv1_1", "conv2_1", "conv3_1", "conv4_1"}
    assert isinstance(objective.extractor, VGGFeatures)
    assert [n for n in objective.extractor.names if n][-1] == "conv4_2"
    weighed = bf16._prepare(request(TINY.replace(style_layer_weights=(1.0,) * 5)), None, None)
    full = bf16._objective([weighed], [photo_tensor], [photo_tensor], 40, Canvas((job.content.size,)))
    assert set(full.style) == {"conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"}
    for layer in objective.style:
        assert torch.equal(
            objective.style[layer].get_buffer("target"), full.style[layer].get_buffer("target")
        )

"""The CUDA path: run by bench/gpu.sh on a GPU machine; skipped everywhere else."""

from __future__ import annotations

import pytest
import torch

from engine import devices
from engine.api import Engine
from engine.losses import gram_matrix
from engine.protocol import StyleSettings
from tests.engine.test_batch import mixed_requests

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def cuda() -> torch.device:
    device = torch.device("cuda")
    devices.prepare(device)
    return device


def test_gram_matrices_stay_float32_under_bf16_autocast_and_tf32(cuda: torch.device) -> None:
    """bf16 (8-bit mantissa) or TF32 (10-bit) in the Gram products would be off by 1e-3..1e-2 relative;
    the statistics and their gradients must be float32-exact (1e-5)."""
    torch.manual_seed(0)
    features = torch.rand(2, 64, 96, 128, device=cuda, requires_grad=True)
    exact = features.detach().double().requires_grad_(True)
    reference = gram_matrix(exact)
    (reference**2).sum().backward()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        gram = gram_matrix(features)
        (gram**2).sum().backward()
    assert gram.dtype == torch.float32
    assert ((gram.double() - reference).abs().max() / reference.abs().max()).item() < 1e-5
    assert features.grad is not None
    assert exact.grad is not None
    assert ((features.grad.double() - exact.grad).abs().max() / exact.grad.abs().max()).item() < 1e-4


def test_prepare_keeps_tf32_out_of_matrix_products(cuda: torch.device) -> None:
    assert torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert torch.backends.cudnn.conv.fp32_precision == "tf32"
    assert torch.backends.cudnn.benchmark is False  # ConvTuning decides per shape


def test_conv_tuning_turns_on_for_shapes_that_recur(cuda: torch.device) -> None:
    tuning = devices.ConvTuning(cuda, tune_after=2)
    seen = []
    for _ in range(3):
        with tuning(torch.Size((2, 3, 64, 48))):
            seen.append(torch.backends.cudnn.benchmark)
        with tuning(torch.Size((1, 3, 64, 48))):  # another batch size is another shape
            seen.append(torch.backends.cudnn.benchmark)
    assert seen == [False, False, False, False, True, True]
    assert torch.backends.cudnn.benchmark is False


def test_batched_lbfgs_on_cuda_matches_single_runs_in_float64(cuda: torch.device) -> None:
    exact = Engine(device="cuda", precision="fp64")
    jobs = [exact._prepare(r, None, None) for r in mixed_requests(StyleSettings(size=64, steps=8), True)]
    alone = [exact._run([job])[0] for job in jobs]
    together = exact._run(jobs)
    for single, batched in zip(alone, together, strict=True):
        assert isinstance(single, tuple)
        assert isinstance(batched, tuple)
        assert (batched[0] - single[0]).abs().max().item() < 1e-9


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_batch_paints_on_cuda(cuda: torch.device, precision: str) -> None:
    engine = Engine(device="cuda", precision=precision)
    results = engine.stylize_batch(mixed_requests(StyleSettings(size=96, steps=10)))
    for result in results:
        assert not isinstance(result, Exception), result
        assert result.device.startswith("cuda")
        assert all(v == v for v in result.losses.values())  # no NaN

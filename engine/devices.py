"""Choosing and preparing the device a worker computes on."""

from __future__ import annotations

import contextlib
import logging
import os
from collections import Counter
from collections.abc import Iterator

import torch

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple's MPS, then the CPU; an explicit device must exist."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("CUDA was asked for but no CUDA GPU is available")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"there is no {device}; this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("MPS was asked for but is not available")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"unsupported device {name!r}")
    return device


def prepare(device: torch.device, *, threads: int | None = None) -> None:
    """Process-wide speed settings: every core on the CPU; on CUDA, TF32 for the convolutions only.

    - TF32 (10-bit mantissa, about 2x faster on tensor cores) suits the convolutions, whose errors average
      out; the only matrix products, the Gram matrices (forward and backward), stay in IEEE float32, since
      the style is matched on those statistics.
    - cuDNN's autotuning is decided per shape (``ConvTuning``): it re-tunes for every new photo size.
    - Expandable segments let the caching allocator grow one mapping instead of keeping blocks of each
      scale's sizes apart, so a run's growing scales (and a batch's shrinking rows) do not fragment memory.
    """
    if device.type == "cpu":
        torch.set_num_threads(threads or os.cpu_count() or 1)
    elif device.type == "cuda":
        torch.cuda.memory._set_allocator_settings("expandable_segments:True")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.conv.fp32_precision = "tf32"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
        torch.cuda.set_device(device)


TUNE_AFTER_PASSES = 100  # bench/gpu.py measures the tuning's cost and gain per shape


class ConvTuning:
    """cuDNN autotuning for the shapes that recur, as a context around each forward and backward pass.

    Autotuning times every algorithm for each new input shape (every convolution, forward and backward),
    and a bot sees photos of every size, each scale of each job a new shape: always on, most jobs would
    pay for tuning they never use again. So a shape runs on cuDNN's heuristics until it has made
    ``tune_after`` passes, the point where it has shown that it recurs (a common photo shape, a full
    batch's canvas); from then on it runs tuned. Rent until the rent paid equals the price: never more
    than about twice the better of "always" and "never".
    """

    def __init__(self, device: torch.device, tune_after: int = TUNE_AFTER_PASSES) -> None:
        self.enabled = device.type == "cuda"
        self.tune_after = tune_after
        self.passes: Counter[tuple[int, ...]] = Counter()

    def __call__(self, shape: torch.Size) -> contextlib.AbstractContextManager[object]:
        if not self.enabled:
            return contextlib.nullcontext()
        key = tuple(shape)
        self.passes[key] += 1
        return _cudnn_benchmark(self.passes[key] > self.tune_after)


@contextlib.contextmanager
def _cudnn_benchmark(on: bool) -> Iterator[None]:
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = on
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def full_precision(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """No bf16 autocast inside (the Gram matrices): their products and gradients stay in float32."""
    if device.type == "cuda":
        return torch.autocast("cuda", enabled=False)
    return contextlib.nullcontext()


def is_accelerated(device: torch.device) -> bool:
    return device.type in ("cuda", "mps")


def describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads)"
    return str(device)


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager[None]:
    """bf16 autocast for the convolutions on CUDA when asked; the losses cast back to float32."""
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def is_out_of_memory(err: BaseException) -> bool:
    return isinstance(err, torch.cuda.OutOfMemoryError) or (
        isinstance(err, RuntimeError) and "out of memory" in str(err).lower()
    )


@contextlib.contextmanager
def freeing_memory(device: torch.device) -> Iterator[None]:
    """Return cached blocks to the driver after a failed attempt so the retry starts clean."""
    try:
        yield
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()

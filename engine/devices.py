"""Choosing and preparing the device a worker computes on, and the precision of its network passes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

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
        torch.backends.cudnn.conv.fp32_precision = "tf32"  # type: ignore[attr-defined]  # made at runtime
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
    if device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, enabled=False)
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
    """bf16 autocast for the network's passes when asked (CUDA, or a CPU with native bf16: see
    ``choose_precision``); the image, the Gram matrices and the losses stay float32."""
    if precision == "bf16" and device.type in ("cuda", "cpu"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


# -- precision per machine ------------------------------------------------------------------------------

PRECISIONS = ("auto", "fp32", "bf16", "fp64")
# x86 flags of native bfloat16 dot products: AVX512-BF16 (AMD Zen 4, Intel Cooper Lake) and AMX (Intel
# Sapphire Rapids and later). Without them oneDNN emulates bf16, slower than float32: auto never picks it.
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
CPUINFO = Path("/proc/cpuinfo")
PRECISION_CACHE_FILE = "precision.json"
TIMING_ROUNDS = 3  # each candidate's first pass warms it up; the best of the others counts


@dataclass(frozen=True)
class CPU:
    model: str
    flags: frozenset[str]

    @property
    def native_bf16(self) -> bool:
        return bool(self.flags & NATIVE_BF16_FLAGS)


@dataclass(frozen=True)
class Choice:
    """The precision a process runs its network passes in, and why (for the log and the benchmarks)."""

    precision: str  # fp32, bf16 or fp64
    reason: str
    seconds: dict[str, float] | None = None  # auto's timed pass per candidate, where it timed them


_chosen: dict[str, Choice] = {}  # per CPU key: a process times its candidates at most once


def read_cpu(cpuinfo: Path = CPUINFO) -> CPU:
    """The processor's model name and flags from ``/proc/cpuinfo`` (none where it cannot be read: then
    nothing is known to be native and auto stays in float32)."""
    model, flags = "unknown", frozenset[str]()
    try:
        text = cpuinfo.read_text()
    except OSError:
        return CPU(model, flags)
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return CPU(model, flags)


def choose_precision(
    asked: str,
    device: torch.device,
    *,
    time_pass: Callable[[str], float],
    cache_dir: Path | None = None,
    cpu: CPU | None = None,
) -> Choice:
    """The precision of the network's passes: ``asked`` unless it is ``auto``.

    ``auto`` is float32 on CUDA, MPS and any CPU without native bf16. On a CPU with it, ``time_pass``
    (seconds of one forward and backward pass in the given precision) times both candidates, interleaved,
    and the faster wins; the choice is kept per CPU model, thread count and torch version in
    ``cache_dir/precision.json``, so later processes on such a machine start without timing.
    """
    if asked not in PRECISIONS:
        raise ValueError(f"unknown precision {asked!r}; use one of {', '.join(PRECISIONS)}")
    cpu = cpu or (read_cpu() if device.type == "cpu" else CPU("", frozenset()))
    if asked != "auto":
        if asked == "bf16" and device.type == "cpu" and not cpu.native_bf16:
            log.warning("bf16 forced on a CPU without native bf16 (%s): it is emulated, and slow", cpu.model)
        return Choice(asked, "forced")
    if device.type != "cpu":
        return Choice("fp32", f"auto: float32 on {device.type}")
    if not cpu.native_bf16:
        return Choice("fp32", "auto: no native bf16 on this CPU")
    native = ",".join(sorted(cpu.flags & NATIVE_BF16_FLAGS))
    key = f"{cpu.model}|{native}|{torch.get_num_threads()} threads|torch {torch.__version__}"
    if key in _chosen:
        return _chosen[key]
    choice = _cached_choice(cache_dir, key)
    if choice is None:
        seconds = _time_candidates(time_pass, ("fp32", "bf16"))
        best = min(seconds, key=seconds.__getitem__)
        timed = ", ".join(f"{p} {s:.3f} s" for p, s in seconds.items())
        choice = Choice(best, f"auto: timed on {cpu.model} ({timed})", seconds)
        _store_choice(cache_dir, key, choice)
    _chosen[key] = choice
    return choice


def _time_candidates(time_pass: Callable[[str], float], candidates: tuple[str, ...]) -> dict[str, float]:
    """The best of each candidate's warm passes, the candidates taking turns so that a load that comes
    and goes weighs on both alike."""
    times: dict[str, list[float]] = {c: [] for c in candidates}
    for _ in range(TIMING_ROUNDS):
        for candidate in candidates:
            times[candidate].append(time_pass(candidate))
    return {c: min(t[1:] or t) for c, t in times.items()}


def _cached_choice(cache_dir: Path | None, key: str) -> Choice | None:
    if cache_dir is None:
        return None
    try:
        entry = json.loads((cache_dir / PRECISION_CACHE_FILE).read_text())[key]
        return Choice(str(entry["precision"]), f"auto: cached ({entry['reason']})", entry.get("seconds"))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store_choice(cache_dir: Path | None, key: str, choice: Choice) -> None:
    """Add the choice to the cache file (written whole and renamed: workers may start together)."""
    if cache_dir is None:
        return
    path = cache_dir / PRECISION_CACHE_FILE
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        try:
            entries = json.loads(path.read_text())
        except (OSError, ValueError):
            entries = {}
        if not isinstance(entries, dict):
            entries = {}
        entries[key] = {"precision": choice.precision, "reason": choice.reason, "seconds": choice.seconds}
        with tempfile.NamedTemporaryFile("w", dir=cache_dir, suffix=".tmp", delete=False) as out:
            json.dump(entries, out, indent=1)
        os.replace(out.name, path)
    except OSError as err:
        log.warning("could not keep the precision choice in %s: %s", path, err)


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

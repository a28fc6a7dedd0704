"""Precision and layout on the CPU (issue 22): step times, tiers, the CLI beside pastiche, memory, quality.

    python -m bench.precision                      # every timing figure (about 20 min on 2 idle cores)
    python -m bench.precision --only steps tiers   # some sections: peak, steps, tiers, cli, memory
    python -m bench.precision --only quality       # bf16 against fp32 on the shared pairs (distances only)

The timing sections want an idle machine: any other load slows the engine's two threads. ``quality``
does not (the runs are deterministic); it keeps its results in bench/results/precision-quality.json and
resumes from them. Results: bench/results/precision-<section>.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.engine import PAINTING, PHOTO, REPO, RESULTS, SHARED, _machine, _status_mib

if TYPE_CHECKING:
    import torch
    from PIL import Image

TIMING = ("peak", "steps", "tiers", "cli", "memory")
SECTIONS = (*TIMING, "quality", "strips", "refine")
STEP_SIDES = (256, 512, 1024)
STEP_VARIANTS = ("fp32 NCHW", "fp32 channels-last", "bf16 channels-last")
LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
# Zen 4 (this project's EPYC) and Intel's AVX-512 cores: two 256-bit FMA pipes per core, 16 float32 FMAs
# a cycle; a bf16 dot product instruction (VDPBF16PS) does two multiply-adds per float32 lane: 32.
FMA_PER_CYCLE = {"fp32": 16, "bf16": 32}
CLI_STEPS, PEER_STEPS, CLI_SIDE = 20, 100, 256
TIER_RUNS = ["draft", "normal", "high", "old-high"]
TIERS_RUN = list(TIER_RUNS)  # --tiers


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", choices=SECTIONS, help="run only these sections")
    parser.add_argument("--quality-tiers", nargs="+", default=["draft", "normal", "high"])
    parser.add_argument("--quality-pairs", type=int, help="only the first N photo/painting pairs")
    parser.add_argument(
        "--quality-only", nargs="+", metavar="PHOTO:PAINTING", help="quality: only these pairs"
    )
    parser.add_argument("--yardstick", action="store_true", help="quality: fp32 on one thread too")
    parser.add_argument("--jitter", type=int, default=0, help="quality: N runs of each from jittered starts")
    parser.add_argument("--tiers", nargs="+", choices=TIER_RUNS, default=TIER_RUNS, help="tiers: only these")
    parser.add_argument("--memory-child", help=argparse.SUPPRESS)  # internal: one process per precision
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(_memory_child(args.memory_child)))
        return 0
    sections = args.only or list(TIMING)
    TIERS_RUN[:] = args.tiers
    RESULTS.mkdir(parents=True, exist_ok=True)
    for section in sections:
        started = time.perf_counter()
        load = os.getloadavg()
        if section == "quality":
            rows = _quality(
                args.quality_tiers, args.quality_pairs, args.yardstick, args.quality_only, args.jitter
            )
        else:
            rows = SECTION_RUNS[section]()
        seconds, after = round(time.perf_counter() - started, 1), os.getloadavg()
        report = {"machine": _machine() | _cpu(), "load": [load, after], "seconds": seconds, "rows": rows}
        (RESULTS / f"precision-{section}.json").write_text(json.dumps(report, indent=1))
        print(f"### {section} ({seconds} s, load average {load[0]:.2f} -> {after[0]:.2f})\n")
        print(_table(rows), flush=True)
    return 0


def _cpu() -> dict[str, Any]:
    import torch

    from engine.devices import NATIVE_BF16_FLAGS, read_cpu

    cpu = read_cpu()
    wanted = {"avx2", "fma", "avx512f", "avx512_vnni", "amx_tile", *NATIVE_BF16_FLAGS}
    mhz = [
        line.split(":")[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if "MHz" in line
    ]
    return {
        "flags": sorted(cpu.flags & wanted),
        "mhz": float(mhz[0]) if mhz else None,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


# -- peak: what the cores can do ------------------------------------------------------------------


def _peak() -> list[dict[str, Any]]:
    return [*_matmul_peak(), _auto_cost()]


def _matmul_peak() -> list[dict[str, Any]]:
    """Matrix products as the yardstick of what the cores reach, and the FMA units' paper peak."""
    import torch

    info = _cpu()
    cores = os.cpu_count() or 1
    rows: list[dict[str, Any]] = []
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.rand(2048, 2048).to(dtype), torch.rand(2048, 2048).to(dtype)
        torch.mm(a, b)
        times = []
        for _ in range(5):
            started = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - started)
        gemm = 2 * 2048**3 / min(times) / 1e9
        paper = cores * (info["mhz"] or 0.0) / 1e3 * 2 * FMA_PER_CYCLE[name]
        rows.append({"precision": name, "matmul_gflops": round(gemm), "paper_peak_gflops": round(paper)})
    return rows


def _auto_cost() -> dict[str, Any]:
    """What ``ENGINE_PRECISION=auto`` costs a process once per CPU model (timing both candidates), against
    a forced precision, the weights already loaded; and what it chose."""
    from engine import devices
    from engine.api import Engine

    Engine(device="cpu", precision="fp32").load_model()
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        Engine(device="cpu", precision="fp32", stats_dir=Path(cache))
        forced = time.perf_counter() - started
        devices._chosen.clear()  # as a new process would
        started = time.perf_counter()
        engine = Engine(device="cpu", precision="auto", stats_dir=Path(cache))
        timed = time.perf_counter() - started
        devices._chosen.clear()
        started = time.perf_counter()
        Engine(device="cpu", precision="auto", stats_dir=Path(cache))
        cached = time.perf_counter() - started
    return {
        "precision": f"auto chose {engine.precision}",
        "start_up_s": f"forced {forced:.2f}, auto timed {timed:.2f}, auto cached {cached:.2f}",
        "reason": engine.precision_choice.reason,
    }


# -- steps: one L-BFGS step per size and variant --------------------------------------------------


def step_flops(height: int, width: int) -> float:
    """Multiply-adds times two of one step: every convolution up to conv5_1 forward and backward to its
    input (the weights are frozen, so no weight gradients), and the five Gram matrices forward and back."""
    from engine.vgg import _BLOCKS, _CHANNELS

    flops, channels_in = 0.0, 3
    for level, (count, channels) in enumerate(zip(_BLOCKS, _CHANNELS, strict=True)):
        pixels = (height >> level) * (width >> level)
        for _ in range(count if level < 4 else 1):
            flops += 2 * 2 * channels_in * channels * 9 * pixels  # forward, and backward to the input
            channels_in = channels
        flops += 3 * 2 * channels * channels * pixels  # the Gram matrix at convN_1, forward and backward
    return flops


def _steps() -> list[dict[str, object]]:
    """Seconds of one L-BFGS step (the real objective) at each side, the three variants taking turns."""
    import torch

    from engine import devices
    from engine.lbfgs import BatchLBFGS
    from engine.losses import StyleTransferObjective, gram_matrix
    from engine.vgg import CAFFE, VGGFeatures, cached_conv_weights

    devices.prepare(torch.device("cpu"))
    flat = VGGFeatures(cached_conv_weights("caffe"), CAFFE, last_layer="conv5_1")
    packed = VGGFeatures(cached_conv_weights("caffe"), CAFFE, last_layer="conv5_1")
    packed = packed.to(memory_format=torch.channels_last)
    packed.channels_last = True
    networks = {
        "fp32 NCHW": (flat, "fp32"),
        "fp32 channels-last": (packed, "fp32"),
        "bf16 channels-last": (packed, "bf16"),
    }
    peak = {str(row["precision"]): row for row in _matmul_peak()}
    rows: list[dict[str, object]] = []
    for side in STEP_SIDES:
        photo, art = _tensor(PHOTO, side), _tensor(PAINTING, side)
        with torch.no_grad():
            content = flat(photo, ("conv4_2",))
            grams = {k: gram_matrix(v)[0] for k, v in flat(art, LAYERS).items()}
        steppers: dict[str, Callable[[], None]] = {}
        for name, (network, precision) in networks.items():
            objective = StyleTransferObjective(
                network, content, grams, content_weight=1.0, style_weight=10.0, tv_weight=1e-3
            )
            lbfgs = BatchLBFGS(photo.clone().requires_grad_(True), history=50)
            steppers[name] = _stepper(lbfgs, objective, precision)
        repeats = 6 if side <= 512 else 4
        times: dict[str, list[float]] = {name: [] for name in steppers}
        for round_ in range(repeats + 1):
            for name, step in steppers.items():
                started = time.perf_counter()
                step()
                if round_:  # the first is a warm-up
                    times[name].append(time.perf_counter() - started)
        flops = step_flops(*photo.shape[-2:])
        for name, values in times.items():
            seconds = statistics.median(values)
            precision = "bf16" if name.startswith("bf16") else "fp32"
            achieved = flops / seconds / 1e9
            rows.append(
                {
                    "side": f"{photo.shape[-1]}x{photo.shape[-2]}",
                    "variant": name,
                    "s_per_step": round(seconds, 3),
                    "runs": [round(v, 3) for v in values],
                    "gflop": round(flops / 1e9, 1),
                    "gflops": round(achieved),
                    "of_matmul": f"{achieved / peak[precision]['matmul_gflops']:.0%}",
                    "of_paper_peak": f"{achieved / peak[precision]['paper_peak_gflops']:.0%}",
                }
            )
    return rows


def _stepper(lbfgs: Any, objective: Any, precision: str) -> Callable[[], None]:
    import torch

    from engine import devices

    cpu = torch.device("cpu")

    def closure() -> torch.Tensor:
        with devices.autocast(cpu, precision):
            total, _ = objective(lbfgs.x)
        total.sum().backward()
        return total.detach()

    return lambda: lbfgs.step(closure)


def _tensor(path: Path, side: int) -> torch.Tensor:
    import torch

    from engine.images import decode_image, resize_to

    image = resize_to(decode_image(path.read_bytes()), side)
    array = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return array.view(image.height, image.width, 3).permute(2, 0, 1)[None].float().div(255).contiguous()


# -- tiers: Engine.stylize end to end ---------------------------------------------------------------


@contextlib.contextmanager
def _old_high() -> Iterator[None]:
    """The high tier as it was before issue 22 on the CPU: 512 px, 150 + 80 + 80 steps."""
    import dataclasses

    import engine.api

    tier = engine.api.TIERS["high"]
    engine.api.TIERS["high"] = dataclasses.replace(tier, side_cpu=512, cpu_budget=None)
    try:
        yield
    finally:
        engine.api.TIERS["high"] = tier


def _tiers() -> list[dict[str, object]]:
    """Each tier on the shared pair, the model loaded and the painting's statistics cached, fp32 and bf16
    taking turns; high once each, and the high tier of before (512 px, fp32) as today's baseline."""
    from engine.api import Engine
    from engine.protocol import StyleSettings, StyleSource, StylizeRequest

    with tempfile.TemporaryDirectory() as stats:
        engines = {
            p: Engine(device="cpu", precision=p, styles_dir=SHARED / "styles", stats_dir=Path(stats))
            for p in ("fp32", "bf16")
        }
        styles = (StyleSource(image=PAINTING.read_bytes()),)
        for engine in engines.values():
            engine.load_model()
            for quality in ("draft", "normal", "high"):  # statistics of every scale cached, kernels warm
                engine.stylize(
                    StylizeRequest(PHOTO.read_bytes(), styles, StyleSettings(quality=quality, steps=4))
                )
        plan = [("draft", 3, "new"), ("normal", 2, "new"), ("high", 1, "new"), ("high", 1, "old")]
        plan = [p for p in plan if (p[0] if p[2] == "new" else "old-high") in TIERS_RUN]
        rows: list[dict[str, object]] = []
        for quality, repeats, version in plan:
            for precision, engine in engines.items():
                if version == "old" and precision != "fp32":
                    continue
                request = StylizeRequest(PHOTO.read_bytes(), styles, StyleSettings(quality=quality))
                times, result = [], None
                with _old_high() if version == "old" else contextlib.nullcontext():
                    for _ in range(repeats):
                        started = time.perf_counter()
                        result = engine.stylize(request)
                        times.append(time.perf_counter() - started)
                assert result is not None
                rows.append(
                    {"tier": quality + (" (before: 512 px, 150 + 80 + 80)" if version == "old" else ""),
                     "precision": precision, "size": f"{result.width}x{result.height}", "steps": result.steps,
                     "seconds": round(statistics.median(times), 2), "runs": [round(t, 2) for t in times],
                     **_distances(result.image, PHOTO, PAINTING)}
                )  # fmt: skip
    return rows


# -- cli: the command line beside pastiche ---------------------------------------------------------


def _cli() -> list[dict[str, object]]:
    """Both command lines as a user runs them, each a fresh process with a fresh statistics cache: ours at
    the draft tier with 20 steps at 256 px (fp32, bf16), pastiche with 100 L-BFGS steps at 256 px."""
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.png"
        size = ["--size", str(CLI_SIDE), "--device", "cpu"]
        ours = [sys.executable, "-m", "engine", str(PHOTO), str(PAINTING), "-o", str(out), *size]
        ours += ["--quality", "draft", "--steps", str(CLI_STEPS), "-q"]
        peer = [sys.executable, "-m", "pastiche", "--content", str(PHOTO), "--styles", str(PAINTING), *size]
        peer += ["--output", str(out), "--num-steps", str(PEER_STEPS), "--seed", "0", "--no-verbose"]
        runs: list[tuple[str, list[str]]] = [
            (f"stylebot draft, {CLI_STEPS} steps, fp32", [*ours, "--precision", "fp32"]),
            (f"stylebot draft, {CLI_STEPS} steps, bf16", [*ours, "--precision", "bf16"]),
            (f"stylebot draft, {CLI_STEPS} steps, fp32", [*ours, "--precision", "fp32"]),
            (f"stylebot draft, {CLI_STEPS} steps, bf16", [*ours, "--precision", "bf16"]),
            (f"pastiche, {PEER_STEPS} steps", peer),
        ]
        seconds: dict[str, list[float]] = {}
        quality: dict[str, dict[str, float]] = {}
        for label, command in runs:
            with tempfile.TemporaryDirectory() as cache:
                started = time.perf_counter()
                subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL,
                               env={**os.environ, "STYLE_CACHE_DIR": cache})  # fmt: skip
                seconds.setdefault(label, []).append(time.perf_counter() - started)
            quality[label] = _distances(out.read_bytes(), PHOTO, PAINTING)
        peer_seconds = seconds[runs[-1][0]][0]
        for label, values in seconds.items():
            median = statistics.median(values)
            rows.append(
                {
                    "program": label,
                    "seconds": round(median, 2),
                    "runs": [round(v, 2) for v in values],
                    "pastiche_over_this": round(peer_seconds / median, 1),
                    **quality[label],
                }
            )
    return rows


# -- memory: a worker painting 512 px --------------------------------------------------------------


def _memory() -> list[dict[str, object]]:
    """Resident memory of a worker-like process (Engine.from_settings, the model loaded) painting the
    normal tier (512 px), fp32 and bf16, each in a fresh process."""
    rows = []
    for precision in ("fp32", "bf16"):
        with tempfile.TemporaryDirectory() as cache:
            done = subprocess.run(
                [sys.executable, "-m", "bench.precision", "--memory-child", precision], cwd=REPO, check=True,
                capture_output=True, text=True, env={**os.environ, "STYLE_CACHE_DIR": cache},
            )  # fmt: skip
        rows.append({"precision": precision, **json.loads(done.stdout.strip().splitlines()[-1])})
    return rows


def _memory_child(precision: str) -> dict[str, object]:
    from engine.api import Engine
    from engine.protocol import StyleSettings, StyleSource, StylizeRequest
    from engine.settings import EngineSettings

    engine = Engine.from_settings(
        EngineSettings(engine_precision=precision, styles_dir=SHARED / "styles"), device="cpu"
    )
    engine.load_model()
    request = StylizeRequest(
        PHOTO.read_bytes(), (StyleSource(image=PAINTING.read_bytes()),), StyleSettings(quality="normal")
    )
    loaded = _status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # the peak from here on
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.2):
            samples.append(_status_mib("VmRSS"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    result = engine.stylize(request)
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    return {
        "size": f"{result.width}x{result.height}",
        "seconds": round(seconds, 1),
        "rss_loaded_mib": round(loaded),
        "rss_median_painting_mib": round(statistics.median(samples)) if samples else None,
        "rss_peak_mib": round(_status_mib("VmHWM")),
    }


# -- quality: bf16 against fp32 on the shared pairs -------------------------------------------------


def pairs() -> list[tuple[Path, Path]]:
    """Every shared photo with every shared painting, painting by painting (so a few cover both photos)."""
    photos = sorted((SHARED / "content").glob("*.jpg"))
    paintings = sorted((SHARED / "styles").glob("*.jpg"))
    return [(photo, painting) for painting in paintings for photo in photos]


def _quality(
    tiers: list[str], limit: int | None, yardstick: bool, only: list[str] | None = None, jitter: int = 0
) -> list[dict[str, object]]:
    """Each pair at each tier in fp32 and in bf16: the fixed evaluator's distances and bf16's difference.

    With ``yardstick``, fp32 on one thread too: the same arithmetic summed in another order, which shows
    how far rounding alone moves an L-BFGS run's distances; with ``jitter`` N, N more runs of each
    precision, each from the photo plus its own noise of at most half a grey level (seeds 1..N): starts no
    eye can tell apart. Together they show each precision's own spread and mean, against which bf16's
    difference is judged. Results are kept in bench/results/precision-quality-runs.json as they come, and
    a run skips what is there.
    """
    import torch

    from engine.api import Engine
    from engine.protocol import StyleSettings, StyleSource, StylizeRequest

    store = RESULTS / "precision-quality-runs.json"
    done: dict[str, dict[str, Any]] = json.loads(store.read_text()) if store.is_file() else {}
    engines: dict[str, Engine] = {}
    images = RESULTS / "precision"
    images.mkdir(parents=True, exist_ok=True)
    chosen = [(p, s) for p, s in pairs()[:limit] if only is None or f"{p.stem}:{s.stem}" in only]
    for tier in tiers:
        for photo, painting in chosen:
            for run in _runs(yardstick, jitter):
                key = f"{tier}|{photo.stem}|{painting.stem}|{run}"
                if key in done:
                    continue
                precision = run.split("/")[0]
                if precision not in engines:
                    engines[precision] = Engine(
                        device="cpu", precision=precision, styles_dir=SHARED / "styles"
                    )
                threads = torch.get_num_threads()
                torch.set_num_threads(1 if run.endswith("/1t") else threads)
                request = StylizeRequest(
                    photo.read_bytes(), (StyleSource(image=painting.read_bytes()),),
                    StyleSettings(quality=tier, output_format="png"),
                )  # fmt: skip
                started = time.perf_counter()
                with _jittered(engines[precision], run):
                    result = engines[precision].stylize(request)
                seconds = time.perf_counter() - started
                torch.set_num_threads(threads)
                name = f"{tier}-{photo.stem}-{painting.stem}-{run.replace('/', '-')}.png"
                (images / name).write_bytes(result.image)
                done[key] = {
                    "size": f"{result.width}x{result.height}",
                    "steps": result.steps,
                    "seconds": round(seconds, 1),
                    **_distances(result.image, photo, painting),
                }
                if store.is_file():  # another run may have added its own meanwhile: keep them
                    done = json.loads(store.read_text()) | done
                store.write_text(json.dumps(done, indent=1))
                print(key, done[key], flush=True)
    rows: list[dict[str, object]] = []
    for tier in tiers:
        for photo, painting in chosen:
            runs = {r: done.get(f"{tier}|{photo.stem}|{painting.stem}|{r}") for r in _runs(True, jitter)}
            fp32, bf16, one = runs["fp32"], runs["bf16"], runs["fp32/1t"]
            found = {p: [v for r, v in runs.items() if r.split("/")[0] == p and v] for p in ("fp32", "bf16")}
            if fp32 is None or bf16 is None:
                continue
            row: dict[str, object] = {"tier": tier, "photo": photo.stem, "painting": painting.stem}
            row["size"] = fp32["size"]
            for measure in ("style", "content"):
                before, after = fp32[f"{measure}_distance"], bf16[f"{measure}_distance"]
                row |= {
                    f"{measure}_fp32": before,
                    f"{measure}_bf16": after,
                    f"{measure}_bf16_change": _change(before, after),
                }
                if one is not None:
                    row[f"{measure}_fp32_1_thread_change"] = _change(before, one[f"{measure}_distance"])
                if len(found["fp32"]) > 2:  # several starts: each precision's runs, and their means
                    values = {p: [v[f"{measure}_distance"] for v in vs] for p, vs in found.items()}
                    for p, vs in values.items():
                        row[f"{measure}_{p}_runs"] = f"{min(vs):.4f}..{max(vs):.4f} ({len(vs)})"
                    means = {p: statistics.mean(vs) for p, vs in values.items()}
                    row[f"{measure}_bf16_mean_change"] = _change(means["fp32"], means["bf16"])
            rows.append(row)
    return rows


def _runs(yardstick: bool, jitter: int) -> tuple[str, ...]:
    jittered = (f"{p}/jitter{i}" for i in range(1, jitter + 1) for p in ("fp32", "bf16"))
    return ("fp32", "bf16", *(("fp32/1t",) if yardstick else ()), *jittered)


@contextlib.contextmanager
def _jittered(engine: Any, run: str) -> Iterator[None]:
    """For a ``fp32/jitterN`` or ``bf16/jitterN`` run: the first scale starts from the photo plus uniform
    noise of at most half a grey level (1/510), seeded N; any other run is left alone."""
    import torch

    if "/jitter" not in run:
        yield
        return
    seed, real = int(run.split("/jitter")[1]), engine._initial_image

    def start(job: Any, photo: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed)
        noise = (torch.rand(photo.shape, generator=generator, dtype=photo.dtype) - 0.5) / 255.0
        return (real(job, photo) + noise.to(photo.device)).clamp(0.0, 1.0)

    engine._initial_image = start
    try:
        yield
    finally:
        del engine._initial_image  # the class's method again


def _strips() -> list[dict[str, object]]:
    """The strength and layer strips (their draft panels, one batch each, as a worker makes them) in fp32
    and bf16 on the shared pair: each panel's distances, and whether bf16 ranks the panels as fp32 does."""
    from engine import figures
    from engine.api import Engine
    from engine.protocol import StyleSettings, StyleSource, StylizeRequest, StylizeResult

    rows: list[dict[str, object]] = []
    styles = (StyleSource(image=PAINTING.read_bytes()),)
    distances: dict[tuple[str, str], list[dict[str, float]]] = {}
    for precision in ("fp32", "bf16"):
        engine = Engine(device="cpu", precision=precision, styles_dir=SHARED / "styles")
        for figure in ("strength", "layers"):
            labelled = figures.panels(StyleSettings(quality="normal", figure=figure))
            results = engine.stylize_batch(
                [StylizeRequest(PHOTO.read_bytes(), styles, s) for _, s in labelled]
            )
            panels = []
            for (label, _), result in zip(labelled, results, strict=True):
                assert isinstance(result, StylizeResult), result
                panels.append(_distances(result.image, PHOTO, PAINTING))
                rows.append({"strip": figure, "panel": label, "precision": precision, **panels[-1]})
            distances[figure, precision] = panels
    for figure in ("strength", "layers"):
        for measure in ("style_distance", "content_distance"):
            orders = {p: _ranking([d[measure] for d in distances[figure, p]]) for p in ("fp32", "bf16")}
            rows.append(
                {
                    "strip": figure,
                    "panel": f"panels by {measure}",
                    "precision": f"fp32 {orders['fp32']}, bf16 {orders['bf16']}",
                    "style_distance": "same order" if orders["fp32"] == orders["bf16"] else "DIFFERENT order",
                }
            )
    return rows


def _refine() -> list[dict[str, object]]:
    """The high tier's last scale on the CPU, step by step: its 1024 px picture's distances every five
    steps (bf16), at the job's own style weight and at twice it in those steps (what a stronger style at
    1024 px would buy), against the normal tier's 512 px picture of the same code; the style distance split
    by layer, since the evaluator weighs conv5_1, which the default leaves out, a fifth."""
    import engine.api
    from engine.api import Engine
    from engine.protocol import StyleSettings, StyleSource, StylizeRequest

    painting_image, photo_image = _open(PAINTING), _open(PHOTO)
    painter = Engine(device="cpu", precision="bf16", styles_dir=SHARED / "styles")
    styles = (StyleSource(image=PAINTING.read_bytes()),)
    normal = painter.stylize(StylizeRequest(PHOTO.read_bytes(), styles, StyleSettings(quality="normal")))
    rows: list[dict[str, object]] = [
        {
            "picture": "normal, 512 px",
            **_layer_distances(_open_bytes(normal.image), photo_image, painting_image),
        }
    ]
    real_optimize = engine.api.optimize
    boost = {"style": 1.0}  # the style weight at 1024 px, times the job's

    def optimize(image: torch.Tensor, objective: Any, **options: Any) -> Any:
        on_step = options["on_step"]
        final = max(image.shape[-2:]) >= 1000
        if final:
            content, style, tv = objective.weights
            objective.weights = (content, style * boost["style"], tv)

        def measured(info: Any) -> Any:
            stops = on_step(info)
            if final and info.step % 5 == 0:
                picture = engine.api.to_pil(info.image[:1])
                rows.append(
                    {"picture": f"high, 1024 px, style x{boost['style']:g}, step {info.step}",
                     **_layer_distances(picture, photo_image, painting_image)}
                )  # fmt: skip
            return stops

        return real_optimize(image, objective, **{**options, "on_step": measured})

    engine.api.optimize = optimize
    try:
        for boost["style"] in (1.0, 2.0):
            painter.stylize(StylizeRequest(PHOTO.read_bytes(), styles, StyleSettings(quality="high")))
    finally:
        engine.api.optimize = real_optimize
    return rows


def _layer_distances(picture: Image.Image, photo: Image.Image, painting: Image.Image) -> dict[str, object]:
    """engine.metrics' two distances, and the style distance's term at each layer (its mean)."""
    from PIL import Image

    from engine.images import fit_within
    from engine.losses import gram_matrix, relative_mse
    from engine.metrics import _features, content_distance, style_distance

    seen = painting.resize(fit_within(*painting.size, max(picture.size)), Image.Resampling.LANCZOS)
    ours, theirs = _features(picture, LAYERS), _features(seen, LAYERS)
    return {
        "style_distance": round(style_distance(picture, painting), 4),
        "content_distance": round(content_distance(picture, photo), 4),
        **{
            layer: round(relative_mse(gram_matrix(ours[layer]), gram_matrix(theirs[layer])).item(), 4)
            for layer in LAYERS
        },
    }


def _open_bytes(data: bytes) -> Image.Image:
    from PIL import Image

    return Image.open(io.BytesIO(data)).convert("RGB")


def _open(path: Path) -> Image.Image:
    from PIL import Image

    return Image.open(path).convert("RGB")


def _ranking(values: list[float]) -> list[int]:
    return sorted(range(len(values)), key=values.__getitem__)


def _change(before: float, after: float) -> str:
    return f"{(after - before) / before:+.1%}"


# -- helpers ------------------------------------------------------------------------------------------


def _distances(image: bytes, photo_path: Path, painting_path: Path) -> dict[str, float]:
    from PIL import Image

    from engine.metrics import content_distance, style_distance

    out = Image.open(io.BytesIO(image)).convert("RGB")
    painting: Image.Image = Image.open(painting_path).convert("RGB")
    photo: Image.Image = Image.open(photo_path).convert("RGB")
    return {
        "style_distance": round(style_distance(out, painting), 4),
        "content_distance": round(content_distance(out, photo), 4),
    }


def _table(rows: list[dict[str, object]]) -> str:
    if not rows:
        return "(no rows)\n"
    keys = list(dict.fromkeys(k for row in rows for k in row))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(row.get(k, "")) for k in keys) + " |" for row in rows]
    return "\n".join(lines) + "\n"


SECTION_RUNS: dict[str, Callable[[], list[dict[str, object]]]] = {
    "peak": _peak,
    "steps": _steps,
    "tiers": _tiers,
    "cli": _cli,
    "memory": _memory,
    "strips": _strips,
    "refine": _refine,
}

if __name__ == "__main__":
    sys.exit(main())

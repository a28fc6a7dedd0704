"""Everything that needs a GPU, in one run of at most 8 minutes (issue 11): ``bench/gpu.sh`` calls this.

    python -m bench.gpu                      # on the GPU machine; results to bench/results/gpu-cuda.{json,md}
    python -m bench.gpu --out "$OUT"         # somewhere else
    python -m bench.gpu --dry-run            # (or DRY=1) the same script on the CPU, tiny, in seconds

Sections, each timed against one overall deadline (a section that would not fit is skipped and says so;
one that fails records its error and the run goes on):
1. ``cuda_tests``: ``pytest -m cuda`` (tests/engine/test_cuda.py).
2. ``tiers``: the normal and high tiers at their GPU side (1024 px: normal 20 steps a scale, high the full
   budget) in fp32 (TF32 convolutions) and bf16: seconds, peak memory, and the fixed evaluator's distances
   (``engine.metrics``).
3. ``throughput``: ``Engine.stylize_batch`` of N = 1, 2, 4, 8, 16 normal-tier jobs at 512 px (one photo,
   the paintings and strengths varying), and one batch of photos of two shapes on a padded canvas.
4. ``tuning``: what cuDNN autotuning costs for a new shape and gains per pass, so ``TUNE_AFTER_PASSES`` can be
   set from measurement (its break-even is cost / gain).
5. ``load``: the load benchmark through the bot (bench/load.py): 40 users, one GPU worker, normal tier, with
   ``ENGINE_BATCH_SIZE`` 1 and 8 passed through the environment (the queue's batching reads it once it
   exists); each run's report is kept as it came, with the value it was given. The dry run only checks that
   the command starts (``--help``): the bot and its worker take longer than the whole dry run may.

The dry run uses the CPU, 48 px, 3 steps, N = 1 and 2: it proves the script, not the numbers.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.engine import PAINTING, PHOTO, REPO, RESULTS, SHARED, _machine, _quality, _sync

DEADLINE_S = 470.0  # 8 minutes, less the start-up and the writing of the results
LOAD_USERS = 40
LOAD_BATCH_SIZES = (1, 8)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dry-run", action="store_true", default=os.environ.get("DRY") == "1")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--skip", action="append", default=[], help="a section to leave out")
    args = parser.parse_args()
    if not PHOTO.is_file() or not PAINTING.is_file():
        sys.exit(f"the benchmark needs {PHOTO} and {PAINTING} (../shared beside the repository)")
    import torch

    device = "cpu" if args.dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA GPU here; use --dry-run to check the script on the CPU")
    plan = Plan.dry() if args.dry_run else Plan.full()
    started = time.monotonic()
    report: dict[str, object] = {"dry_run": args.dry_run, "machine": _machine(), "torch": torch.__version__}
    sections: list[tuple[str, Callable[[], object], float]] = [
        ("cuda_tests", lambda: _cuda_tests(), 60),
        ("tiers", lambda: _tiers(device, plan), 90),
        ("throughput", lambda: _throughput(device, plan), 90),
        ("tuning", lambda: _tuning(device, plan), 20),
        ("load", lambda: _load(device, plan), 200),
    ]
    for name, run, needs in sections:
        left = DEADLINE_S - (time.monotonic() - started)
        if name in args.skip:
            report[name] = {"skipped": "asked"}
        elif left < needs * plan.time_scale:
            report[name] = {
                "skipped": f"{left:.0f} s left of the 8 minutes, the section needs about {needs} s"
            }
        else:
            section_started = time.monotonic()
            try:
                report[name] = run()
            except Exception as err:
                report[name] = {
                    "error": f"{type(err).__name__}: {err}",
                    "trace": traceback.format_exc(limit=5),
                }
            print(f"{name}: {time.monotonic() - section_started:.1f} s", file=sys.stderr, flush=True)
    report["device"] = _describe(device)
    report["seconds"] = round(time.monotonic() - started, 1)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"gpu-{'dry' if args.dry_run else 'cuda'}"
    (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (args.out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    return 0


class Plan:
    """Sizes and counts: the real ones, or tiny ones for the dry run on the CPU."""

    def __init__(
        self,
        *,
        tiers: tuple[tuple[str, int], ...],
        batch_sizes: tuple[int, ...],
        batch_side: int,
        steps: int | None,  # None: the tier's own
        time_scale: float,
        load_args: list[str],
    ) -> None:
        self.tiers = tiers
        self.batch_sizes = batch_sizes
        self.batch_side = batch_side
        self.steps = steps
        self.time_scale = time_scale
        self.load_args = load_args

    @classmethod
    def full(cls) -> Plan:
        return cls(
            tiers=(("normal", 1024), ("high", 1024)),
            batch_sizes=(1, 2, 4, 8, 16),
            batch_side=512,
            steps=None,
            time_scale=1.0,
            load_args=[
                "--users",
                str(LOAD_USERS),
                "--workers",
                "1",
                "--quality",
                "normal",
                "--device",
                "cuda",
            ],
        )

    @classmethod
    def dry(cls) -> Plan:
        return cls(
            tiers=(("normal", 48),),
            batch_sizes=(1, 2),
            batch_side=48,
            steps=3,
            time_scale=0.0,
            load_args=["--help"],
        )


# -- sections -------------------------------------------------------------------------------------


def _cuda_tests() -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider",
         "tests/engine/test_cuda.py"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = [line for line in done.stdout.strip().splitlines() if line]
    return {"returncode": done.returncode, "summary": lines[-1] if lines else done.stderr[-500:]}


def _tiers(device: str, plan: Plan) -> list[dict[str, object]]:
    """Each tier at its side, fp32 and bf16, the model loaded and warm: wall time, peak memory, quality."""
    import torch

    from engine.api import Engine
    from engine.protocol import StyleSettings, StyleSource, StylizeRequest

    rows = []
    for precision in ("fp32", "bf16"):
        engine = Engine(
            device=device, precision=precision, styles_dir=SHARED / "styles", output_max_side=2048
        )
        engine.load_model()
        for tier, side in plan.tiers:
            settings = StyleSettings(quality=tier, size=side, steps=plan.steps)
            request = StylizeRequest(
                PHOTO.read_bytes(), (StyleSource(image=PAINTING.read_bytes()),), settings
            )
            engine.stylize(StylizeRequest(request.content, request.styles, settings.replace(steps=2)))
            if device == "cuda":
                torch.cuda.reset_peak_memory_stats()
            _sync(device)
            started = time.perf_counter()
            result = engine.stylize(request)
            _sync(device)
            row: dict[str, object] = {
                "tier": tier, "side": side, "precision": precision, "steps": result.steps,
                "seconds": round(time.perf_counter() - started, 2),
            }  # fmt: skip
            if device == "cuda":
                row["peak_allocated_mib"] = round(torch.cuda.max_memory_allocated() / 2**20)
                row["peak_reserved_mib"] = round(torch.cuda.max_memory_reserved() / 2**20)
            row.update(_quality(result.image))
            rows.append(row)
    return rows


def _throughput(device: str, plan: Plan) -> list[dict[str, object]]:
    """Jobs per minute for batches of N at the batch side, and batches of photos of different shapes on a
    padded canvas: a 3:2 and a 4:3 landscape (6% padding), a 4:3 landscape and portrait (25%, the limit)."""
    from engine.api import Engine, _groups
    from engine.canvas import Canvas
    from engine.protocol import StyleSettings, StyleSource, StylizeRequest, StylizeResult

    engine = Engine(device=device, styles_dir=SHARED / "styles", output_max_side=2048)
    engine.load_model()
    paintings = sorted((SHARED / "styles").glob("*.jpg"))
    settings = StyleSettings(quality="normal", size=plan.batch_side, steps=plan.steps)
    landscape = PHOTO.read_bytes()
    wide = (SHARED / "content" / "chicago.jpg").read_bytes()
    portrait = _transposed(landscape)

    def request(i: int, photo: bytes = landscape) -> StylizeRequest:
        painting = paintings[i % len(paintings)]
        strength = (0.3, 0.5, 0.7)[i % 3]
        return StylizeRequest(
            photo, (StyleSource(image=painting.read_bytes()),), settings.replace(strength=strength)
        )

    engine.stylize_batch([request(0)])  # warm-up
    n = max(2, min(4, plan.batch_sizes[-1]))
    cases = [(f"N={k}", [request(i) for i in range(k)]) for k in plan.batch_sizes]
    cases.append((f"N={n}, 3:2 and 4:3", [request(i, (landscape, wide)[i % 2]) for i in range(n)]))
    cases.append((f"N={n}, 4:3 and 3:4", [request(i, (landscape, portrait)[i % 2]) for i in range(n)]))
    rows: list[dict[str, object]] = []
    for label, requests in cases:
        jobs = {i: engine._prepare(r, None, None) for i, r in enumerate(requests)}
        _sync(device)
        started = time.perf_counter()
        results = engine.stylize_batch(requests)
        _sync(device)
        seconds = time.perf_counter() - started
        ok = [r for r in results if isinstance(r, StylizeResult)]
        rows.append(
            {"batch": label, "jobs": len(requests), "runs": len(_groups(jobs)),
             "padding": round(Canvas(tuple(j.final_size() for j in jobs.values())).waste(), 3),
             "seconds": round(seconds, 2), "jobs_per_min": round(60 * len(ok) / seconds, 1),
             "failed": len(requests) - len(ok)}
        )  # fmt: skip
    return rows


def _transposed(jpeg: bytes) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).transpose(Image.Transpose.TRANSPOSE).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _tuning(device: str, plan: Plan) -> dict[str, object]:
    """cuDNN autotuning of one new shape at the batch side: its one-off cost, and a pass's time on the
    heuristics' algorithms and on the tuned ones. Break-even passes = cost / (untuned - tuned)."""
    import torch

    from engine.devices import _cudnn_benchmark
    from engine.images import decode_image, resize_to
    from engine.losses import StyleTransferObjective, gram_matrix
    from engine.vgg import feature_extractor

    extractor = feature_extractor("caffe", device, "conv5_1", "max")
    image = resize_to(decode_image(PHOTO.read_bytes()), plan.batch_side - 1)  # a side no other section used
    array = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    x = array.view(image.height, image.width, 3).permute(2, 0, 1)[None].float().div(255).to(device)
    layers = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    with torch.no_grad():
        content = extractor(x, ("conv4_2",))
        grams = {k: gram_matrix(v) for k, v in extractor(x.flip(-1), layers).items()}
    objective = StyleTransferObjective(
        extractor, content, grams, content_weight=1, style_weight=10, tv_weight=1e-3
    )
    x.requires_grad_(True)
    passes = 3 if plan.time_scale == 0 else 20

    def one_pass() -> float:
        _sync(device)
        started = time.perf_counter()
        objective(x)[0].sum().backward()
        _sync(device)
        return time.perf_counter() - started

    with _cudnn_benchmark(False):
        one_pass()
        untuned = sorted(one_pass() for _ in range(passes))[passes // 2]
    with _cudnn_benchmark(True):
        first = one_pass()  # tunes every convolution, forward and backward
        tuned = sorted(one_pass() for _ in range(passes))[passes // 2]
    gain = untuned - tuned
    return {
        "shape": list(x.shape),
        "untuned_pass_ms": round(untuned * 1000, 2),
        "tuned_pass_ms": round(tuned * 1000, 2),
        "tuning_cost_s": round(first - tuned, 3),
        "break_even_passes": round(max(0.0, first - tuned) / gain) if gain > 0 else None,
    }


def _load(device: str, plan: Plan) -> list[dict[str, object]]:
    """bench/load.py through the bot, batching off and on; each run's own report, as it came."""
    rows = []
    for batch in LOAD_BATCH_SIZES:
        env = {**os.environ, "ENGINE_BATCH_SIZE": str(batch)}
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "bench.load", *plan.load_args],
            cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        row: dict[str, object] = {
            "ENGINE_BATCH_SIZE": batch,
            "returncode": done.returncode,
            "seconds": round(time.monotonic() - started, 1),
        }
        result = RESULTS / f"load-{device}.json"
        if done.returncode == 0 and "--help" not in plan.load_args and result.is_file():
            row["report"] = json.loads(result.read_text())
        elif done.returncode != 0:
            row["error"] = done.stderr[-1500:]
        rows.append(row)
    return rows


# -- output ---------------------------------------------------------------------------------------


def _describe(device: str) -> str:
    from engine.devices import describe, resolve_device

    return describe(resolve_device(device))


def markdown(report: dict[str, Any]) -> str:
    """The tables for docs/benchmarks.md."""
    lines = [
        f"GPU run{' (dry run on the CPU: the script, not the numbers)' if report['dry_run'] else ''}: "
        f"{report['device']}, torch {report['torch']}, {report['seconds']} s",
        "",
    ]
    for name in ("cuda_tests", "tiers", "throughput", "tuning", "load"):
        value = report.get(name)
        lines += [f"### {name}", ""]
        if isinstance(value, list) and value:
            flat = [{k: v for k, v in row.items() if not isinstance(v, dict)} for row in value]
            keys = list(dict.fromkeys(k for row in flat for k in row))
            lines += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(str(row.get(k, "")) for k in keys) + " |" for row in flat]
            for row in value:
                if isinstance(row.get("report"), dict):
                    from bench.load import markdown as load_markdown

                    lines += [
                        "",
                        f"ENGINE_BATCH_SIZE={row['ENGINE_BATCH_SIZE']}:",
                        "",
                        load_markdown(row["report"]),
                    ]
        else:
            lines.append(f"`{json.dumps(value)}`")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

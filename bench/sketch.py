"""The sketch benchmark: how fast the feed-forward sketch is, and what starting the optimization from it buys.

    python -m bench.sketch                    # everything (about 25 min on an idle 2-core CPU)
    python -m bench.sketch --only speed       # one section: speed, init, schedules
    python -m bench.sketch --only init --pairs 3

``speed``      the sketch (``engine.sketch``) at 256, 512 and 1024 px, the networks loaded: median of 10 runs,
               and the cold start (loading both networks).
``init``       style and content distance (``engine.metrics``, the fixed evaluator) against steps for the
               starts ``content``, ``noise`` and ``sketch`` through the old normal schedule (before issue
               10: 100 steps at 128 px, 50 at 256 px), on several photo and painting pairs; every 10th step is
               kept losslessly and measured at the final size. Draws ``docs/sketch-init.png``.
``schedules``  candidate schedules for the normal tier at 512 px: wall time and distances at 512 px, beside
               the old normal result at 256 px.

Results go to bench/results/sketch-<device>.json and a Markdown summary on stdout (docs/benchmarks.md records
it). Timings need an otherwise idle machine: the engine's threads wait on each other.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from engine.api import Engine
    from engine.protocol import Progress, StylizeRequest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "images"
RESULTS = REPO / "bench" / "results"
PLOT = REPO / "docs" / "sketch-init.png"
SECTIONS = ("speed", "init", "schedules")
PAIRS = (
    ("tubingen", "starry_night"),
    ("chicago", "great_wave"),
    ("tubingen", "udnie"),
    ("chicago", "shipwreck"),
)
INITS = ("content", "noise", "sketch")
EVERY = 10  # steps between kept snapshots
EVAL_SIDE = 256  # the old normal size on the CPU: every snapshot is measured at it
OLD_NORMAL = (100, 50)  # the old normal tier's steps at 128 px and at 256 px, which the curves follow


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections")
    parser.add_argument("--pairs", type=int, default=len(PAIRS), help="photo and painting pairs for init")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    pairs = [p for p in PAIRS[: args.pairs] if _photo(p[0]).is_file() and _painting(p[1]).is_file()]
    if not pairs:
        sys.exit(f"the benchmark needs photos and paintings in {SHARED} (../shared beside the repository)")

    import torch

    from engine.devices import describe, resolve_device

    device = resolve_device(args.device)
    report: dict[str, object] = {"device": describe(device), "torch": torch.__version__}
    sections = args.only or list(SECTIONS)
    if "speed" in sections:
        report["speed"] = _speed(pairs[0])
    if "init" in sections:
        report["init"] = _init(str(device), pairs)
    if "schedules" in sections:
        report["schedules"] = _schedules(str(device), pairs[0])
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"sketch-{device.type}.json"
    previous = json.loads(out.read_text()) if out.is_file() else {}
    out.write_text(json.dumps({**previous, **report}, indent=2))
    print(_markdown(report))
    print(f"\n(raw numbers: {out.relative_to(REPO)})")
    return 0


def _photo(name: str) -> Path:
    return SHARED / "content" / f"{name}.jpg"


def _painting(name: str) -> Path:
    return SHARED / "styles" / f"{name}.jpg"


# -- speed ----------------------------------------------------------------------------------------


def _speed(pair: tuple[str, str]) -> list[dict[str, object]]:
    """The sketch alone, as the bot's sketch process runs it (two threads)."""
    from engine.images import decode_image, image_digest
    from engine.metrics import content_distance, style_distance
    from engine.sketch import Sketcher, SketchStyle

    photo = decode_image(_photo(pair[0]).read_bytes())
    data = _painting(pair[1]).read_bytes()
    painting = decode_image(data)
    style = SketchStyle(painting, 1.0, image_digest(data))
    started = time.perf_counter()
    sketcher = Sketcher(None, threads=2)
    sketcher.load()
    loaded = time.perf_counter() - started
    started = time.perf_counter()
    sketcher.sketch(photo, [style], side=512)
    first = time.perf_counter() - started
    rows: list[dict[str, object]] = [
        {"what": "load both networks", "seconds": round(loaded, 3)},
        {"what": "first sketch at 512 px (style vector included)", "seconds": round(first, 3)},
    ]
    for side in (256, 512, 1024):
        times = []
        for _ in range(10):
            started = time.perf_counter()
            image = sketcher.sketch(photo, [style], side=side)
            times.append(time.perf_counter() - started)
        rows.append(
            {
                "what": f"sketch at {side} px ({image.width}x{image.height})",
                "seconds": round(statistics.median(times), 3),
                "style_distance": round(style_distance(image, painting), 4),
                "content_distance": round(content_distance(image, photo), 4),
            }
        )
    return rows


# -- init -----------------------------------------------------------------------------------------


def _init(device: str, pairs: list[tuple[str, str]]) -> dict[str, object]:
    """The three starts through the old normal schedule: distance against steps, per pair."""
    import engine.api
    from engine.api import Engine
    from engine.images import encode_image

    # Snapshots without JPEG's losses: the evaluator would measure the codec too.
    engine.api._preview_maker = lambda mode: lambda image: encode_image(engine.api.to_pil(image), "png")
    eng = Engine(device=device, styles_dir=SHARED / "styles", output_max_side=2048)
    eng.load_model()
    tier = engine.api.TIERS["normal"]
    engine.api.TIERS["normal"] = replace(tier, first_steps=OLD_NORMAL[0], later_steps=OLD_NORMAL[1])
    try:
        curves = _curves(eng, pairs)
    finally:
        engine.api.TIERS["normal"] = tier
    summary = _init_summary(curves)
    _plot(curves)
    return {"curves": curves, "summary": summary}


def _curves(eng: Engine, pairs: list[tuple[str, str]]) -> dict[str, dict[str, list[list[float]]]]:
    from PIL import Image

    from engine.protocol import StyleSettings, StyleSource, StylizeRequest

    curves: dict[str, dict[str, list[list[float]]]] = {}
    for photo_name, painting_name in pairs:
        photo_bytes, painting_bytes = _photo(photo_name).read_bytes(), _painting(painting_name).read_bytes()
        photo, painting = (
            Image.open(io.BytesIO(photo_bytes)).convert("RGB"),
            Image.open(io.BytesIO(painting_bytes)).convert("RGB"),
        )
        for init in INITS:
            snapshots: list[tuple[int, bytes]] = []

            def keep(report: Progress, snapshots: list[tuple[int, bytes]] = snapshots) -> None:
                if report.preview is not None:
                    snapshots.append((report.step, report.preview))

            settings = StyleSettings(quality="normal", size=EVAL_SIDE, init=init, preview_every=EVERY)
            request = StylizeRequest(photo_bytes, (StyleSource(image=painting_bytes),), settings)
            started = time.perf_counter()
            result = eng.stylize(request, progress=keep)
            seconds = time.perf_counter() - started
            start = _start_image(eng, request, init)
            points = ([[0, *_measure(start, photo, painting)]] if start is not None else []) + [
                [step, *_measure(data, photo, painting)] for step, data in snapshots
            ]
            if not points or points[-1][0] != result.steps:
                points.append([result.steps, *_measure(result.image, photo, painting)])
            curves.setdefault(f"{photo_name} + {painting_name}", {})[init] = points
            print(
                f"init {init:7s} {photo_name} + {painting_name}: {points[-1]} in {seconds:.1f} s", flush=True
            )
    return curves


def _measure(data: bytes, photo: PILImage, painting: PILImage) -> list[float]:
    """Both distances of one snapshot, seen at the final size (a 128 px one upsampled)."""
    from PIL import Image

    from engine.images import fit_within
    from engine.metrics import content_distance, style_distance

    image = Image.open(io.BytesIO(data)).convert("RGB")
    size = fit_within(*photo.size, EVAL_SIDE)
    if image.size != size:
        image = image.resize(size, Image.Resampling.BICUBIC)
    return [round(style_distance(image, painting), 5), round(content_distance(image, photo), 5)]


def _start_image(eng: Engine, request: StylizeRequest, init: str) -> bytes | None:
    """Step 0: the photo or the sketch at the evaluated size (the noise start says nothing)."""
    from engine.images import decode_image, encode_image, resize_to
    from engine.sketch import SketchStyle

    photo = decode_image(request.content)
    if init == "content":
        return encode_image(resize_to(photo, EVAL_SIDE), "png")
    if init == "sketch":
        style = request.styles[0].image
        assert style is not None, "the pairs are image styles"
        painting = decode_image(style)
        sketch = eng.sketcher.sketch(photo, [SketchStyle(painting)], side=EVAL_SIDE)
        return encode_image(sketch, "png")
    return None


def _init_summary(curves: dict[str, dict[str, list[list[float]]]]) -> list[dict[str, object]]:
    """Per pair and start: where it ends, and the first kept step at which it is at least as good as the
    content start's final picture on both distances (the old normal's quality)."""
    rows = []
    for pair, by_init in curves.items():
        goal_style, goal_content = by_init["content"][-1][1:3]
        for init, points in by_init.items():
            reached = next((p[0] for p in points if p[1] <= goal_style and p[2] <= goal_content), None)
            rows.append(
                {
                    "pair": pair,
                    "start": init,
                    "final steps": points[-1][0],
                    "final style": points[-1][1],
                    "final content": points[-1][2],
                    "steps to the photo start's quality": reached if reached is not None else "not reached",
                }
            )
    return rows


def _plot(curves: dict[str, dict[str, list[list[float]]]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"content": "tab:blue", "noise": "tab:gray", "sketch": "tab:orange"}
    fig, axes = plt.subplots(2, len(curves), figsize=(4.2 * len(curves), 6.5), squeeze=False, sharex=True)
    for column, (pair, by_init) in enumerate(curves.items()):
        for row, (index, label) in enumerate(((1, "style distance"), (2, "content distance"))):
            ax = axes[row][column]
            for init, points in by_init.items():
                shown = [p for p in points if p[index] > 0]  # the photo start's content at step 0 is 0
                ax.plot([p[0] for p in shown], [p[index] for p in shown], label=init, color=colors[init])
            ax.axvline(100, color="0.8", linewidth=0.8)  # 128 px -> 256 px
            ax.set_yscale("log")
            ax.grid(alpha=0.3, which="both")
            if row == 0:
                ax.set_title(pair, fontsize=10)
            else:
                ax.set_xlabel("optimizer steps (100 at 128 px, then 256 px)")
            if column == 0:
                ax.set_ylabel(label)
    axes[0][0].legend(title="start")
    fig.suptitle(
        "Starting the old normal schedule from the photo, from noise, or from the sketch (lower is better)"
    )
    fig.tight_layout()
    fig.savefig(PLOT, dpi=110)
    plt.close(fig)


# -- schedules ------------------------------------------------------------------------------------

# (name, init, first-scale steps, steps at each finer scale): the normal tier at 512 px (128, 256, 512).
CANDIDATES = (
    ("photo start, 20 + 20 + 20 (normal now)", "content", 20, 20),
    ("sketch start, 20 + 20 + 20", "sketch", 20, 20),
    ("photo start, 30 + 15 + 15", "content", 30, 15),
    ("sketch start, 30 + 15 + 15", "sketch", 30, 15),
    ("sketch start, 40 + 20 + 20", "sketch", 40, 20),
    ("photo start, 100 + 50 + 50 (the old budget)", "content", 100, 50),
)


def _schedules(device: str, pair: tuple[str, str]) -> list[dict[str, object]]:
    """Candidate budgets at 512 px, timed (the model loaded, one warm-up), beside the old normal's result."""
    from PIL import Image

    import engine.api
    from engine.api import Engine
    from engine.images import fit_within
    from engine.metrics import content_distance, style_distance
    from engine.protocol import StyleSettings, StyleSource, StylizeRequest

    photo_bytes, painting_bytes = _photo(pair[0]).read_bytes(), _painting(pair[1]).read_bytes()
    photo = Image.open(io.BytesIO(photo_bytes)).convert("RGB")
    painting = Image.open(io.BytesIO(painting_bytes)).convert("RGB")
    eng = Engine(device=device, styles_dir=SHARED / "styles", output_max_side=2048)
    eng.load_model()
    tier = engine.api.TIERS["normal"]
    rows: list[dict[str, object]] = []

    def run(name: str, init: str, side: int) -> Image.Image:
        settings = StyleSettings(quality="normal", size=side, init=init)
        request = StylizeRequest(photo_bytes, (StyleSource(image=painting_bytes),), settings)
        started = time.perf_counter()
        result = eng.stylize(request)
        seconds = time.perf_counter() - started
        image = Image.open(io.BytesIO(result.image)).convert("RGB")
        add(name, f"{result.width}x{result.height}", result.steps, round(seconds, 1), image)
        return image

    def add(name: str, size: str, steps: int | str, seconds: float | str, image: Image.Image) -> None:
        rows.append(
            {
                "schedule": name,
                "size": size,
                "steps": steps,
                "seconds": seconds,
                "style_distance": round(style_distance(image, painting), 4),
                "content_distance": round(content_distance(image, photo), 4),
            }
        )
        print(rows[-1], flush=True)

    eng.stylize(StylizeRequest(photo_bytes, (StyleSource(image=painting_bytes),), StyleSettings(steps=2)))
    try:
        engine.api.TIERS["normal"] = replace(tier, first_steps=100, later_steps=50)
        today = run("before: normal at 256 px, 100 + 50", "content", 256)
        shown = today.resize(fit_within(*photo.size, 512), Image.Resampling.BICUBIC)
        add("the same, shown at 512 px (bicubic)", f"{shown.width}x{shown.height}", "", "", shown)
        for name, init, first, later in CANDIDATES:
            engine.api.TIERS["normal"] = replace(tier, first_steps=first, later_steps=later)
            run(f"{name} at 512 px", init, 512)
    finally:
        engine.api.TIERS["normal"] = tier
    return rows


def _markdown(report: dict[str, Any]) -> str:
    lines = [f"Device: {report['device']}, torch {report['torch']}", ""]
    sections = [(k, v) for k, v in report.items() if k in ("speed", "schedules")]
    if isinstance(report.get("init"), dict):
        sections.append(("init", report["init"]["summary"]))
    for name, rows in sections:
        keys = list(dict.fromkeys(k for row in rows for k in row))
        lines += [f"### {name}", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        lines += ["| " + " | ".join(str(row.get(k, "")) for k in keys) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

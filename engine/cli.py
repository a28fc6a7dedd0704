"""``python -m engine CONTENT STYLE [STYLE ...] -o OUT``: stylize one photo from the command line.

Exit status: 0 done, 1 the engine refused the input (bad image, unknown style, ...), 2 wrong arguments,
130 interrupted (Ctrl-C cancels at the next step).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from engine.errors import Cancelled, StylebotError
from engine.protocol import (
    COLOR_MODES,
    DEFAULT_CONTENT_WEIGHT,
    DEFAULT_STYLE_WEIGHT,
    DEFAULT_TV_WEIGHT,
    INITS,
    LAYER_NAMES,
    OPTIMIZERS,
    QUALITIES,
    Progress,
    StyleSettings,
    StyleSource,
    StylizeRequest,
)
from engine.settings import EngineSettings

OUTPUT_FORMATS = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m engine",
        description="Paint a photo in the style of one or more paintings (Gatys et al., VGG19). "
        "See also 'python -m engine styles --help' (the preset catalog) and 'python -m engine worker'.",
    )
    p.add_argument("content", type=Path, help="the photo")
    p.add_argument("styles", nargs="+", metavar="STYLE", help="a painting: an image file or a preset id")
    p.add_argument(
        "-o", "--output", type=Path, required=True, help="where to write the result (.png or .jpg)"
    )
    p.add_argument(
        "--quality",
        choices=QUALITIES,
        default="normal",
        help="instant (the feed-forward sketch, no optimization: --steps is ignored), draft, normal or high "
        "(default normal)",
    )
    p.add_argument(
        "--size", type=int, help="longest side of the result in pixels (default: the quality tier's)"
    )
    p.add_argument("--strength", type=float, help="0..1: how strongly the style dominates (default 0.5)")
    p.add_argument("--style-weights", type=float, nargs="+", metavar="W", help="blend weights, one per STYLE")
    p.add_argument(
        "--style-scale", type=float, help="size of the painting's strokes relative to the photo (1.0)"
    )
    p.add_argument("--preserve-colors", choices=COLOR_MODES, help="keep the photo's colours")
    p.add_argument(
        "--init",
        choices=INITS,
        default="content",
        help="the starting image: the photo, noise, gray or the instant sketch (default content)",
    )
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="lbfgs")
    p.add_argument("--steps", type=int, help="total optimizer steps (default: the quality tier's budget)")
    p.add_argument(
        "--time-budget", type=float, metavar="SECONDS", help="stop when this many seconds are spent"
    )
    p.add_argument("--no-multiscale", action="store_true", help="optimize at the final size only")
    p.add_argument("--content-weight", type=float, default=DEFAULT_CONTENT_WEIGHT)
    p.add_argument("--style-weight", type=float, default=DEFAULT_STYLE_WEIGHT)
    p.add_argument("--tv-weight", type=float, default=DEFAULT_TV_WEIGHT)
    p.add_argument("--content-layers", nargs="+", choices=LAYER_NAMES, metavar="LAYER", default=["conv4_2"])
    p.add_argument(
        "--style-layers",
        nargs="+",
        choices=LAYER_NAMES,
        metavar="LAYER",
        default=["conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1"],
    )
    p.add_argument("--style-layer-weights", type=float, nargs="+", metavar="W", help="one per style layer")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:N or mps (default: ENGINE_DEVICE or auto)")
    p.add_argument("--weights", choices=("caffe", "torchvision"), help="VGG19 weights (default caffe)")
    p.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp64"),
        help="default: ENGINE_PRECISION (auto: bf16 where the processor has it natively); fp64: slow",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the noise start (runs are deterministic)")
    p.add_argument("--save-every", type=int, default=0, metavar="N", help="save the image every N steps")
    p.add_argument("--save-dir", type=Path, help="where --save-every writes (default: next to OUT)")
    p.add_argument("--styles-dir", type=Path, help="where preset paintings live (default: STYLES_DIR)")
    p.add_argument("--json", action="store_true", help="print a one-line JSON summary on stdout")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    return p


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        request, fmt = _request_from_args(args)
    except (ValueError, OSError, StylebotError) as err:
        parser.exit(2, f"error: {_one_line(err)}\n")
    save_dir = args.save_dir or args.output.parent
    if args.save_every:
        save_dir.mkdir(parents=True, exist_ok=True)

    env = EngineSettings()
    overrides: dict[str, object] = {}
    options = (
        ("device", args.device),
        ("weights", args.weights),
        ("styles_dir", args.styles_dir),
        ("precision", args.precision),
    )
    for name, value in options:
        if value is not None:
            overrides[name] = value
    interrupted = _install_interrupt_flag()
    bar = _ProgressBar(enabled=not args.quiet and sys.stderr.isatty())
    try:
        with _no_garbage_collection():
            from engine.api import Engine  # torch loads here, after the arguments are known to be good

        engine = Engine.from_settings(env, **overrides)

        def on_progress(report: Progress) -> None:
            bar.update(report)
            if report.preview is not None:
                (save_dir / f"{args.output.stem}_step{report.step:05d}.jpg").write_bytes(report.preview)

        result = engine.stylize(request, progress=on_progress, should_cancel=lambda: interrupted[0])
    except Cancelled:
        bar.close()
        print("cancelled", file=sys.stderr)
        return 130
    except (StylebotError, ValueError) as err:
        bar.close()
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 1
    bar.close()
    assert result.format == fmt
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_bytes(result.image)
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.summary(), separators=(",", ":")))
    elif not args.quiet:
        print(
            f"wrote {args.output} ({result.width}x{result.height}) in {result.seconds:.1f} s", file=sys.stderr
        )
    return 0


def _request_from_args(args: argparse.Namespace) -> tuple[StylizeRequest, str]:
    fmt = OUTPUT_FORMATS.get(args.output.suffix.lower())
    if fmt is None:
        raise ValueError(f"the output must end in .png, .jpg or .jpeg, not {args.output.name!r}")
    if args.style_weights is not None and len(args.style_weights) != len(args.styles):
        raise ValueError(f"--style-weights needs {len(args.styles)} values, one per style")
    if args.save_every < 0:
        raise ValueError("--save-every must not be negative")
    settings = StyleSettings(
        quality=args.quality,
        size=args.size,
        strength=args.strength,
        style_scale=args.style_scale,
        preserve_colors=args.preserve_colors,
        init=args.init,
        optimizer=args.optimizer,
        steps=args.steps,
        time_budget=args.time_budget,
        seed=args.seed,
        multiscale=not args.no_multiscale,
        content_weight=args.content_weight,
        style_weight=args.style_weight,
        tv_weight=args.tv_weight,
        content_layers=tuple(args.content_layers),
        style_layers=tuple(args.style_layers),
        style_layer_weights=tuple(args.style_layer_weights) if args.style_layer_weights else None,
        output_format=fmt,
        preview_every=args.save_every,
    )
    content = _read(args.content)
    weights = args.style_weights or [1.0] * len(args.styles)
    styles = tuple(_style_source(text, weight) for text, weight in zip(args.styles, weights, strict=True))
    return StylizeRequest(content=content, styles=styles, settings=settings), fmt


def _style_source(text: str, weight: float) -> StyleSource:
    """A path is an image; anything else is a preset id (checked against the catalog)."""
    path = Path(text)
    if path.is_file() or path.suffix or len(path.parts) > 1:
        return StyleSource(image=_read(path), weight=weight)
    from engine.catalog import load_catalog

    return StyleSource(preset=load_catalog().get(text).id, weight=weight)


def _read(path: Path) -> bytes:
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return path.read_bytes()


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or err.__class__.__name__


@contextlib.contextmanager
def _no_garbage_collection() -> Iterator[None]:
    """Importing torch creates some 200,000 objects that live as long as the process and no garbage; the
    collections they trigger meanwhile only walk them again (0.2-0.3 s of a 2-core CPU, bench/startup.py)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _install_interrupt_flag() -> list[bool]:
    """Ctrl-C asks the engine to stop at its next step instead of killing it mid-computation."""
    flag = [False]

    def handler(signum: int, frame: FrameType | None) -> None:
        if flag[0]:
            raise KeyboardInterrupt
        flag[0] = True

    signal.signal(signal.SIGINT, handler)
    return flag


class _ProgressBar:
    def __init__(self, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=1, unit="step", dynamic_ncols=True, leave=False)

    def update(self, report: Progress) -> None:
        if self.bar is None:
            return
        self.bar.total = report.total_steps
        self.bar.n = report.step
        self.bar.set_description(f"scale {report.scale}/{report.scales} {report.width}x{report.height}")
        self.bar.set_postfix(loss=f"{report.losses.get('total', 0):.3g}", refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

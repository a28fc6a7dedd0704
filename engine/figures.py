"""The algorithm's own figures as jobs: a strength strip, a layer strip, and the painting as it forms.

A figure is one job that the worker runs through ``run`` instead of ``Engine.stylize``:

- ``strength``: the photo at five strengths, left (mostly photo) to right (mostly painting), the
  content-to-style ratio figure of the paper;
- ``layers``: the style matched at conv1_1 only, then conv1_1..conv2_1, up to conv1_1..conv5_1;
- ``forming``: one ordinary painting whose previews (every scale, at one steady size) become a GIF, and
  whose start, middle and end become a still triptych.

The strips' panels go to ``stylize_batch`` as one list and share one schedule, so each strip is optimized
as one batch of five (panels with different strengths or different style layers batch alike). Panels are
made one quality tier below the user's, so a strip of five costs about one job at the user's tier;
``weight`` says how many ordinary jobs a figure counts as for limits and waiting times.

A figure shows the optimization (strength and layers are its knobs, forming is its steps), which the
``instant`` tier does not run: a figure asked for at instant quality is made as at draft, the lowest tier
that optimizes, and says so in a note.

This module imports no torch: the bot imports it for ``weight`` and ``FIGURES``.
"""

from __future__ import annotations

import dataclasses
import io
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from PIL import Image, ImageDraw, ImageFont

from engine.errors import StylebotError
from engine.images import decode_image, encode_image
from engine.protocol import (
    DEFAULT_STYLE_LAYERS,
    FIGURES,
    Progress,
    StyleSettings,
    StylizeRequest,
    StylizeResult,
)
from engine.schedule import TIERS, plan

STRENGTHS = (0.1, 0.3, 0.5, 0.7, 0.9)
LAYER_SETS = tuple(DEFAULT_STYLE_LAYERS[: n + 1] for n in range(len(DEFAULT_STYLE_LAYERS)))
PANEL_QUALITY = {"instant": "draft", "draft": "draft", "normal": "draft", "high": "normal"}  # one below
FIGURE_QUALITY = "draft"  # what a figure asked for at a tier that does not optimize (instant) is made at
INSTANT_NOTE = "a figure needs the optimization, so it was made at draft quality rather than instant"
GAP = 4  # pixels between panels
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)

ANIMATION_FRAMES = 48  # about this many previews over a run
ANIMATION_SIDE = 320  # the frames' longest side (never more than the painting's)
ANIMATION_MAX_BYTES = 10 * 2**20  # well within what chat platforms take as an animation
FRAME_MS = 80
LAST_FRAME_MS = 1500

__all__ = ["FIGURES", "LAYER_SETS", "STRENGTHS", "compose_strip", "panel_boxes", "run", "weight"]


class FigureEngine(Protocol):
    """What a figure needs of an engine: ``engine.api.Engine`` and the tests' fake both have it."""

    def stylize(
        self,
        request: StylizeRequest,
        *,
        progress: Callable[[Progress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> StylizeResult: ...

    def stylize_batch(
        self,
        requests: list[StylizeRequest],
        *,
        progress: list[Callable[[Progress], None] | None] | None = None,
        should_cancel: list[Callable[[], bool] | None] | None = None,
    ) -> list[StylizeResult | StylebotError]: ...


# -- what a figure is ------------------------------------------------------------------------------


def panels(settings: StyleSettings) -> list[tuple[str, StyleSettings]]:
    """Each panel of a strip: its label and its settings. The strip's own size, step and time settings
    give way to the panel tier's, so every strip costs the same."""
    base = settings.replace(
        figure=None,
        quality=PANEL_QUALITY[settings.quality],
        size=None,
        steps=None,
        time_budget=None,
        preview_every=0,
        output_format="png",
    )
    if settings.figure == "strength":
        return [(f"{round(s * 100)}%", base.replace(strength=s)) for s in STRENGTHS]
    if settings.figure == "layers":
        # Equal weights: each panel matches exactly the layers its label names. The default weights leave
        # conv5_1 out (no faces from portraits), which would make the last two panels the same picture.
        return [
            (
                _layers_label(layers),
                base.replace(style_layers=layers, style_layer_weights=(1.0,) * len(layers)),
            )
            for layers in LAYER_SETS
        ]
    raise ValueError(f"{settings.figure!r} is not a strip")


def _layers_label(layers: Sequence[str]) -> str:
    """ "conv1" for conv1_1 alone, "conv1-3" for conv1_1..conv3_1: short enough for a small panel."""
    last = layers[-1].removeprefix("conv").split("_")[0]
    return "conv1" if len(layers) == 1 else f"conv1-{last}"


def weight(settings: StyleSettings) -> float:
    """How many ordinary jobs at the user's tier this job counts as, for limits and waiting times.

    Engine work is steps times pixels (see ``schedule.relative_cost``); a strip's panels are a tier lower.
    Both strips weigh the same: each is five panels in one batch. Never below one: whatever else, a figure
    is a job.
    """
    if settings.figure not in ("strength", "layers"):
        return 1.0
    quality = _figure_quality(settings.quality)
    own = _cost(quality)
    strip = len(STRENGTHS) * _cost(PANEL_QUALITY[quality])
    return max(1.0, round(strip / own, 1))


def _figure_quality(quality: str) -> str:
    """The tier a figure is made at: the user's, unless it does not optimize."""
    return quality if TIERS[quality].optimized else FIGURE_QUALITY


def _instant_notes(settings: StyleSettings) -> tuple[str, ...]:
    return () if TIERS[settings.quality].optimized else (INSTANT_NOTE,)


def _cost(quality: str) -> float:
    tier = TIERS[quality]
    return sum(s.steps * s.side * s.side for s in plan(tier, tier.side_cpu))


# -- running one --------------------------------------------------------------------------------------


def run(
    engine: FigureEngine,
    request: StylizeRequest,
    *,
    progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> StylizeResult:
    """What a worker calls for every job: ``engine.stylize`` for a painting, or the figure it asks for."""
    figure = request.settings.figure
    if figure is None:
        return engine.stylize(request, progress=progress, should_cancel=should_cancel)
    if figure == "forming":
        return _forming(engine, request, progress, should_cancel)
    return _strip(engine, request, progress, should_cancel)


def _strip(
    engine: FigureEngine,
    request: StylizeRequest,
    progress: Callable[[Progress], None] | None,
    should_cancel: Callable[[], bool] | None,
) -> StylizeResult:
    started = time.monotonic()
    labelled = panels(request.settings)
    requests = [dataclasses.replace(request, settings=s) for _, s in labelled]
    combined = _CombinedProgress(len(requests), progress)
    outcomes = engine.stylize_batch(
        requests,
        progress=[combined.reporter(i) for i in range(len(requests))],
        should_cancel=[should_cancel] * len(requests),
    )
    results: list[StylizeResult] = []
    for outcome in outcomes:
        if isinstance(outcome, StylebotError):
            raise outcome  # a strip without one of its panels is no strip
        results.append(outcome)
    strip = compose_strip([_open(r.image) for r in results], [label for label, _ in labelled])
    return _result(
        strip,
        request.settings.output_format,
        started,
        results,
        notes=tuple(
            dict.fromkeys([*_instant_notes(request.settings), *(n for r in results for n in r.notes)])
        ),
    )


def _forming(
    engine: FigureEngine,
    request: StylizeRequest,
    progress: Callable[[Progress], None] | None,
    should_cancel: Callable[[], bool] | None,
) -> StylizeResult:
    started = time.monotonic()
    settings = request.settings.replace(quality=_figure_quality(request.settings.quality))
    tier = TIERS[settings.quality]
    total = sum(s.steps for s in plan(tier, tier.side_accelerated, total_steps=settings.steps))
    every = max(1, total // ANIMATION_FRAMES)
    frames: list[tuple[int, bytes]] = []
    live = settings.preview_every > 0  # the user asked for live previews in the status message

    def report(p: Progress) -> None:
        if p.preview is not None:
            frames.append((p.step, p.preview))
        if progress is not None:
            progress(p if live else dataclasses.replace(p, preview=None))

    painted = engine.stylize(
        dataclasses.replace(request, settings=settings.replace(figure=None, preview_every=every)),
        progress=report,
        should_cancel=should_cancel,
    )
    final = _open(painted.image)
    first = decode_image(request.content) if settings.init == "content" else None  # iteration 0
    animation = encode_animation(first, [_open(data) for _, data in frames], final)
    triptych = compose_triptych(first, frames, final, painted.steps)
    notes = (*_instant_notes(request.settings), *painted.notes)
    return dataclasses.replace(
        _result(triptych, settings.output_format, started, [painted], notes=notes),
        animation=animation,
    )


def _result(
    image: Image.Image, fmt: str, started: float, parts: list[StylizeResult], *, notes: tuple[str, ...]
) -> StylizeResult:
    return StylizeResult(
        image=encode_image(image, fmt),
        format=fmt,
        width=image.width,
        height=image.height,
        seconds=time.monotonic() - started,
        steps=sum(p.steps for p in parts),
        device=parts[0].device,
        losses=parts[-1].losses,
        notes=notes,
    )


class _CombinedProgress:
    """The panels' reports as one job's: the mean of their fractions, whether they run as one batch
    (all at once) or one by one."""

    def __init__(self, count: int, progress: Callable[[Progress], None] | None) -> None:
        self.progress = progress
        self.fractions = [0.0] * count
        self.totals = [0] * count
        self.started = time.monotonic()
        self.lock = threading.Lock()

    def reporter(self, index: int) -> Callable[[Progress], None] | None:
        if self.progress is None:
            return None

        def report(p: Progress) -> None:
            with self.lock:
                self.fractions[index] = p.fraction
                self.totals[index] = p.total_steps
                fraction = sum(self.fractions) / len(self.fractions)
                known = [t for t in self.totals if t] or [p.total_steps]
                total = round(sum(known) / len(known) * len(self.totals))
            elapsed = time.monotonic() - self.started
            eta = elapsed / fraction * (1 - fraction) if fraction > 0 else None
            assert self.progress is not None
            self.progress(
                dataclasses.replace(
                    p, step=round(fraction * total), total_steps=total, elapsed=elapsed, eta=eta, preview=None
                )
            )

        return report


# -- pictures ---------------------------------------------------------------------------------------


def label_height(panel_width: int) -> int:
    """The label band above the panels: it grows with them, so labels stay readable at every size."""
    return max(14, panel_width // 8)


def panel_boxes(size: tuple[int, int], count: int) -> list[tuple[int, int, int, int]]:
    """Where each panel sits in a strip of ``size`` made by ``compose_strip`` (left, top, right, bottom)."""
    width, height = size
    panel_width = (width - GAP * (count - 1)) // count
    top = label_height(panel_width)
    return [
        (i * (panel_width + GAP), top, i * (panel_width + GAP) + panel_width, height) for i in range(count)
    ]


def compose_strip(images: Sequence[Image.Image], labels: Sequence[str]) -> Image.Image:
    """The panels side by side, each labelled above; every panel at the first one's size."""
    width, height = images[0].size
    band = label_height(width)
    strip = Image.new("RGB", (len(images) * width + GAP * (len(images) - 1), height + band), BACKGROUND)
    draw = ImageDraw.Draw(strip)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        left = i * (width + GAP)
        panel = image.convert("RGB")
        if panel.size != (width, height):  # e.g. one panel retried smaller after running out of memory
            panel = panel.resize((width, height), Image.Resampling.LANCZOS)
        strip.paste(panel, (left, band))
        font = _font(draw, label, band, width)
        draw.text((left + width / 2, band / 2), label, fill=INK, font=font, anchor="mm")
    return strip


def compose_triptych(
    first: Image.Image | None, frames: Sequence[tuple[int, bytes]], final: Image.Image, steps: int
) -> Image.Image:
    """Iteration 0, the middle of the run and the end, at the painting's size, labelled with the steps."""
    if first is not None:
        start = (0, first)
    elif frames:
        start = (frames[0][0], _open(frames[0][1]))
    else:
        start = (steps, final)
    middle = (steps // 2, final)
    if frames:
        step, data = min(frames, key=lambda f: abs(f[0] - steps // 2))
        middle = (step, _open(data))
    chosen = [start, middle, (steps, final)]
    return compose_strip(
        [image.resize(final.size, Image.Resampling.LANCZOS) for _, image in chosen],
        [str(step) for step, _ in chosen],
    )


def encode_animation(first: Image.Image | None, frames: Sequence[Image.Image], final: Image.Image) -> bytes:
    """A looping GIF at one steady size (every scale's previews upscaled or downscaled to it), holding the
    end a little longer; every other frame is dropped until it fits ``ANIMATION_MAX_BYTES``."""
    scale = min(1.0, ANIMATION_SIDE / max(final.size))
    size = (max(1, round(final.width * scale)), max(1, round(final.height * scale)))
    pictures = [*([first] if first is not None else []), *frames, final]
    steady = [p.convert("RGB").resize(size, Image.Resampling.LANCZOS) for p in pictures]
    while True:
        data = _gif(steady)
        if len(data) <= ANIMATION_MAX_BYTES or len(steady) <= 2:
            return data
        steady = [*steady[:-1:2], steady[-1]]


def _gif(frames: list[Image.Image]) -> bytes:
    buffer = io.BytesIO()
    durations = [FRAME_MS] * (len(frames) - 1) + [LAST_FRAME_MS]
    frames[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=frames[1:],
        duration=durations,
        loop=0,
        optimize=True,
    )
    return buffer.getvalue()


def _font(draw: ImageDraw.ImageDraw, label: str, band: int, width: int) -> Any:
    """Pillow's bundled font, as large as the band allows and small enough for the label to fit."""
    size = max(8, round(band * 0.7))
    font = ImageFont.load_default(size=size)
    while size > 8 and draw.textlength(label, font=font) > width - 4:
        size -= 1
        font = ImageFont.load_default(size=size)
    return font


def _open(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data)) as image:
        return image.convert("RGB")

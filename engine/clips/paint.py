"""A clip painted frame by frame, in two qualities.

``instant``: every frame through the sketch network (``engine.sketch``) with one style vector, computed
once for the clip, so the style does not drift from frame to frame; seconds for a short clip on the CPU.

``painted``: Gatys per frame (``engine.api``), each frame's optimization warm-started from the previous
frame's painting carried along the motion between the two source frames (``engine.clips.motion``): the
initialization half of Ruder, Dosovitskiy and Brox, "Artistic style transfer for videos" (2016). From such
a start the optimizer only has to fix what moved, in few steps, and keeps the strokes where they were
instead of inventing new ones each frame, which is what makes a naive per-frame painting flicker. Pixels
that came into view start from the frame itself. The first frame gets a full budget; the others
``next_steps`` at the final size. On a GPU, ``batch_size`` frames share each optimization
(``Engine``'s batched run), each started from the last painted frame carried along the motion to it.

Both then ``steadied`` each frame: blended with the last one carried along, where the source's own motion
explains the frame (the soft form of Ruder et al.'s consistency mask). Their temporal loss would need the
objective to know the last frame; this filter gets much of its effect for a few array operations
(docs/benchmarks.md, "Clips").

Both take the callbacks ``Engine.stylize`` takes: ``progress`` hears frames done (``Progress.step`` of
``total_steps`` frames), and ``should_cancel`` is asked between frames and, for ``painted``, at every
optimizer step, so a cancel stops a clip mid-frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine import devices
from engine.api import Engine, to_pil
from engine.clips.media import Clip
from engine.clips.motion import STILL, Motion, estimate, warp
from engine.errors import Cancelled, OutOfMemoryError
from engine.images import encode_image
from engine.protocol import Progress, StyleSettings, StyleSource, StylizeRequest
from engine.sketch import Sketcher, SketchStyle, _keep_colors, style_mix

DEFAULT_BATCH_ACCELERATED = 8  # frames per optimization on a GPU; 1 on the CPU (nothing to share there)
STARTS = ("carried", "previous", "frame")
DEFAULT_STEADY = 0.5  # docs/benchmarks.md, "Clips": compensated flicker about 40% lower on the test pan
STEADY_TOLERANCE = 0.08  # a source residue (0..1) this large keeps about a third of the steady weight


@dataclass(frozen=True)
class PaintedPlan:
    """The optimizer's budget per frame: the first from the photo, the rest from the last painting."""

    first_steps: int = 40  # like draft's first scale: the picture composed
    next_steps: int = 12  # from the last painting, enough to follow the motion (docs/benchmarks.md, "Clips")
    # Where frames after the first start: "carried" (the last painting moved along the motion), "previous"
    # (the last painting as it was) or "frame" (each from its own frame with the first frame's budget: the
    # naive per-frame painting, for comparison).
    start: str = "carried"
    # With "carried": how much of the last painting, carried along, each new painting keeps where the
    # source's own motion explains the frame (``steadied``: a temporal filter along the motion; 0: none).
    steady: float = DEFAULT_STEADY

    def __post_init__(self) -> None:
        if self.first_steps < 1 or self.next_steps < 1:
            raise ValueError("each frame needs at least one step")
        if not 0.0 <= self.steady < 1.0:
            raise ValueError("steady must be at least 0 and below 1")
        if self.start not in STARTS:
            raise ValueError(f"start must be one of {', '.join(STARTS)}")


def instant(
    clip: Clip,
    sketcher: Sketcher,
    styles: Sequence[SketchStyle],
    *,
    strength: float | None = None,
    keep_colors: bool = False,
    steady: float = DEFAULT_STEADY,
    progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Clip:
    """Every frame sketched with one style vector: the paintings' blend, moved towards the clip's own
    style (its middle frame's) as ``strength`` asks, once for the whole clip; then ``steadied`` along the
    motion by ``steady`` (0: not at all), since the network answers a small change of its input with a
    new texture."""
    report = _Reporter(len(clip.frames), clip.size, progress)
    _check_cancel(should_cancel, 0)
    vector = sketcher.blend(styles)
    mix = style_mix(strength)
    if mix < 1.0:
        own = sketcher.style_vector(SketchStyle(clip.frames[len(clip.frames) // 2]))
        vector = (mix * vector + (1.0 - mix) * own).astype(np.float32)
    painted: list[Image.Image] = []
    frames = [f.convert("RGB") for f in clip.frames]
    for index, frame in enumerate(frames):
        _check_cancel(should_cancel, index)
        picture = sketcher._transform(frame, vector)  # the one vector, not one per frame
        if keep_colors:
            picture = _keep_colors(picture, frame)
        if steady > 0 and index > 0:
            motion = estimate(frames[index - 1], frame)
            picture = steadied(picture, painted[-1], frames[index - 1], frame, motion, steady)
        painted.append(picture)
        report(index + 1, picture)
    return Clip(painted, clip.fps, list(clip.notes))


def painted(
    clip: Clip,
    engine: Engine,
    styles: tuple[StyleSource, ...],
    settings: StyleSettings | None = None,
    *,
    plan: PaintedPlan | None = None,
    batch_size: int | None = None,
    progress: Callable[[Progress], None] | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Clip:
    """Every frame painted by Gatys at the clip's size with the user's ``settings`` (strength, colours,
    weights; their size, steps and start are the clip's), each warm-started from the previous painting.

    ``batch_size``: frames per optimization (default 1 on the CPU, ``DEFAULT_BATCH_ACCELERATED`` on a GPU).
    Raises ``Cancelled`` when asked to stop, and the engine's typed errors.
    """
    plan = plan or PaintedPlan()
    settings = settings or StyleSettings()
    accelerated = devices.is_accelerated(engine.device)
    batch_size = max(1, batch_size or (DEFAULT_BATCH_ACCELERATED if accelerated else 1))
    report = _Reporter(len(clip.frames), clip.size, progress)
    side = max(clip.size)
    base = settings.replace(
        quality="draft", size=side, output_format="png", preview_every=0, time_budget=None
    )
    first = base.replace(steps=plan.first_steps, multiscale=True)
    following = base.replace(steps=plan.next_steps, multiscale=False, init="content")
    frames = [f.convert("RGB") for f in clip.frames]
    follow = plan.start == "carried"
    motions = [STILL]  # motions[i]: frame i-1 to frame i, estimated a chunk at a time, after its cancel check
    _check_cancel(should_cancel, 0)
    (picture,) = _paint(engine, [_request(frames[0], styles, first)], [None], should_cancel)
    out = [picture]
    report(1, picture)
    index = 1
    while index < len(frames):
        chunk = list(range(index, min(index + batch_size, len(frames))))
        _check_cancel(should_cancel, index)
        motions += [estimate(frames[i - 1], frames[i]) if follow else STILL for i in chunk]
        starts: list[Image.Image | None] = [None] * len(chunk)
        if plan.start != "frame":
            carried = STILL
            for row, i in enumerate(chunk):  # each starts from the last painting, carried along to it
                carried = carried.then(motions[i])
                starts[row] = _carried(out[-1], carried, frames[i])
        frame_settings = first if plan.start == "frame" else following
        requests = [_request(frames[i], styles, frame_settings) for i in chunk]
        for i, picture in zip(chunk, _paint(engine, requests, starts, should_cancel), strict=True):
            if follow and plan.steady > 0:
                picture = steadied(picture, out[-1], frames[i - 1], frames[i], motions[i], plan.steady)
            out.append(picture)
        index = chunk[-1] + 1
        report(index, out[-1])
    budget = (
        f"{plan.first_steps} steps a frame"
        if plan.start == "frame"
        else (f"{plan.first_steps} steps, then {plan.next_steps} a frame from the last painting")
    )
    notes = [*clip.notes, f"painted frame by frame: {budget}"]
    return Clip(out, clip.fps, notes)


def steadied(
    painting: Image.Image,
    previous: Image.Image,
    previous_frame: Image.Image,
    frame: Image.Image,
    motion: Motion,
    amount: float,
) -> Image.Image:
    """``painting`` blended with ``previous`` carried along ``motion``: by ``amount`` where the source frame
    is its previous frame carried along (the motion explains it), fading to none where it is not (things
    that moved on their own, light that changed) and where the carried painting has no pixels.

    The weight is the consistency mask of Ruder et al. made soft: ``exp(-(residue / STEADY_TOLERANCE)^2)``
    of the source's own per-pixel residue.
    """
    carried, inside = warp(previous, motion)
    source_carried, _ = warp(previous_frame, motion)
    residue = (
        np.abs(np.asarray(frame, np.float32) - np.asarray(source_carried, np.float32)).mean(axis=2) / 255
    )
    weight = amount * inside * np.exp(-((residue / STEADY_TOLERANCE) ** 2))
    mixed = weight[..., None] * np.asarray(carried, np.float32) + (1 - weight[..., None]) * np.asarray(
        painting, np.float32
    )
    return Image.fromarray(np.clip(mixed + 0.5, 0, 255).astype(np.uint8), "RGB")


def _carried(previous: Image.Image, motion: Motion, frame: Image.Image) -> Image.Image:
    """The last painting moved to where the picture went; what came into view, from the frame."""
    moved, inside = warp(previous, motion)
    if inside.all():
        return moved
    mask = Image.fromarray(np.where(inside, 255, 0).astype(np.uint8), "L")
    return Image.composite(moved, frame, mask)


def _request(frame: Image.Image, styles: tuple[StyleSource, ...], settings: StyleSettings) -> StylizeRequest:
    return StylizeRequest(encode_image(frame, "png"), styles, settings)


def _paint(
    engine: Engine,
    requests: list[StylizeRequest],
    starts: Sequence[Image.Image | None],
    should_cancel: Callable[[], bool] | None,
) -> list[Image.Image]:
    """The requests' paintings, optimized together, each from its start (``None``: the settings' own).

    The engine's requests have no field for a start picture, so the prepared jobs get theirs the way
    ``init="sketch"`` gives one (``_Job.start``); see the lead's request in the coord log for a public seam.
    """
    jobs = []
    for request, start in zip(requests, starts, strict=True):
        job = engine._prepare(request, None, should_cancel)
        if start is not None:
            job.start = start
            job.settings = job.settings.replace(init="sketch")
        jobs.append(job)
    try:
        outcomes = engine._run(jobs)
    except Exception as err:
        if not devices.is_out_of_memory(err):
            raise
        engine._free_memory()
        if len(jobs) == 1:
            raise OutOfMemoryError(f"out of memory painting a {requests[0].settings.size} px frame") from err
        return [
            p
            for request, start in zip(requests, starts, strict=True)
            for p in _paint(engine, [request], [start], should_cancel)
        ]
    pictures = []
    for outcome in outcomes:
        if isinstance(outcome, Cancelled):
            raise outcome
        pictures.append(to_pil(outcome[0]))
    return pictures


def _check_cancel(should_cancel: Callable[[], bool] | None, done: int) -> None:
    if should_cancel is not None and should_cancel():
        raise Cancelled(f"cancelled after {done} frames")


class _Reporter:
    """Frames done, in ``Engine.stylize``'s ``Progress`` (one scale; a step is a frame), with a preview of
    the latest frame."""

    def __init__(
        self, total: int, size: tuple[int, int], progress: Callable[[Progress], None] | None
    ) -> None:
        self.total = total
        self.size = size
        self.progress = progress
        self.started = time.monotonic()

    def __call__(self, done: int, latest: Image.Image) -> None:
        if self.progress is None:
            return
        elapsed = time.monotonic() - self.started
        self.progress(
            Progress(
                step=done,
                total_steps=self.total,
                scale=1,
                scales=1,
                width=self.size[0],
                height=self.size[1],
                losses={},
                elapsed=elapsed,
                eta=elapsed / done * (self.total - done) if done else None,
                preview=encode_image(latest, "jpeg", jpeg_quality=80),
            )
        )

"""The engine's entry point: ``Engine.stylize(request) -> result``.

An ``Engine`` is the per-process context (device, weights, the painting store and the statistics cache);
``stylize`` is a pure function of the request given that context. Workers build one Engine and keep it,
so the model loads once per process.

One run, top to bottom:
1. decode and validate the photo and the paintings (``images``), resolve presets (``style_store``);
2. plan the scales for the quality tier (``schedule``);
3. per scale: targets from VGG (``vgg``, ``style_stats``), then optimize the pixels (``optimize``),
   warm-started from the previous scale;
4. put the photo's colours back if asked (``color``), encode, summarize.

The ``instant`` tier skips 2-4: its result is the feed-forward sketch of ``engine.sketch`` (onnxruntime,
on the CPU). ``init="sketch"`` makes that sketch once per job and starts step 3 from it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine import color, devices
from engine.canvas import Canvas
from engine.catalog import (
    DEFAULT_DEEP_STYLE_WEIGHT,
    Catalog,
    Preset,
    blended_default,
    default_layer_weights,
    load_catalog,
)
from engine.errors import Cancelled, OutOfMemoryError, StylebotError
from engine.images import (
    DEFAULT_MAX_PIXELS,
    decode_image,
    encode_image,
    fit_within,
    image_digest,
    resize_to,
)
from engine.losses import StyleTransferObjective, blend_grams, gram_matrix
from engine.optimize import StepInfo, StopScale, optimize
from engine.progress import ProgressTracker
from engine.protocol import (
    DEFAULT_STRENGTH,
    DEFAULT_STYLE_LAYERS,
    DEFAULT_STYLE_SCALE,
    LAYER_NAMES,
    Progress,
    StyleSettings,
    StyleSource,
    StylizeRequest,
    StylizeResult,
    strength_multiplier,
)
from engine.schedule import TIERS, Scale, plan
from engine.settings import SKETCH_CACHE_FOLDER, EngineSettings
from engine.style_stats import DEFAULT_MAX_BYTES as DEFAULT_STATS_BYTES
from engine.style_stats import StyleStatsCache, stats_key
from engine.style_store import DEFAULT_DEADLINE as DEFAULT_FETCH_SECONDS
from engine.style_store import StyleStore
from engine.vgg import feature_extractor

if TYPE_CHECKING:
    from engine.sketch import Sketcher

log = logging.getLogger(__name__)

CONVERGENCE_TOLERANCE = 1e-4  # stop a scale when the loss improves by less than 0.01% per step
OOM_SHRINK = 0.75
MIN_RETRY_SIDE = 128
MIN_STYLE_SIDE = 64
MAX_PADDING = 0.25  # share of a batch's canvas that may be padding (bench/engine.py, the batch section)
# The network's passes: fp32; bf16 (autocast on CUDA, or on a CPU with native bf16 dot products; the image,
# the Gram matrices, the losses and the optimizer's state stay float32); auto (``devices.choose_precision``:
# bf16 where the CPU has it natively and it times faster, else fp32); fp64 for verification: it makes a
# batched run match single runs to the last bit that survives 8-bit output.
PRECISION_PASS_SIZE = (192, 256)  # auto times one forward and backward pass at this size per candidate
# init="sketch": the sketch is made at most this large, then resized to the first scale (near 128 px with
# multiscale); only the optimization's own last scales need more detail than that, and they make it.
SKETCH_START_SIDE = 512
SKETCH_DEVICE = "cpu"  # onnxruntime's CPU provider, whatever device the optimization uses


@dataclass(frozen=True)
class _Style:
    image: Image.Image
    digest: str
    weight: float
    preset: Preset | None


@dataclass
class _Job:
    """One request, decoded and sized: all a run needs besides the model."""

    content: Image.Image
    styles: list[_Style]
    settings: StyleSettings
    side: int
    notes: list[str]
    started: float
    progress: Callable[[Progress], None] | None
    should_cancel: Callable[[], bool] | None
    start: Image.Image | None = None  # init="sketch": this job's sketch, made once (``Engine._prepare``)
    accelerated: bool = False  # on a GPU: the tier's size and budget for accelerators

    @property
    def instant(self) -> bool:
        """The result is the sketch: no optimization at all."""
        return not TIERS[self.settings.quality].optimized

    def plan(self) -> list[Scale]:
        s = self.settings
        tier = TIERS[s.quality]
        return plan(
            tier, self.side, accelerated=self.accelerated, multiscale=s.multiscale, total_steps=s.steps
        )

    def batch_key(self) -> tuple[object, ...]:
        """Jobs with equal keys can share one optimization: the same optimizer, schedule and content layers.

        Everything else may differ per image: the photo (and its shape: ``engine.canvas``), the paintings,
        weights, style layers and their weights, colours, start, time budget and cancel; each image keeps the
        trajectory it would have alone.
        """
        s = self.settings
        return (s.optimizer, tuple(self.plan()), s.content_layers)

    def final_size(self) -> tuple[int, int]:
        return fit_within(*self.content.size, self.plan()[-1].side)


class Engine:
    def __init__(
        self,
        *,
        device: str = "auto",
        weights: str = "caffe",
        pooling: str = "max",
        precision: str = "fp32",
        styles_dir: Path = Path("data/styles"),
        stats_dir: Path | None = None,
        stats_max_bytes: int = DEFAULT_STATS_BYTES,
        styles_fetch_seconds: float = DEFAULT_FETCH_SECONDS,
        output_max_side: int = 1024,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
        threads: int | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        if precision not in devices.PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(devices.PRECISIONS)}")
        self.device = devices.resolve_device(device)
        devices.prepare(self.device, threads=threads)
        self.weights = weights
        self.pooling = pooling
        self.dtype = torch.float64 if precision == "fp64" else torch.float32  # the image and all statistics
        choice = devices.choose_precision(
            precision, self.device, time_pass=self._pass_seconds, cache_dir=stats_dir
        )
        self.precision = choice.precision  # what the passes run in: fp32, bf16 or fp64
        self.precision_choice = choice
        log.info("network passes in %s on %s (%s)", self.precision, self.device, choice.reason)
        self.output_max_side = output_max_side
        self.max_image_pixels = max_image_pixels
        self.catalog = catalog or load_catalog()
        self.store = StyleStore(styles_dir, self.catalog, deadline=styles_fetch_seconds)
        self.stats = StyleStatsCache(stats_dir, stats_max_bytes)
        self.tuning = devices.ConvTuning(self.device)
        self.threads = threads
        self._sketch_dir = stats_dir / SKETCH_CACHE_FOLDER if stats_dir is not None else None
        self._sketcher: Sketcher | None = None
        self._sketcher_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: EngineSettings, **overrides: object) -> Engine:
        options: dict[str, object] = {
            "device": settings.engine_device,
            "weights": settings.engine_weights,
            "styles_dir": settings.styles_dir,
            "stats_dir": settings.style_cache_dir,
            "stats_max_bytes": int(settings.style_cache_max_mb * 2**20),
            "styles_fetch_seconds": settings.styles_fetch_seconds,
            "output_max_side": settings.output_max_side,
            "max_image_pixels": settings.max_image_pixels,
            "threads": settings.engine_threads,
            "precision": settings.engine_precision,
        }
        return cls(**{**options, **overrides})  # type: ignore[arg-type]

    @property
    def device_name(self) -> str:
        return devices.describe(self.device)

    @property
    def sketcher(self) -> Sketcher:  # engine.sketch loads here: a run without a sketch never imports it
        """The sketch networks (``engine.sketch``), made on first use: most runs never need them. Style
        vectors are cached beside the style statistics."""
        with self._sketcher_lock:
            if self._sketcher is None:
                from engine.sketch import Sketcher

                self._sketcher = Sketcher(self._sketch_dir, threads=self.threads)
            return self._sketcher

    def load_model(self, last_layer: str = "conv5_1") -> None:
        """Load the weights now, so the first job does not pay for it."""
        feature_extractor(self.weights, str(self.device), last_layer, self.pooling, self.dtype)

    def _pass_seconds(self, precision: str) -> float:
        """One forward and backward pass of a step's shape (VGG to conv5_1, the Gram matrices) in
        ``precision``: what ``precision="auto"`` compares."""
        extractor = feature_extractor(self.weights, str(self.device), "conv5_1", self.pooling, self.dtype)
        generator = torch.Generator().manual_seed(0)
        image = torch.rand(1, 3, *PRECISION_PASS_SIZE, generator=generator).to(self.device, self.dtype)
        image.requires_grad_(True)
        started = time.perf_counter()
        with devices.autocast(self.device, precision):
            features = extractor(image, DEFAULT_STYLE_LAYERS)
        total = torch.stack([gram_matrix(f).mean() for f in features.values()]).sum()
        total.backward()
        return time.perf_counter() - started

    def stylize(
        self,
        request: StylizeRequest,
        *,
        progress: Callable[[Progress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> StylizeResult:
        """Paint the request's photo in its styles. Raises the typed errors of ``engine.errors``."""
        return self._stylize_job(self._prepare(request, progress, should_cancel))

    def _stylize_job(self, job: _Job) -> StylizeResult:
        """One prepared job: its sketch (``instant``), or its optimization, retried smaller when the device
        runs out of memory."""
        if job.instant:
            return self._instant(job)
        while True:
            try:
                (outcome,) = self._run([job])
                assert not isinstance(outcome, Cancelled), "a single job's cancel is raised"
                image, steps, losses = outcome
                break
            except Exception as err:
                if not devices.is_out_of_memory(err):
                    raise
            # Outside the except block, so the failed attempt's tensors are no longer referenced.
            self._free_memory()
            smaller = int(job.side * OOM_SHRINK)
            if smaller < MIN_RETRY_SIDE:
                raise OutOfMemoryError(f"out of memory on {self.device} even at {job.side} px")
            log.warning("out of memory at %d px on %s; retrying at %d px", job.side, self.device, smaller)
            job.notes.append(f"out of memory at {job.side} px; made at {smaller} px instead")
            job.side = smaller
        return self._result(job, image, steps, losses)

    def stylize_batch(
        self,
        requests: list[StylizeRequest],
        *,
        progress: list[Callable[[Progress], None] | None] | None = None,
        should_cancel: list[Callable[[], bool] | None] | None = None,
    ) -> list[StylizeResult | StylebotError]:
        """Paint several photos, sharing each forward and backward pass among the jobs that allow it.

        Jobs with the same optimizer, schedule and content layers (``batch_key``) are optimized together,
        photos of different shapes on one padded canvas (``engine.canvas``) while it wastes at most
        ``MAX_PADDING`` of the pixels. Every loss is per image and both optimizers keep each image's own
        state, so each image follows the trajectory it would follow alone; each stops on its own (converged,
        out of time, cancelled) and the batch goes on with the rest. Each item comes back as its result or as
        the error it alone ran into (a bad image, a cancel). Instant jobs are sketched one by one, never in a
        batch: there is no pass to share.
        """
        progress = progress or [None] * len(requests)
        should_cancel = should_cancel or [None] * len(requests)
        results: list[StylizeResult | StylebotError | None] = [None] * len(requests)
        jobs: dict[int, _Job] = {}
        for index, request in enumerate(requests):
            try:
                job = self._prepare(request, progress[index], should_cancel[index])
                if job.instant:
                    results[index] = self._instant(job)
                else:
                    jobs[index] = job
            except StylebotError as err:
                results[index] = err
        for group in _groups(jobs):
            if len(group) > 1:
                try:
                    outcomes = self._run([jobs[i] for i in group])
                except Exception as err:
                    if not devices.is_out_of_memory(err):
                        raise
                    log.warning("out of memory for a batch of %d; painting them one by one", len(group))
                else:
                    for index, outcome in zip(group, outcomes, strict=True):
                        results[index] = (
                            outcome if isinstance(outcome, Cancelled) else self._result(jobs[index], *outcome)
                        )
                    continue
                finally:
                    self._free_memory()
            for index in group:  # alone, or one by one after the batch ran out of memory
                try:
                    results[index] = self._stylize_job(jobs[index])
                except StylebotError as err:
                    results[index] = err
        return [r for r in results if r is not None]

    def _prepare(
        self,
        request: StylizeRequest,
        progress: Callable[[Progress], None] | None,
        should_cancel: Callable[[], bool] | None,
    ) -> _Job:
        """Decode and check the images and settle the size: everything a run needs but the model (and, for
        ``init="sketch"``, the start: one sketch per job, whichever way the job is then run)."""
        started = time.monotonic()
        content = decode_image(request.content, max_pixels=self.max_image_pixels)
        styles = [self._load_style(source) for source in request.styles]
        side, notes = self._target_side(content, request.settings)
        job = _Job(content, styles, request.settings, side, notes, started, progress, should_cancel)
        job.accelerated = devices.is_accelerated(self.device)
        if request.settings.init == "sketch" and not job.instant:
            job.start = self._sketch(job, min(side, SKETCH_START_SIDE))
        return job

    def _sketch(self, job: _Job, side: int) -> Image.Image:
        """The job's photo as the sketch network paints it in the job's styles (their weights make the
        blend), at the job's strength (the user's, else the paintings' own) and, when a colour mode is set,
        with the photo's colours. Raises ``SketchUnavailableError`` when the networks cannot be loaded."""
        from engine.sketch import SketchStyle

        strength, _ = _preset_defaults(job.settings, job.styles)
        return self.sketcher.sketch(
            job.content,
            [SketchStyle(image=s.image, weight=s.weight, digest=s.digest) for s in job.styles],
            side=side,
            strength=strength,
            keep_colors=job.settings.preserve_colors is not None,
        )

    def _instant(self, job: _Job) -> StylizeResult:
        """The ``instant`` tier: the sketch at the job's side is the result (no steps, no losses), with one
        final progress report. A cancel is honoured before it starts; once started, it is done in a moment."""
        if job.should_cancel is not None and job.should_cancel():
            raise Cancelled("cancelled before the sketch")
        settings = job.settings
        if settings.steps is not None:
            job.notes.append(f"the instant tier makes no optimizer steps: steps={settings.steps} ignored")
        from engine.sketch import MAX_SIDE

        if job.side > MAX_SIDE:
            job.notes.append(f"sketched at {MAX_SIDE} px and scaled up to {job.side} px")
        picture = self._sketch(job, job.side)
        if job.progress is not None:
            preview = encode_image(picture, "jpeg", jpeg_quality=85) if settings.preview_every else None
            job.progress(
                Progress(
                    step=1,  # one unit of work, done: the report's fraction is 1
                    total_steps=1,
                    scale=1,
                    scales=1,
                    width=picture.width,
                    height=picture.height,
                    losses={},
                    elapsed=time.monotonic() - job.started,
                    eta=0.0,
                    preview=preview,
                )
            )
        return self._summary(job, picture, 0, {}, SKETCH_DEVICE)

    def _result(self, job: _Job, image: torch.Tensor, steps: int, losses: dict[str, float]) -> StylizeResult:
        return self._summary(job, to_pil(image), steps, losses, str(self.device))

    def _summary(
        self, job: _Job, picture: Image.Image, steps: int, losses: dict[str, float], device: str
    ) -> StylizeResult:
        """The result of any run, optimized or sketched: the picture encoded as asked, and what it took."""
        return StylizeResult(
            image=encode_image(picture, job.settings.output_format),
            format=job.settings.output_format,
            width=picture.width,
            height=picture.height,
            seconds=time.monotonic() - job.started,
            steps=steps,
            device=device,
            losses=losses,
            notes=tuple(job.notes),
        )

    def _free_memory(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def _load_style(self, source: StyleSource) -> _Style:
        preset = None
        if source.preset is not None:
            preset = self.catalog.get(source.preset)
            data = self.store.ensure(preset.id).read_bytes()
        else:
            assert source.image is not None
            data = source.image
        image = decode_image(data, max_pixels=self.max_image_pixels)
        return _Style(image=image, digest=image_digest(data), weight=source.weight, preset=preset)

    def _target_side(self, content: Image.Image, settings: StyleSettings) -> tuple[int, list[str]]:
        """The tier's side (or the asked size), never larger than the photo unless asked, and capped."""
        notes: list[str] = []
        tier_side = TIERS[settings.quality].side(devices.is_accelerated(self.device))
        side = settings.size or min(tier_side, max(content.size))
        if side > self.output_max_side:
            notes.append(f"size capped at {self.output_max_side} px by OUTPUT_MAX_SIDE")
            side = self.output_max_side
        return side, notes

    def _run(self, jobs: list[_Job]) -> list[tuple[torch.Tensor, int, dict[str, float]] | Cancelled]:
        """Optimize one job, or a batch of jobs that share a ``batch_key``, through all the scales.

        The scales are shared; everything else (photo and its size, paintings, strength, colours, seed, time
        budget) is kept per image. An image that stops early at a scale (converged, out of time) rejoins the
        batch at the next; a batch item whose user cancels comes back as ``Cancelled`` and leaves for good,
        while the others carry on; a single job raises it.
        """
        scales = jobs[0].plan()
        trackers = [self._tracker(job, scales) for job in jobs]
        steps_done = _BatchSteps(len(jobs))
        images: dict[int, torch.Tensor] = {}  # each image so far, at its own size
        photos: dict[int, torch.Tensor] = {}
        steps = [0] * len(jobs)
        losses: list[dict[str, float]] = [{} for _ in jobs]
        for index, scale in enumerate(scales):
            sizes = [fit_within(*job.content.size, scale.side) for job in jobs]
            live = steps_done.begin_scale(trackers, index, sizes)
            if not live:
                break
            canvas = Canvas(tuple(sizes[i] for i in live))
            for i in live:
                photos[i] = self._tensor(jobs[i].content.resize(sizes[i], Image.Resampling.LANCZOS))
            seen = [_as_seen(photos[i], jobs[i]) for i in live]
            objective = self._objective(
                [jobs[i] for i in live], [photos[i] for i in live], seen, scale.side, canvas
            )
            starts = [
                self._initial_image(jobs[i], s)
                if i not in images
                else F.interpolate(images[i], size=s.shape[-2:], mode="bicubic", align_corners=False)
                for i, s in zip(live, seen, strict=True)
            ]
            outcomes = optimize(
                canvas.pad(starts).clamp(0, 1).contiguous(),
                objective,
                optimizer=jobs[0].settings.optimizer,
                steps=scale.steps,
                tolerance=CONVERGENCE_TOLERANCE,
                on_step=steps_done,
                autocast=self._autocast,
                tuning=self.tuning,
            )
            for row, (i, outcome) in enumerate(zip(live, outcomes, strict=True)):
                if i in steps_done.cancelled:
                    continue
                images[i] = canvas.crop(outcome.image, row)
                steps[i] += outcome.steps
                losses[i] = outcome.losses
                trackers[i].end_scale(outcome.steps, outcome.losses, images[i])
        results: list[tuple[torch.Tensor, int, dict[str, float]] | Cancelled] = []
        for i, job in enumerate(jobs):
            if i in steps_done.cancelled:
                results.append(steps_done.cancelled[i])
                continue
            painted = images[i]
            if job.settings.preserve_colors == "luminance":
                painted = color.restore_chroma(painted, photos[i])  # the photo's chroma, final size
            results.append((painted, steps[i], losses[i]))
        return results

    def _tracker(self, job: _Job, scales: list[Scale]) -> ProgressTracker:
        return ProgressTracker(
            scales,
            aspect=job.content.width / job.content.height,
            progress=job.progress,
            should_cancel=job.should_cancel,
            time_budget=job.settings.time_budget,
            preview_every=job.settings.preview_every,
            make_preview=_preview_maker(job.settings.preserve_colors),
        )

    def _objective(
        self,
        jobs: list[_Job],
        photos: list[torch.Tensor],
        seen: list[torch.Tensor],
        side: int,
        canvas: Canvas,
    ) -> StyleTransferObjective:
        """The loss at one scale: each image against its own photo and its own (blend of) paintings, at its
        own style layers.

        The style term runs over the union of the images' style layers, in the network's order (each image's
        own layers keep their order, so its sum is the one it makes alone); an image weighs a layer it does
        not use by zero, against a zero target there.
        """
        settings = jobs[0].settings
        layer_weights = [_layer_weights(job.settings, job.styles) for job in jobs]
        # A layer every image weighs zero adds nothing but work: it is left out, with the convolutions only it
        # needs (conv4_3..conv5_1, a fifth of a step, where the deep style weight is 0: engine.catalog).
        used = {k for w in layer_weights for k, v in w.items() if v > 0} or {
            k for w in layer_weights for k in w
        }
        style_layers = sorted(used, key=LAYER_NAMES.index)
        deepest = max((*settings.content_layers, *style_layers), key=LAYER_NAMES.index)
        extractor = feature_extractor(self.weights, str(self.device), deepest, self.pooling, self.dtype)
        masks = canvas.masks(self.device, self.dtype)
        with torch.no_grad():  # targets in full precision, whatever the steps run in: one pass per scale
            features = extractor(canvas.pad(seen), settings.content_layers, masks.levels if masks else None)
        style_targets, style_weights = [], []
        for job, photo in zip(jobs, photos, strict=True):
            strength, style_scale = _preset_defaults(job.settings, job.styles)
            grams = [self._style_grams(s, side, style_scale, job, photo) for s in job.styles]
            style_targets.append(blend_grams(grams, [s.weight for s in job.styles]))
            style_weights.append(job.settings.style_weight * strength_multiplier(strength))
        unused = {k: torch.zeros_like(next(t[k] for t in style_targets if k in t)) for k in style_layers}
        return StyleTransferObjective(
            extractor,
            {k: v.to(self.dtype) for k, v in features.items()},
            {k: torch.stack([t.get(k, unused[k]) for t in style_targets]) for k in style_layers},
            content_weight=self._per_image([job.settings.content_weight for job in jobs]),
            style_weight=self._per_image(style_weights),
            tv_weight=self._per_image([job.settings.tv_weight for job in jobs]),
            style_layer_weights={
                k: self._per_image([w.get(k, 0.0) for w in layer_weights]) for k in style_layers
            },
            masks=masks,
        )

    def _per_image(self, values: list[float]) -> torch.Tensor | float:
        """A loss weight for each image of a batch (a plain number when all are the same)."""
        if len(set(values)) == 1:
            return values[0]
        return torch.tensor(values, device=self.device, dtype=self.dtype)

    def _style_grams(
        self,
        style: _Style,
        side: int,
        style_scale: float,
        job: _Job,
        photo: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """The painting's Gram matrices at every style layer of the job (those weighed zero too, so that a
        cached entry serves any weights) when seen at ``style_scale`` times the photo's size.

        Never larger than the painting itself: upscaling adds blur, not strokes. Only plain transfers are
        cached: the colour modes adapt the painting to each photo.
        """
        settings, mode = job.settings, job.settings.preserve_colors
        style_side = max(MIN_STYLE_SIDE, min(round(side * style_scale), max(style.image.size)))
        width, height = fit_within(style.image.width, style.image.height, style_side)
        key = stats_key(
            style.digest,
            weights=self.weights,
            pooling=self.pooling,
            width=width,
            height=height,
            layers=settings.style_layers,
            mode="rgb",
        )
        cacheable = mode is None and self.dtype == torch.float32  # the cache keeps float32 statistics
        if cacheable and (cached := self.stats.get(key, self.device)) is not None:
            return cached
        painting = self._tensor(resize_to(style.image, style_side))
        if mode == "luminance":
            painting = color.match_luminance(painting, photo)
        elif mode == "histogram":
            painting = color.match_color_histogram(painting, photo)
        deepest = max(settings.style_layers, key=LAYER_NAMES.index)
        extractor = feature_extractor(self.weights, str(self.device), deepest, self.pooling, self.dtype)
        with torch.no_grad():  # full precision, so the cache holds one set of statistics for every precision
            features = extractor(painting, settings.style_layers)
            grams = {layer: gram_matrix(f)[0] for layer, f in features.items()}
        if cacheable:
            self.stats.put(key, grams)
        return grams

    def _initial_image(self, job: _Job, photo: torch.Tensor) -> torch.Tensor:
        """Where the first scale starts, at the size of ``photo`` (the photo as the network sees it)."""
        settings = job.settings
        if settings.init == "content":
            return photo.clone()
        if settings.init == "sketch":
            assert job.start is not None, "a sketch start is made in _prepare"
            height, width = photo.shape[-2:]
            start = self._tensor(job.start.resize((width, height), Image.Resampling.LANCZOS))
            return color.luminance(start) if settings.preserve_colors == "luminance" else start
        if settings.init == "gray":
            return torch.full_like(photo, 0.5)
        generator = torch.Generator().manual_seed(settings.seed)
        return torch.rand(photo.shape, generator=generator, dtype=self.dtype).to(self.device)

    def _tensor(self, image: Image.Image) -> torch.Tensor:
        array = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
        return array.permute(2, 0, 1).unsqueeze(0).contiguous().to(self.device, self.dtype).div_(255.0)

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        return devices.autocast(self.device, self.precision)


class _BatchSteps:
    """The optimizer's per-step callback for a batch: each image's own tracker sees its own slice, and each
    image stops on its own (its time budget, its cancel).

    A cancelled image comes back as ``Cancelled`` and takes no further part; a single job's cancel is
    raised, as ``stylize`` promises.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.live: list[int] = []  # the images of this scale's batch, by row
        self.callbacks: dict[int, Callable[[StepInfo], None]] = {}
        self.cancelled: dict[int, Cancelled] = {}

    def begin_scale(
        self, trackers: list[ProgressTracker], index: int, sizes: list[tuple[int, int]]
    ) -> list[int]:
        """Start scale ``index`` for every image not cancelled; return those (the rows of the batch)."""
        self.callbacks = {}
        for item, tracker in enumerate(trackers):
            if item in self.cancelled:
                continue
            with self._cancellable(item):
                self.callbacks[item] = tracker.begin_scale(index, *sizes[item])
        self.live = list(self.callbacks)
        return self.live

    def __call__(self, info: StepInfo) -> set[int]:
        """Report each image's step; return the rows that stop now."""
        stops = set()
        for row in info.items:
            item = self.live[row]
            try:
                with self._cancellable(item):
                    self.callbacks[item](info.item(row))
            except StopScale:
                stops.add(row)
            if item in self.cancelled:
                stops.add(row)
        return stops

    @contextlib.contextmanager
    def _cancellable(self, item: int) -> Iterator[None]:
        try:
            yield
        except Cancelled as err:
            if self.size == 1:
                raise
            self.cancelled[item] = err


def _groups(jobs: dict[int, _Job]) -> list[list[int]]:
    """Jobs that can share a run, in order: the same ``batch_key``, and photo shapes that fit one canvas
    with at most ``MAX_PADDING`` of its pixels wasted at the final scale."""
    groups: list[list[int]] = []
    for index, job in jobs.items():
        for group in groups:
            sizes = tuple(jobs[i].final_size() for i in [*group, index])
            if jobs[group[0]].batch_key() == job.batch_key() and Canvas(sizes).waste() <= MAX_PADDING:
                group.append(index)
                break
        else:
            groups.append([index])
    return groups


def _as_seen(photo: torch.Tensor, job: _Job) -> torch.Tensor:
    """The photo as the network compares it: gray for luminance-only transfer."""
    return color.luminance(photo) if job.settings.preserve_colors == "luminance" else photo


def to_pil(image: torch.Tensor) -> Image.Image:
    array = image[0].detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(np.ascontiguousarray(array), "RGB")


def _preview_maker(mode: str | None) -> Callable[[torch.Tensor], bytes]:
    def make(image: torch.Tensor) -> bytes:
        picture = to_pil(image)
        if mode == "luminance":
            picture = picture.convert("L").convert("RGB")  # the chroma comes back at the end of the scale
        return encode_image(picture, "jpeg", jpeg_quality=85)

    return make


def _preset_defaults(settings: StyleSettings, styles: list[_Style]) -> tuple[float, float]:
    """Strength and style scale: the user's if set, else the paintings' own defaults (weighted), else ours."""
    blend = [(s.preset, s.weight) for s in styles]
    return (
        blended_default(settings.strength, blend, "strength", DEFAULT_STRENGTH),
        blended_default(settings.style_scale, blend, "style_scale", DEFAULT_STYLE_SCALE),
    )


def _layer_weights(settings: StyleSettings, styles: list[_Style]) -> dict[str, float]:
    """Per-layer style weights normalized to sum to one over the job's own layers, so they shape the style
    term but not its size. None set: the deep layers weigh the paintings' ``deep_style_weight`` (no faces
    painted onto buildings: ``engine.catalog.default_layer_weights``)."""
    layers, weights = settings.style_layers, settings.style_layer_weights
    if weights is None:
        layers = tuple(dict.fromkeys(layers))
        blend = [(s.preset, s.weight) for s in styles]
        deep = blended_default(None, blend, "deep_style_weight", DEFAULT_DEEP_STYLE_WEIGHT)
        weights = default_layer_weights(layers, deep)
    total = sum(weights) or 1.0
    return {k: w / total for k, w in zip(layers, weights, strict=True)}

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
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from engine import color, devices
from engine.catalog import Catalog, Preset, load_catalog
from engine.errors import OutOfMemoryError
from engine.images import DEFAULT_MAX_PIXELS, decode_image, encode_image, fit_within, resize_to
from engine.losses import StyleTransferObjective, blend_grams, gram_matrix
from engine.optimize import optimize
from engine.progress import ProgressTracker
from engine.protocol import (
    DEFAULT_STRENGTH,
    DEFAULT_STYLE_SCALE,
    LAYER_NAMES,
    Progress,
    StyleSettings,
    StyleSource,
    StylizeRequest,
    StylizeResult,
    strength_multiplier,
)
from engine.schedule import TIERS, plan
from engine.settings import EngineSettings
from engine.style_stats import StyleStatsCache, image_digest, stats_key
from engine.style_store import StyleStore
from engine.vgg import feature_extractor

log = logging.getLogger(__name__)

CONVERGENCE_TOLERANCE = 1e-4  # stop a scale when the loss improves by less than 0.01% per step
OOM_SHRINK = 0.75
MIN_RETRY_SIDE = 128
MIN_STYLE_SIDE = 64


@dataclass(frozen=True)
class _Style:
    image: Image.Image
    digest: str
    weight: float
    preset: Preset | None


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
        output_max_side: int = 1024,
        max_image_pixels: int = DEFAULT_MAX_PIXELS,
        threads: int | None = None,
        catalog: Catalog | None = None,
    ) -> None:
        if precision not in ("fp32", "bf16"):
            raise ValueError("precision must be fp32 or bf16")
        self.device = devices.resolve_device(device)
        devices.prepare(self.device, threads=threads)
        self.weights = weights
        self.pooling = pooling
        self.precision = precision
        self.output_max_side = output_max_side
        self.max_image_pixels = max_image_pixels
        self.catalog = catalog or load_catalog()
        self.store = StyleStore(styles_dir, self.catalog)
        self.stats = StyleStatsCache(stats_dir)

    @classmethod
    def from_settings(cls, settings: EngineSettings, **overrides: object) -> Engine:
        options: dict[str, object] = {
            "device": settings.engine_device,
            "weights": settings.engine_weights,
            "styles_dir": settings.styles_dir,
            "stats_dir": settings.style_cache_dir,
            "output_max_side": settings.output_max_side,
            "max_image_pixels": settings.max_image_pixels,
            "threads": settings.engine_threads,
        }
        return cls(**{**options, **overrides})  # type: ignore[arg-type]

    @property
    def device_name(self) -> str:
        return devices.describe(self.device)

    def load_model(self, last_layer: str = "conv5_1") -> None:
        """Load the weights now, so the first job does not pay for it."""
        feature_extractor(self.weights, str(self.device), last_layer, self.pooling)

    def stylize(
        self,
        request: StylizeRequest,
        *,
        progress: Callable[[Progress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> StylizeResult:
        """Paint the request's photo in its styles. Raises the typed errors of ``engine.errors``."""
        started = time.monotonic()
        settings = request.settings
        content = decode_image(request.content, max_pixels=self.max_image_pixels)
        styles = [self._load_style(source) for source in request.styles]
        side, notes = self._target_side(content, settings)
        while True:
            try:
                image, steps, losses = self._run(content, styles, settings, side, progress, should_cancel)
                break
            except Exception as err:
                if not devices.is_out_of_memory(err):
                    raise
            # Outside the except block, so the failed attempt's tensors are no longer referenced.
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            smaller = int(side * OOM_SHRINK)
            if smaller < MIN_RETRY_SIDE:
                raise OutOfMemoryError(f"out of memory on {self.device} even at {side} px")
            log.warning("out of memory at %d px on %s; retrying at %d px", side, self.device, smaller)
            notes.append(f"out of memory at {side} px; made at {smaller} px instead")
            side = smaller
        pil = to_pil(image)
        data = encode_image(pil, settings.output_format)
        return StylizeResult(
            image=data,
            format=settings.output_format,
            width=pil.width,
            height=pil.height,
            seconds=time.monotonic() - started,
            steps=steps,
            device=str(self.device),
            losses=losses,
            notes=tuple(notes),
        )

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

    def _run(
        self,
        content: Image.Image,
        styles: list[_Style],
        settings: StyleSettings,
        side: int,
        progress: Callable[[Progress], None] | None,
        should_cancel: Callable[[], bool] | None,
    ) -> tuple[torch.Tensor, int, dict[str, float]]:
        scales = plan(
            TIERS[settings.quality], side, multiscale=settings.multiscale, total_steps=settings.steps
        )
        mode = settings.preserve_colors
        layers = tuple(dict.fromkeys((*settings.content_layers, *settings.style_layers)))
        deepest = max(layers, key=LAYER_NAMES.index)
        extractor = feature_extractor(self.weights, str(self.device), deepest, self.pooling)
        strength, style_scale = _preset_defaults(settings, styles)
        layer_weights = _layer_weights(settings)
        tracker = ProgressTracker(
            scales,
            aspect=content.width / content.height,
            progress=progress,
            should_cancel=should_cancel,
            time_budget=settings.time_budget,
            preview_every=settings.preview_every,
            make_preview=_preview_maker(mode),
        )
        image: torch.Tensor | None = None
        steps, losses = 0, {}
        for index, scale in enumerate(scales):
            width, height = fit_within(content.width, content.height, scale.side)
            photo = self._tensor(content.resize((width, height), Image.Resampling.LANCZOS))
            seen = color.luminance(photo) if mode == "luminance" else photo
            with torch.no_grad(), self._autocast():
                content_targets = {k: v.float() for k, v in extractor(seen, settings.content_layers).items()}
            grams = [
                self._style_grams(s, scale.side, style_scale, mode, photo, extractor, settings)
                for s in styles
            ]
            objective = StyleTransferObjective(
                extractor,
                content_targets,
                blend_grams(grams, [s.weight for s in styles]),
                content_weight=settings.content_weight,
                style_weight=settings.style_weight * strength_multiplier(strength),
                tv_weight=settings.tv_weight,
                style_layer_weights=layer_weights,
            )
            if image is None:
                start = self._initial_image(settings, seen)
            else:
                start = F.interpolate(image, size=(height, width), mode="bicubic", align_corners=False).clamp(
                    0, 1
                )
            on_step = tracker.begin_scale(index, width, height)
            image, taken, losses = optimize(
                start.contiguous(),
                objective,
                optimizer=settings.optimizer,
                steps=scale.steps,
                tolerance=CONVERGENCE_TOLERANCE,
                on_step=on_step,
                autocast=self._autocast,
            )
            steps += taken
            tracker.end_scale(taken, losses, image)
        assert image is not None
        if mode == "luminance":
            image = color.restore_chroma(image, photo)  # the photo's chroma, at the final scale's size
        return image, steps, losses

    def _style_grams(
        self,
        style: _Style,
        side: int,
        style_scale: float,
        mode: str | None,
        photo: torch.Tensor,
        extractor: torch.nn.Module,
        settings: StyleSettings,
    ) -> dict[str, torch.Tensor]:
        """The painting's Gram matrices when seen at ``style_scale`` times the photo's size.

        Never larger than the painting itself: upscaling adds blur, not strokes. Only plain transfers are
        cached: the colour modes adapt the painting to each photo.
        """
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
        if mode is None and (cached := self.stats.get(key, self.device)) is not None:
            return cached
        painting = self._tensor(resize_to(style.image, style_side))
        if mode == "luminance":
            painting = color.match_luminance(painting, photo)
        elif mode == "histogram":
            painting = color.match_color_histogram(painting, photo)
        with torch.no_grad(), self._autocast():
            features = extractor(painting, settings.style_layers)
            grams = {layer: gram_matrix(f)[0] for layer, f in features.items()}
        if mode is None:
            self.stats.put(key, grams)
        return grams

    def _initial_image(self, settings: StyleSettings, photo: torch.Tensor) -> torch.Tensor:
        if settings.init == "content":
            return photo.clone()
        if settings.init == "gray":
            return torch.full_like(photo, 0.5)
        generator = torch.Generator().manual_seed(settings.seed)
        return torch.rand(photo.shape, generator=generator).to(self.device)

    def _tensor(self, image: Image.Image) -> torch.Tensor:
        array = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
        return array.permute(2, 0, 1).unsqueeze(0).contiguous().to(self.device).float().div_(255.0)

    def _autocast(self):
        return devices.autocast(self.device, self.precision)


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

    def resolve(user: float | None, attribute: str, fallback: float) -> float:
        if user is not None:
            return user

        def own(style: _Style) -> float:
            value = getattr(style.preset, attribute) if style.preset is not None else None
            return fallback if value is None else value

        return sum(s.weight * own(s) for s in styles) / sum(s.weight for s in styles)

    return (
        resolve(settings.strength, "strength", DEFAULT_STRENGTH),
        resolve(settings.style_scale, "style_scale", DEFAULT_STYLE_SCALE),
    )


def _layer_weights(settings: StyleSettings) -> dict[str, float] | None:
    """Per-layer style weights normalized to sum to one, so they shape the style term but not its size."""
    if settings.style_layer_weights is None:
        return None
    total = sum(settings.style_layer_weights) or 1.0
    return {k: w / total for k, w in zip(settings.style_layers, settings.style_layer_weights, strict=True)}

"""Plain data shared by the bot, the queue and the engine.

This module imports neither torch nor telegram, so the bot can build requests and read results cheaply.
Everything here can be turned into JSON-safe dicts (``to_dict``/``from_dict``) to cross a process or
network boundary: a local worker pipe or a Celery message.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

QUALITIES = ("instant", "draft", "normal", "high")  # instant: the sketch of engine/sketch.py, no optimization
INITS = ("content", "noise", "gray", "sketch")  # sketch: start from the instant tier's picture
OPTIMIZERS = ("lbfgs", "adam")
COLOR_MODES = ("luminance", "histogram")
OUTPUT_FORMATS = ("png", "jpeg")
FIGURES = ("strength", "layers", "forming")  # see engine/figures.py
LAYER_NAMES = (
    "conv1_1", "conv1_2",
    "conv2_1", "conv2_2",
    "conv3_1", "conv3_2", "conv3_3", "conv3_4",
    "conv4_1", "conv4_2", "conv4_3", "conv4_4",
    "conv5_1", "conv5_2", "conv5_3", "conv5_4",
)  # fmt: skip
DEFAULT_CONTENT_LAYERS = ("conv4_2",)
DEFAULT_STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")

# The raw weights. The losses are normalized (see engine/losses.py), so these numbers mean the same at
# every resolution; `strength` scales the style weight on top of them. Tuned in bench/tune.py.
DEFAULT_CONTENT_WEIGHT = 1.0
DEFAULT_STYLE_WEIGHT = 10.0
DEFAULT_TV_WEIGHT = 1e-3
DEFAULT_STRENGTH = 0.5
DEFAULT_STYLE_SCALE = 1.0


def strength_multiplier(strength: float) -> float:
    """Map the user's 0..1 strength onto a style-weight multiplier: 0.5 is 1x, each 1/6 step is ~x3.2."""
    return 10.0 ** (3.0 * (strength - 0.5))


@dataclass(frozen=True)
class StyleSettings:
    """Every knob of one stylization. ``None`` means "the preset's default, else the engine's"."""

    quality: str = "normal"
    size: int | None = None  # longest side of the output; None: the quality tier's
    strength: float | None = None  # 0..1, the content/style balance
    style_scale: float | None = None  # size of the painting's strokes relative to the photo
    preserve_colors: str | None = None  # None, "luminance" or "histogram"
    init: str = "content"
    optimizer: str = "lbfgs"
    steps: int | None = None  # total optimizer steps; None: the quality tier's budget
    time_budget: float | None = None  # seconds; the run stops early when they are spent
    seed: int = 0
    multiscale: bool = True  # coarse-to-fine: start near 128 px and grow to the target size
    content_weight: float = DEFAULT_CONTENT_WEIGHT
    style_weight: float = DEFAULT_STYLE_WEIGHT
    tv_weight: float = DEFAULT_TV_WEIGHT
    content_layers: tuple[str, ...] = DEFAULT_CONTENT_LAYERS
    style_layers: tuple[str, ...] = DEFAULT_STYLE_LAYERS
    style_layer_weights: tuple[float, ...] | None = None  # None: equal weights, as in the paper
    output_format: str = "png"
    preview_every: int = 0  # send a preview image with every N-th progress report; 0: never
    figure: str | None = None  # a figure of engine/figures.py instead of one painting (read by figures.run)

    def __post_init__(self) -> None:
        _check(self.quality in QUALITIES, f"quality must be one of {', '.join(QUALITIES)}")
        _check(self.size is None or 16 <= self.size <= 4096, "size must be between 16 and 4096 pixels")
        _check(self.strength is None or 0.0 <= self.strength <= 1.0, "strength must be between 0 and 1")
        _check(
            self.style_scale is None or 0.1 <= self.style_scale <= 4.0,
            "style scale must be between 0.1 and 4",
        )
        _check(
            self.preserve_colors is None or self.preserve_colors in COLOR_MODES,
            f"colour preservation must be one of {', '.join(COLOR_MODES)}",
        )
        _check(self.init in INITS, f"init must be one of {', '.join(INITS)}")
        _check(self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}")
        _check(self.steps is None or self.steps >= 1, "steps must be at least 1")
        _check(self.time_budget is None or self.time_budget > 0, "time budget must be positive")
        _check(self.output_format in OUTPUT_FORMATS, f"output format must be one of {OUTPUT_FORMATS}")
        _check(self.preview_every >= 0, "preview_every must not be negative")
        _check(self.figure is None or self.figure in FIGURES, f"figure must be one of {', '.join(FIGURES)}")
        for name in ("content_weight", "style_weight", "tv_weight"):
            _check(getattr(self, name) >= 0, f"{name} must not be negative")
        _check(bool(self.content_layers) and bool(self.style_layers), "content and style layers are needed")
        for layer in (*self.content_layers, *self.style_layers):
            _check(layer in LAYER_NAMES, f"unknown layer {layer!r}; use one of {', '.join(LAYER_NAMES)}")
        if self.style_layer_weights is not None:
            _check(
                len(self.style_layer_weights) == len(self.style_layers),
                "give one style layer weight per style layer",
            )

    def replace(self, **changes: Any) -> StyleSettings:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class StyleSource:
    """One painting to learn from: a catalog preset id, or an image of the user's own."""

    preset: str | None = None
    image: bytes | None = None  # encoded image (JPEG, PNG, ...); its statistics are cached by content hash
    weight: float = 1.0

    def __post_init__(self) -> None:
        _check((self.preset is None) != (self.image is None), "a style is either a preset or an image")
        _check(self.weight > 0, "style weights must be positive")


@dataclass(frozen=True)
class StylizeRequest:
    content: bytes
    styles: tuple[StyleSource, ...]
    settings: StyleSettings = field(default_factory=StyleSettings)

    def __post_init__(self) -> None:
        _check(len(self.styles) >= 1, "at least one style is needed")

    def to_dict(self) -> dict[str, Any]:
        return {
            "content": _b64(self.content),
            "styles": [{"preset": s.preset, "image": _b64(s.image), "weight": s.weight} for s in self.styles],
            "settings": _settings_to_dict(self.settings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StylizeRequest:
        return cls(
            content=_unb64(data["content"]) or b"",
            styles=tuple(
                StyleSource(preset=s["preset"], image=_unb64(s["image"]), weight=s["weight"])
                for s in data["styles"]
            ),
            settings=settings_from_dict(data["settings"]),
        )


@dataclass(frozen=True)
class Progress:
    """One report from a running job; ``step`` counts across all scales."""

    step: int
    total_steps: int
    scale: int  # 1-based index of the current scale
    scales: int
    width: int
    height: int
    losses: dict[str, float]
    elapsed: float
    eta: float | None  # seconds left, None until we can tell
    preview: bytes | None = None  # a small JPEG of the image as it forms

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["preview"] = _b64(self.preview)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Progress:
        return cls(**{**data, "preview": _unb64(data.get("preview"))})


@dataclass(frozen=True)
class StylizeResult:
    image: bytes  # encoded in `format`
    format: str  # "png" or "jpeg"
    width: int
    height: int
    seconds: float
    steps: int
    device: str
    losses: dict[str, float]
    notes: tuple[str, ...] = ()  # things the user should hear, e.g. "retried at 768 px: out of memory"
    animation: bytes | None = None  # a GIF of the painting as it formed (the "forming" figure)

    def summary(self) -> dict[str, Any]:
        """The one-line JSON the CLI prints: everything but the pixels."""
        return {
            "seconds": round(self.seconds, 3),
            "steps": self.steps,
            "size": [self.width, self.height],
            "device": self.device,
            "losses": {k: float(f"{v:.6g}") for k, v in self.losses.items()},
            "format": self.format,
            "notes": list(self.notes),
        }

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["image"] = _b64(self.image)
        data["animation"] = _b64(self.animation)
        data["notes"] = list(self.notes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StylizeResult:
        return cls(
            **{
                **data,
                "image": _unb64(data["image"]) or b"",
                "animation": _unb64(data.get("animation")),
                "notes": tuple(data.get("notes", ())),
            }
        )


def _settings_to_dict(settings: StyleSettings) -> dict[str, Any]:
    data = dataclasses.asdict(settings)
    for name in ("content_layers", "style_layers", "style_layer_weights"):
        if data[name] is not None:
            data[name] = list(data[name])
    return data


def settings_to_dict(settings: StyleSettings, *, only_changed: bool = False) -> dict[str, Any]:
    """JSON-safe dict of the settings; ``only_changed`` keeps what differs from the defaults."""
    data = _settings_to_dict(settings)
    if only_changed:
        defaults = _settings_to_dict(StyleSettings())
        data = {k: v for k, v in data.items() if defaults[k] != v}
    return data


def settings_from_dict(data: dict[str, Any]) -> StyleSettings:
    """The inverse of ``settings_to_dict``; unknown keys are ignored so old rows still load."""
    known = {f.name for f in dataclasses.fields(StyleSettings)}
    values = {k: v for k, v in data.items() if k in known}
    for name in ("content_layers", "style_layers", "style_layer_weights"):
        if values.get(name) is not None:
            values[name] = tuple(values[name])
    return StyleSettings(**values)


def batch_group(settings: StyleSettings) -> tuple[Hashable, ...] | None:
    """Jobs whose settings give equal groups may be handed to one worker as a batch; ``None``: the job
    runs alone (a figure is a batch of its own panels, see ``engine.figures``; an instant sketch shares
    nothing with another, so batching it would only hold its result back until the others are done).

    The settings part of the engine's own batch key (``_Job.batch_key`` in ``engine/api.py``): the
    optimizer, what fixes the schedule (tier, size, steps, scales) and the content layers; style layers
    may differ (the engine weighs each image's own). Photo shapes are left to the engine, which pads them
    onto one canvas or paints the odd one out on its own. Cheap and torch-free, for the dispatchers.
    """
    s = settings
    if s.figure is not None or s.quality == "instant":
        return None
    return (
        s.optimizer,
        s.quality,
        s.size,
        s.steps,
        s.multiscale,
        s.content_layers,
    )


def leading_batch(ordered: Sequence[T], group: Callable[[T], Hashable], limit: int) -> list[T]:
    """The first item and the items right behind it in the same group, at most ``limit`` in all (a
    ``None`` group shares with nobody).

    It stops at the first item of another group, so a batch is always a run at the head of ``ordered``:
    taking batches off the head one after the other, no item starts before one ahead of it, unless both
    start in the same batch (the queues' fairness: see ``bot/queue/scheduling.py``).
    """
    if not ordered:
        return []
    head = group(ordered[0])
    taken = [ordered[0]]
    if head is None:  # a job that runs alone
        return taken
    for item in ordered[1 : max(1, limit)]:
        if group(item) != head:
            break
        taken.append(item)
    return taken


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode("ascii")


def _unb64(text: str | None) -> bytes | None:
    return None if text is None else base64.b64decode(text)

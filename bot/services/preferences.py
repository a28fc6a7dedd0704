"""A user's preferences and how a job's settings are assembled from all the layers that set them.

From the weakest to the strongest: the engine's defaults, the bot's ``DEFAULT_QUALITY``, the chat's
defaults (set by group admins), the user's own /settings, and the preset the job uses.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from engine.protocol import StyleSettings, settings_from_dict

STRENGTHS = {"subtle": 0.3, "balanced": 0.5, "strong": 0.7, "wild": 0.9}
COLOR_CHOICES = ("none", "luminance", "histogram")  # "none": the painting's colours, explicitly
RESULT_AS = ("photo", "document")
PREVIEW_EVERY = 20  # engine steps between live-preview images (the status message shows at most one per 3 s)
STYLE_KEYS = ("quality", "strength", "preserve_colors")


@dataclass(frozen=True)
class Preferences:
    quality: str | None = None
    strength: float | None = None
    preserve_colors: str | None = None  # one of COLOR_CHOICES, or None: not chosen
    result_as: str = "photo"
    live_preview: bool = False
    sketch: bool = True  # the sketch on the status before the painting (``bot.services.sketches``)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preferences:
        known = {k: data[k] for k in asdict(cls()) if k in data}
        return cls(**known)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def style_settings(self) -> dict[str, Any]:
        """The part of the preferences that a preset keeps and a job's engine settings use."""
        return {k: getattr(self, k) for k in STYLE_KEYS if getattr(self, k) is not None}

    def strength_name(self) -> str:
        value = self.strength if self.strength is not None else STRENGTHS["balanced"]
        return min(STRENGTHS, key=lambda name: abs(STRENGTHS[name] - value))


def job_settings(
    *,
    default_quality: str,
    chat: dict[str, Any] | None,
    preferences: Preferences,
    preset: dict[str, Any] | None,
) -> StyleSettings:
    """The engine settings for one job, layer over layer."""
    merged: dict[str, Any] = {"quality": default_quality}
    for layer in (chat or {}, preferences.style_settings(), preset or {}):
        merged.update({k: v for k, v in layer.items() if v is not None})
    if merged.get("preserve_colors") == "none":
        merged["preserve_colors"] = None
    if preferences.live_preview:
        merged["preview_every"] = PREVIEW_EVERY
    return settings_from_dict(merged)

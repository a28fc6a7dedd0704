"""The clip qualities' sizes and lengths, and a clip's weight in the queue: torch-free, for the bot."""

from __future__ import annotations

import math
from dataclasses import dataclass

from engine.clips.media import ClipInfo, ClipLimits
from engine.images import fit_within

QUALITIES = ("instant", "painted")


@dataclass(frozen=True)
class ClipTier:
    """How large a clip is painted, and, on the CPU, how long it may be (Gatys per frame is slow there)."""

    side_cpu: int
    side_accelerated: int
    max_seconds_cpu: float | None = None  # None: the clip limits' own

    def side(self, accelerated: bool) -> int:
        return self.side_accelerated if accelerated else self.side_cpu

    def limits(self, limits: ClipLimits, accelerated: bool) -> ClipLimits:
        """``limits``, shortened for this tier on the CPU."""
        if accelerated or self.max_seconds_cpu is None or self.max_seconds_cpu >= limits.max_seconds:
            return limits
        return ClipLimits(self.max_seconds_cpu, limits.max_fps, limits.max_source_pixels)


CLIP_TIERS: dict[str, ClipTier] = {
    "instant": ClipTier(side_cpu=480, side_accelerated=480),  # the sketch runs on the CPU everywhere
    "painted": ClipTier(side_cpu=256, side_accelerated=512, max_seconds_cpu=3.0),
}


def clip_weight(frames: int, width: int, height: int) -> int:
    """A clip's share of the queue: frames times pixels (each frame costs about what its pixels cost)."""
    return frames * width * height


def planned_weight(info: ClipInfo, quality: str, limits: ClipLimits, accelerated: bool) -> int:
    """The weight of the clip ``decode`` will make from a header ``probe`` read, before decoding it."""
    tier = CLIP_TIERS[quality]
    limits = tier.limits(limits, accelerated)
    fps = min(limits.max_fps, info.fps or limits.max_fps)
    seconds = min(info.duration or limits.max_seconds, limits.max_seconds)
    width, height = fit_within(info.width, info.height, tier.side(accelerated))
    return clip_weight(max(1, math.ceil(seconds * fps)), width, height)

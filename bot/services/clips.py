"""Moving pictures (issue 21): a GIF, a short video or a round video message, painted frame by frame, the
same on every platform.

The front end hands over the clip's bytes with what was asked (a ``PaintRequest``), the quality and the
format and byte limit its platform takes; ``ClipService.start`` reads the header alone
(``engine.clips.probe``) and refuses here, before anything is decoded, a clip longer than
CLIP_MAX_SECONDS (shorter for the painted quality on a CPU), too large or too small, or not a clip at all.
Then the clip is one job like a photo's (``PaintService.start``: style, settings, limits, the queue)
whose order (``engine.workers.clips.ClipOrder``) the worker reads, and whose weight is its frames times
pixels, counted in ordinary jobs for the limits and the waiting times.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math

from bot.db import JobRecord
from bot.services.jobs import Placement
from bot.services.paint import ClipPlan, PaintRequest, PaintService
from bot.services.refusals import Refused
from engine.clips import (
    CLIP_TIERS,
    ClipLimits,
    ClipTooLargeError,
    ClipTooLongError,
    ClipTooSmallError,
    UnsupportedClipError,
    planned_weight,
    probe,
)
from engine.workers.clips import ClipOrder

log = logging.getLogger(__name__)

INSTANT = "instant"
PAINTED = "painted"
QUALITY_WORDS = (INSTANT, PAINTED)  # a caption's word (or a command's option) choosing the quality
DEFAULT_QUALITY = INSTANT  # seconds on any machine; "painted" is asked for
# A clip's frames times pixels that cost about one ordinary job (a photo at the normal quality: 44.8 s on
# two float32 cores in docs/benchmarks.md's issue-22 table), from the seconds per frame that
# ``python -m bench.clips --only speed`` measured (docs/benchmarks.md): the sketch network does a 480x360
# frame in 0.14 s (about 300 frames a job), Gatys a 256x192 frame in 3.1 s after the first (about 14 frames
# a job; 0.95 s at 128x96 gives the same within a fifth). Measured on the CPU; an accelerator speeds photos
# and frames alike. The limits count this weight too, so a painted clip takes two or three of a person's.
PIXELS_PER_JOB = {INSTANT: 300 * 480 * 360, PAINTED: 14 * 256 * 192}
MP4, GIF = "mp4", "gif"
# What is taken as a clip, on every platform: its MIME type (a Telegram document's, a Discord attachment's
# content type) and the file name's suffix where a platform gives no type.
CLIP_MIME_TYPES = {"image/gif": ".gif", "video/mp4": ".mp4", "video/webm": ".webm"}


@dataclasses.dataclass(frozen=True)
class ClipFormat:
    """What the platform takes back: MP4 (H.264) or GIF, and its upload limit in bytes."""

    format: str
    max_bytes: int


def jobs_worth(frames_by_pixels: int, quality: str) -> float:
    """How many ordinary jobs a clip of ``frames_by_pixels`` (``engine.clips.clip_weight``, the work it
    plans) counts as in the limits and the waiting times: at least one (never cheaper than a photo)."""
    return max(1.0, frames_by_pixels / PIXELS_PER_JOB[quality])


def clip_words(words: str) -> tuple[str | None, str | None, str]:
    """A caption's quality word ("painted" or "instant") and format word ("gif" or "mp4") taken out of
    the words naming the painting: (quality, format, the rest); None for a word not there."""
    kept, quality, fmt = [], None, None
    for word in words.split():
        lower = word.lower()
        if lower in QUALITY_WORDS and quality is None:
            quality = lower
        elif lower in (MP4, GIF) and fmt is None:
            fmt = lower
        else:
            kept.append(word)
    return quality, fmt, " ".join(kept)


class ClipService:
    def __init__(self, paint: PaintService, *, limits: ClipLimits) -> None:
        self.paint = paint
        self.limits = limits

    @property
    def accelerated(self) -> bool:
        """The workers paint on a GPU, as they reported it (``QueueStatus.accelerated``; ENGINE_DEVICE
        ``auto`` says nothing until they start): longer painted clips. A CPU until they say so."""
        return self.paint.jobs.queue.status().accelerated

    def max_seconds(self, quality: str) -> float:
        """The longest clip this quality takes here (the painted one is shorter on a CPU)."""
        return CLIP_TIERS[quality].limits(self.limits, self.accelerated).max_seconds

    async def start(
        self, request: PaintRequest, output: ClipFormat, quality: str | None = None
    ) -> tuple[JobRecord, Placement | None]:
        """Queue the clip as one job. Refused first, before a byte of the clip is parsed, for a blocked
        person or a switched-off group (``JobService.check_admitted``); then (``Refused``, its text naming
        the limit) when the header says it is too long, too large or too small, or it is not a clip; then
        what ``PaintService.start`` raises."""
        # request.group_id is the group whose admins may switch the bot off (None in private), as group_of
        await self.paint.jobs.check_admitted(request.platform, request.user_id, group=request.group_id)
        quality = quality or DEFAULT_QUALITY
        accelerated = self.accelerated
        limits = CLIP_TIERS[quality].limits(self.limits, accelerated)
        who = f"{request.platform} user {request.user_id}"
        try:
            info = await asyncio.to_thread(probe, request.content, limits)
        except ClipTooLongError as err:
            log.info("%s: clip refused: %s", who, err)
            key = "clip_too_long_painted" if limits.max_seconds < self.limits.max_seconds else "clip_too_long"
            raise Refused(
                key,
                seconds=_seconds(math.ceil(err.value * 10) / 10),
                most=_seconds(limits.max_seconds),
                instant=_seconds(self.limits.max_seconds),
            ) from None
        except ClipTooLargeError as err:
            log.info("%s: clip refused: %s", who, err)
            raise Refused("clip_too_large") from None
        except ClipTooSmallError as err:
            log.info("%s: clip refused: %s", who, err)
            raise Refused("clip_too_small") from None
        except UnsupportedClipError as err:
            log.info("%s: clip refused: %s", who, err)
            raise Refused("clip_unsupported") from None
        limit = self.limits
        order = ClipOrder(quality, output.format, output.max_bytes, limit.max_seconds, limit.max_fps)
        weight = jobs_worth(planned_weight(info, quality, self.limits, accelerated), quality)
        overrides = {**request.overrides, "quality": INSTANT if quality == INSTANT else "draft"}
        plan = ClipPlan(order.to_dict(), weight)
        return await self.paint.start(dataclasses.replace(request, overrides=overrides, clip=plan))


def _seconds(value: float) -> str:
    return f"{value:g}"

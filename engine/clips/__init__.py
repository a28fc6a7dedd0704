"""Moving pictures (issue 21): GIFs, short videos and round video messages, painted.

A pure library, like the rest of ``engine``: bytes and the cached model in, bytes out; the bot decides
who may send what and shows progress. This package's top level imports no torch (the bot can probe a
clip, weigh it and read its errors); the painting is in ``engine.clips.paint``. The path of one clip::

    info = probe(data, limits)                    # header only: refused here if too long or too large
    weight = planned_weight(info, quality, limits, accelerated)   # the queue's share, before decoding
    clip = decode(data, CLIP_TIERS[quality].side(accelerated), CLIP_TIERS[quality].limits(limits, ...))
    clip = instant(clip, sketcher, styles) or painted(clip, engine, styles, settings)
    out = encode(clip.frames, clip.fps, "mp4", max_bytes=50 * 2**20)   # Telegram: 50 MB; Discord: 10 MB

``engine.metrics.flicker`` says how much a painted clip flickers against its source.
"""

from engine.clips.errors import (
    ClipError,
    ClipLimitError,
    ClipTooBigToSendError,
    ClipTooLargeError,
    ClipTooLongError,
    ClipTooManyFramesError,
    ClipTooSmallError,
    UnsupportedClipError,
)
from engine.clips.media import Clip, ClipInfo, ClipLimits, EncodedClip, decode, encode, probe
from engine.clips.tiers import CLIP_TIERS, QUALITIES, ClipTier, clip_weight, planned_weight

__all__ = [
    "CLIP_TIERS",
    "QUALITIES",
    "Clip",
    "ClipError",
    "ClipInfo",
    "ClipLimitError",
    "ClipLimits",
    "ClipTier",
    "ClipTooBigToSendError",
    "ClipTooLargeError",
    "ClipTooLongError",
    "ClipTooManyFramesError",
    "ClipTooSmallError",
    "EncodedClip",
    "UnsupportedClipError",
    "clip_weight",
    "decode",
    "encode",
    "planned_weight",
    "probe",
]

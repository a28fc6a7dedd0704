"""Why a clip is refused or cannot be made: typed, with a stable ``code`` like every engine error.

Each refusal names the limit it hit (``limit``) and what the clip had (``value``), so the bot can say
"at most 10 seconds, this one has 14" without parsing a message.
"""

from __future__ import annotations

import math

from engine.errors import StylebotError


class ClipError(StylebotError):
    """A clip that cannot be used."""

    code = "bad_clip"


class UnsupportedClipError(ClipError):
    """Not a video or animation in a container and codec that FFmpeg reads, or one without a picture."""

    code = "unsupported_clip"


class ClipLimitError(ClipError):
    """Over one of the limits; ``limit`` and ``value`` are in the unit the limit's name says."""

    code = "clip_limit"
    unit = ""

    def __init__(self, limit: float, value: float, message: str) -> None:
        self.limit = limit
        self.value = value
        super().__init__(message)


class ClipTooLongError(ClipLimitError):
    """Longer than CLIP_MAX_SECONDS."""

    code = "clip_too_long"
    unit = "seconds"


class ClipTooLargeError(ClipLimitError):
    """More pixels per frame than we agree to decode (a guard, like ``ImageTooLargeError``)."""

    code = "clip_too_large"
    unit = "pixels"


class ClipTooSmallError(ClipLimitError):
    """A side under ``engine.images.MIN_SIDE`` pixels, or one side over ``MAX_ASPECT`` times the other: no
    room for a brush stroke (``limit`` and ``value``: the shorter side, or the aspect ratio)."""

    code = "clip_too_small"
    unit = "pixels"


class ClipTooBigToSendError(ClipLimitError):
    """Even the smallest encoding we allow is over the platform's upload limit."""

    code = "clip_too_big_to_send"
    unit = "bytes"


class ClipTooManyFramesError(ClipLimitError, UnsupportedClipError):
    """More source frames than ``engine.clips.media.MAX_SOURCE_FPS`` for each second of the time limit:
    frames packed microseconds apart, made to keep a worker decoding. Also an ``UnsupportedClipError``, as
    no camera makes such a clip."""

    code = "clip_too_many_frames"
    unit = "frames"


CLIP_ERRORS: dict[str, type[ClipError]] = {
    cls.code: cls
    for cls in (
        ClipError,
        UnsupportedClipError,
        ClipLimitError,
        ClipTooLongError,
        ClipTooLargeError,
        ClipTooSmallError,
        ClipTooBigToSendError,
        ClipTooManyFramesError,
    )
}


def clip_error_from_code(code: str, message: str) -> ClipError | None:
    """The clip error ``code`` names, rebuilt on the far side of a process boundary (for
    ``engine.errors.error_from_code``); ``None`` for a code that is not a clip's. A limit error's ``limit``
    and ``value`` do not cross the boundary: they are NaN there (its message names both)."""
    cls = CLIP_ERRORS.get(code)
    if cls is None:
        return None
    if issubclass(cls, ClipLimitError):
        return cls(math.nan, math.nan, message)
    return cls(message)

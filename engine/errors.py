"""Errors the engine reports to its callers.

Every error carries a stable ``code`` so that it survives a process or network boundary (a worker
process, a Celery task) and the bot can turn it into a friendly message without importing torch.
"""

from __future__ import annotations


class StylebotError(Exception):
    """Base of every error the engine raises on purpose."""

    code = "internal"


class ImageError(StylebotError, ValueError):
    """An input image cannot be used."""

    code = "bad_image"


class UnsupportedImageError(ImageError):
    """The bytes are not an image in a format we read (or not an image at all)."""

    code = "unsupported_image"


class CorruptImageError(ImageError):
    """The file looks like an image but cannot be decoded (truncated, damaged)."""

    code = "corrupt_image"


class ImageTooLargeError(ImageError):
    """More pixels than we agree to decode: a guard against decompression bombs."""

    code = "image_too_large"


class ImageTooSmallError(ImageError):
    """Too few pixels to carry any style (a 1x1 tracking pixel, an icon)."""

    code = "image_too_small"


class UnknownStyleError(StylebotError, LookupError):
    """A preset id that the catalog does not know; ``suggestions`` holds the close matches."""

    code = "unknown_style"

    def __init__(self, style_id: str, suggestions: list[str] | tuple[str, ...] = ()) -> None:
        self.style_id = style_id
        self.suggestions = tuple(suggestions)
        hint = f" Did you mean: {', '.join(self.suggestions)}?" if self.suggestions else ""
        super().__init__(f"unknown style {style_id!r}.{hint}")


class StyleUnavailableError(StylebotError):
    """A known preset whose painting could not be fetched (network down, server error)."""

    code = "style_unavailable"


class WeightsUnavailableError(StylebotError):
    """The requested VGG19 weights cannot be loaded (torchvision's need a download)."""

    code = "weights_unavailable"


class SketchUnavailableError(StylebotError):
    """The sketch networks (``engine.sketch``) cannot be loaded: the package or onnxruntime is missing."""

    code = "sketch_unavailable"


class OutOfMemoryError(StylebotError):
    """The device ran out of memory even at the smallest size we retry with."""

    code = "out_of_memory"


class Cancelled(StylebotError):
    """The caller asked the job to stop."""

    code = "cancelled"


_BY_CODE: dict[str, type[StylebotError]] = {
    cls.code: cls
    for cls in (
        StylebotError,
        ImageError,
        UnsupportedImageError,
        CorruptImageError,
        ImageTooLargeError,
        ImageTooSmallError,
        StyleUnavailableError,
        WeightsUnavailableError,
        SketchUnavailableError,
        OutOfMemoryError,
        Cancelled,
    )
}


def error_from_code(code: str, message: str) -> StylebotError:
    """Rebuild an error on the far side of a process boundary from its code and message."""
    if code == UnknownStyleError.code:
        err = UnknownStyleError.__new__(UnknownStyleError)
        StylebotError.__init__(err, message)
        err.style_id, err.suggestions = "", ()
        return err
    if code in _BY_CODE:
        return _BY_CODE[code](message)
    from engine.clips.errors import clip_error_from_code  # it imports this module: looked up when needed

    return clip_error_from_code(code, message) or StylebotError(message)

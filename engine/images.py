"""Decoding, validating and encoding images (Pillow only, no torch).

Everything a user can send passes through ``decode_image``: it turns any supported file into an
upright 8-bit RGB picture or raises one of the typed errors in ``engine.errors``.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import CorruptImageError, ImageTooLargeError, ImageTooSmallError, UnsupportedImageError

MIN_SIDE = 32  # smaller than this carries no usable texture
MAX_ASPECT = 10.0  # a 1:20 strip would shrink to a few pixels across at the coarse scales
DEFAULT_MAX_PIXELS = 50_000_000
READABLE_FORMATS = "JPEG, PNG, WebP, GIF, BMP or TIFF"


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``data`` into an upright RGB image, refusing what we cannot or should not process."""
    if not data:
        raise UnsupportedImageError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise UnsupportedImageError(f"this is not an image we can read ({READABLE_FORMATS})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError("the image has far too many pixels") from None
    except OSError as err:
        raise CorruptImageError(f"the image could not be read: {err}") from None

    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"the image is {width}x{height} ({width * height / 1e6:.0f} MP); "
            f"the limit is {max_pixels / 1e6:.0f} MP"
        )
    try:
        image.load()  # decodes the first frame only; animations keep their first picture
    except (OSError, SyntaxError, ValueError) as err:
        raise CorruptImageError(f"the image is damaged or incomplete ({err})") from None
    except Image.DecompressionBombError:
        raise ImageTooLargeError("the image has far too many pixels") from None

    image = _upright(image)
    rgb = to_rgb(image)
    short, long = sorted(rgb.size)
    if short < MIN_SIDE:
        raise ImageTooSmallError(
            f"the image is {rgb.width}x{rgb.height}; each side needs {MIN_SIDE} px or more"
        )
    if long / short > MAX_ASPECT:
        raise ImageTooSmallError(
            f"the image is {rgb.width}x{rgb.height}: too narrow "
            f"(at most {MAX_ASPECT:.0f} times longer than wide)"
        )
    return rgb


def _upright(image: Image.Image) -> Image.Image:
    """Apply the EXIF orientation; a broken EXIF block is ignored rather than failing the photo."""
    try:
        return ImageOps.exif_transpose(image) or image
    except Exception:
        return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is flattened onto white, like a viewer shows it."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _to_8bit_gray(image)
        mode = "L"
    if mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        mode = image.mode
    if mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode != "RGB":
        return image.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV
    return image


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    """Scale 16-bit and float grayscale to 8 bits by the range the format implies."""
    array = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        low, high = float(array.min()), float(array.max())
        array = (array - low) / (high - low or 1.0) * 255.0
    else:
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        array = array / peak * 255.0
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), "L")


def fit_within(width: int, height: int, max_side: int) -> tuple[int, int]:
    """The size with the same aspect ratio whose longest side is ``max_side`` (never below 1 px)."""
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_to(image: Image.Image, max_side: int) -> Image.Image:
    """Resize so the longest side is ``max_side``, with a filter that does not alias when shrinking."""
    size = fit_within(image.width, image.height, max_side)
    if size == image.size:
        return image
    return image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)


def encode_image(image: Image.Image, fmt: str, *, jpeg_quality: int = 92) -> bytes:
    """Encode as ``png`` or ``jpeg``; JPEG keeps full-resolution colour (no chroma subsampling)."""
    buffer = io.BytesIO()
    if fmt == "png":
        image.save(buffer, "PNG", compress_level=6)
    elif fmt == "jpeg":
        image.convert("RGB").save(buffer, "JPEG", quality=jpeg_quality, subsampling=0, optimize=True)
    else:
        raise ValueError(f"unknown output format {fmt!r}; use png or jpeg")
    return buffer.getvalue()

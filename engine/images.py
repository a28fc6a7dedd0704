"""Decoding, validating and encoding images (Pillow only, no torch).

Two steps, on two sides of the queue. The bot calls ``probe_image``: the header and a cheap structure
check, no pixels decoded, so a decompression bomb costs it nothing. The worker calls ``decode_image``:
the same checks, then the full decode into an upright 8-bit RGB picture. Either raises one of the typed
errors in ``engine.errors``.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import CorruptImageError, ImageTooLargeError, ImageTooSmallError, UnsupportedImageError

MIN_SIDE = 32  # smaller than this carries no usable texture
MAX_ASPECT = 10.0  # a 1:20 strip would shrink to a few pixels across at the coarse scales
DEFAULT_MAX_PIXELS = 50_000_000
# The formats README documents, and the only ones Pillow may even try: of the ~40 it knows, some run
# external programs (EPS runs Ghostscript) and many are rarely audited parsers. JPEG includes MPO.
READ_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
READABLE_FORMATS = "JPEG, PNG, WebP, GIF, BMP or TIFF"
# More than 8 bits per channel: 2 to 4 bytes a pixel before conversion, so a quarter of the pixel limit.
WIDE_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})
WIDE_PIXEL_SHARE = 4
DRAFT_SCALE = 8  # a JPEG is test-decoded at 1/8 of its size: 1/64 of the memory


@dataclass(frozen=True)
class ImageInfo:
    """What the header says about an image that passed ``probe_image``."""

    format: str
    width: int
    height: int
    mode: str


def open_image(data: bytes) -> Image.Image:
    """Pillow's lazy open, for the documented formats only: reads the header (and PNG's metadata chunks
    before the pixels), decodes nothing."""
    if not data:
        raise UnsupportedImageError("the file is empty")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=READ_FORMATS)
    except UnidentifiedImageError:
        raise UnsupportedImageError(f"this is not an image we can read ({READABLE_FORMATS})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError("the image has far too many pixels") from None
    except (OSError, ValueError, SyntaxError, struct.error, EOFError) as err:
        # ValueError: e.g. a PNG text chunk that decompresses past Pillow's limit (a metadata bomb)
        raise CorruptImageError(f"the image could not be read: {err}") from None


def check_header(image: Image.Image, *, max_pixels: int) -> None:
    """Refuse from the size and mode alone: too many pixels, too small, too narrow."""
    width, height = image.size
    limit = max_pixels // WIDE_PIXEL_SHARE if image.mode in WIDE_MODES else max_pixels
    if width * height > limit:
        deep = " at 16 bits or more per channel" if image.mode in WIDE_MODES else ""
        raise ImageTooLargeError(
            f"the image is {width}x{height} ({width * height / 1e6:.0f} MP){deep}; "
            f"the limit is {limit / 1e6:.0f} MP"
        )
    short, long = sorted((width, height))
    if short < MIN_SIDE:
        raise ImageTooSmallError(f"the image is {width}x{height}; each side needs {MIN_SIDE} px or more")
    if long / short > MAX_ASPECT:
        raise ImageTooSmallError(
            f"the image is {width}x{height}: too narrow (at most {MAX_ASPECT:.0f} times longer than wide)"
        )


def probe_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Validate without decoding the picture: what the bot does before it accepts a job.

    Beyond the header: a PNG's chunks are walked and their checksums verified (no decompression), and a
    JPEG is decoded at 1/8 scale, which finds a truncated file for 1/64 of the memory. Damage these miss
    (a corrupt compressed stream with valid checksums, a broken WebP) is found by ``decode_image`` in
    the worker and reported as the job's error.
    """
    with open_image(data) as image:
        check_header(image, max_pixels=max_pixels)
        info = ImageInfo(image.format or "", image.width, image.height, image.mode)
        try:
            if image.format == "PNG":
                image.verify()
            elif image.format in ("JPEG", "MPO"):
                image.draft(image.mode, (image.width // DRAFT_SCALE, image.height // DRAFT_SCALE))
                image.load()
        except (OSError, ValueError, SyntaxError, struct.error, EOFError) as err:
            raise CorruptImageError(f"the image is damaged or incomplete ({err})") from None
        except Image.DecompressionBombError:
            raise ImageTooLargeError("the image has far too many pixels") from None
    return info


def decode_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode ``data`` into an upright RGB image, refusing what we cannot or should not process."""
    image = open_image(data)
    check_header(image, max_pixels=max_pixels)
    try:
        image.load()  # decodes the first frame only; animations keep their first picture
    except (OSError, SyntaxError, ValueError, struct.error, EOFError) as err:
        raise CorruptImageError(f"the image is damaged or incomplete ({err})") from None
    except Image.DecompressionBombError:
        raise ImageTooLargeError("the image has far too many pixels") from None
    return to_rgb(_upright(image))


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
    if image.mode.startswith("I;16"):  # the common case (16-bit PNG), in integers: 6 bytes a pixel at most
        wide = np.asarray(image).astype(np.uint32)
        wide *= 255
        wide += 32767
        wide //= 65535
        return Image.fromarray(wide.astype(np.uint8), "L")
    array = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        low, high = float(array.min()), float(array.max())
        array = (array - low) / (high - low or 1.0) * 255.0
    else:
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        array = array / peak * 255.0
    return Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), "L")


def image_digest(data: bytes) -> str:
    """The key of a picture's bytes in every cache of what it yields (Gram statistics, sketch style vectors):
    one function, so the engine and the bot's sketch process find each other's entries."""
    return hashlib.sha256(data).hexdigest()


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

"""What a picture a user sends must be, on every platform: checked from what the platform says about it
before it is downloaded (type, size, pixels when told), then from its header once it is in.

The bot never decodes a whole picture (``engine.images.probe_image`` reads headers only), so a
decompression bomb costs it nothing; the worker decodes and reports what the probe missed.
"""

from __future__ import annotations

from collections.abc import Sequence

from bot.services.refusals import Refused
from engine.images import probe_image

MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # the largest picture a user may send (the Bot API's getFile limit)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic")
DOWNLOAD_FAILED = "error_download_failed"  # Refused(DOWNLOAD_FAILED): the platform kept the file


def looks_like_image(mime_type: str | None, file_name: str | None) -> bool:
    """Whether a file a user sent claims to be a picture (its header is checked later, when it is in)."""
    return (mime_type or "").lower().startswith("image/") or (file_name or "").lower().endswith(
        IMAGE_SUFFIXES
    )


def check_upload(
    *,
    mime_type: str | None,
    file_name: str | None,
    size: int | None,
    max_pixels: int,
    width: int | None = None,
    height: int | None = None,
) -> None:
    """Refuse a file before downloading it: not a picture, too big to download, or (when the platform
    tells its size in pixels) more pixels than the bot decodes."""
    if not looks_like_image(mime_type, file_name):
        raise Refused("error_not_an_image_file")
    check_size(size)
    if width and height and width * height > max_pixels:
        raise Refused("error_image_too_large")


def check_size(size: int | None) -> None:
    """Refuse a file larger than the bot downloads (``size`` None: the platform did not say)."""
    if size is not None and size > MAX_DOWNLOAD_BYTES:
        raise Refused("error_file_too_big", size=round(size / 2**20))


def validate_images(images: Sequence[bytes], *, max_pixels: int) -> None:
    """Raise an ``engine.errors.ImageError`` for the first image a job cannot use, decoding none."""
    for data in images:
        probe_image(data, max_pixels=max_pixels)

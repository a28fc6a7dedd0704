"""Tiny test images as bytes, made with Pillow, so tests never need image files on disk."""

from __future__ import annotations

import io

from PIL import Image

Color = tuple[int, int, int]

DEFAULT_COLOR: Color = (200, 80, 40)


def image(
    width: int, height: int, color: Color = DEFAULT_COLOR, fmt: str = "JPEG", mode: str = "RGB"
) -> bytes:
    """A flat image of the given size encoded as `fmt`: the common base of the helpers below."""
    fill: tuple[int, ...] = (*color, 255) if mode == "RGBA" else color
    buffer = io.BytesIO()
    Image.new(mode, (width, height), fill).save(buffer, format=fmt)
    return buffer.getvalue()


def jpeg(width: int = 64, height: int = 48, color: Color = DEFAULT_COLOR) -> bytes:
    """A flat JPEG: what Telegram clients send as a photo."""
    return image(width, height, color, "JPEG")


def png(width: int = 64, height: int = 48, color: Color = DEFAULT_COLOR, alpha: bool = False) -> bytes:
    """A flat PNG, with an alpha channel if asked: users often send PNGs as documents."""
    return image(width, height, color, "PNG", "RGBA" if alpha else "RGB")


def webp(width: int = 64, height: int = 48, color: Color = DEFAULT_COLOR) -> bytes:
    """A flat WebP, a format Telegram accepts as a photo but some pipelines trip over."""
    return image(width, height, color, "WEBP")


def pattern(width: int = 64, height: int = 48, fmt: str = "JPEG") -> bytes:
    """A two-way gradient: unlike a flat image, a resize or a recompression visibly changes it."""
    size = (width, height)
    across = Image.linear_gradient("L").rotate(90).resize(size)
    down = Image.linear_gradient("L").resize(size)
    img = Image.merge("RGB", (across, down, Image.new("L", size, 128)))
    buffer = io.BytesIO()
    img.save(buffer, format=fmt)
    return buffer.getvalue()


def size_of(data: bytes) -> tuple[int, int]:
    """(width, height) of encoded image bytes, for asserting on what the bot produced."""
    with Image.open(io.BytesIO(data)) as img:
        return img.size

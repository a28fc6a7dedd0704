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


def streamed_png(
    width: int, height: int, *, bit_depth: int = 8, channels: int = 1, chunks: tuple[bytes, ...] = ()
) -> bytes:
    """A black PNG written row by row without Pillow: a huge picture in a tiny file, made for a few
    bytes of memory (a decompression bomb). ``chunks`` (whole chunks, see ``png_chunk``) go before the
    pixels; ``channels`` is 1 (gray) or 3 (RGB)."""
    import struct
    import zlib

    color_type = {1: 0, 3: 2}[channels]
    header = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\0" * (1 + width * channels * bit_depth // 8)  # filter byte, then the samples
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return b"".join(
        (
            b"\x89PNG\r\n\x1a\n",
            png_chunk(b"IHDR", header),
            *chunks,
            png_chunk(b"IDAT", idat),
            png_chunk(b"IEND"),
        )
    )


def png_chunk(kind: bytes, data: bytes = b"") -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

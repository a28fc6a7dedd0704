"""Synthetic photos and paintings for engine tests: small, deterministic, and unlike each other.

The "photo" has large smooth shapes in cool colours; the "paintings" are busy, warm, high-frequency
textures. Style transfer between them has a clear, measurable effect within a few dozen steps.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw


def encode(image: Image.Image, fmt: str = "PNG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def photo(width: int = 64, height: int = 48) -> Image.Image:
    """A cool-coloured scene: sky gradient, a green hill, a gray house with a dark door."""
    y = np.linspace(0, 1, height)[:, None, None]
    sky = (np.array([90, 150, 230]) * (1 - 0.4 * y) + np.array([20, 40, 60]) * y).astype(np.uint8)
    image = Image.fromarray(np.broadcast_to(sky, (height, width, 3)).copy(), "RGB")
    draw = ImageDraw.Draw(image)
    draw.ellipse((-width // 2, height // 2, width * 3 // 2, height * 2), fill=(40, 140, 70))
    draw.rectangle((width // 3, height // 4, width * 2 // 3, height * 3 // 4), fill=(150, 150, 160))
    draw.rectangle((width // 2 - 3, height // 2, width // 2 + 3, height * 3 // 4), fill=(40, 30, 30))
    return image


def painting(width: int = 64, height: int = 64, seed: int = 0, hue: str = "warm") -> Image.Image:
    """Busy diagonal strokes of saturated colour: a texture VGG's Gram matrices tell apart from a photo."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    waves = np.sin((xx + yy) * 0.9 + rng.uniform(0, 6)) + np.sin((xx - 2 * yy) * 0.5 + rng.uniform(0, 6))
    noise = rng.normal(0, 0.35, (height, width))
    t = np.clip((waves + noise + 2.5) / 5.0, 0, 1)[..., None]
    low, high = ((200, 30, 20), (250, 220, 40)) if hue == "warm" else ((30, 20, 120), (200, 60, 220))
    rgb = np.array(low) * (1 - t) + np.array(high) * t
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def checker(width: int = 64, height: int = 64, cell: int = 4) -> Image.Image:
    """Black and white squares: a very different second style for blending tests."""
    yy, xx = np.mgrid[0:height, 0:width]
    value = (((yy // cell) + (xx // cell)) % 2 * 255).astype(np.uint8)
    return Image.fromarray(np.stack([value] * 3, axis=-1), "RGB")

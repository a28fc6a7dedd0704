"""How the picture moved between two frames: one global zoom and shift, found by phase correlation.

Enough for what a phone or a GIF does most (pans, zooms, a still camera) and for the synthetic clips of
the tests and the benchmark; a scene with several things moving gets the motion of the largest. No
OpenCV: numpy's FFT on a small gray copy (``WORK_SIDE``). The zoom is searched over a small range of
factors (``ZOOMS``): for each, the shift is found by phase correlation, and the factor whose correlation
peak is sharpest wins.

A ``Motion`` maps a point of the previous frame to where it is in the next one (``x' = s * (x - c) + c +
d``, ``c`` the centre); ``warp`` moves a picture along it and says which pixels came from outside.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

WORK_SIDE = 128  # the gray copies motion is estimated on
ZOOMS = np.round(np.arange(0.90, 1.1001, 0.01), 4)  # per frame: 10% in or out at most, by 1%...
ZOOM_REFINE = 0.005  # ...then half a percent either side of the best


@dataclass(frozen=True)
class Motion:
    """Zoom ``scale`` about the centre, then a shift of ``dx``, ``dy`` pixels (at the frames' size)."""

    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0

    def resized(self, factor: float) -> Motion:
        """The same motion for frames ``factor`` times as large."""
        return Motion(self.scale, self.dx * factor, self.dy * factor)

    def then(self, other: Motion) -> Motion:
        """This motion followed by ``other`` (about the same centre)."""
        return Motion(
            self.scale * other.scale, other.scale * self.dx + other.dx, other.scale * self.dy + other.dy
        )


STILL = Motion()


def estimate(previous: Image.Image, current: Image.Image) -> Motion:
    """The global motion from ``previous`` to ``current`` (same size), at their size."""
    width, height = previous.size
    factor = min(1.0, WORK_SIDE / max(width, height))
    small = (max(8, round(width * factor)), max(8, round(height * factor)))
    a = _gray(previous, small)
    b = _gray(current, small)
    window = np.outer(np.hanning(small[1]), np.hanning(small[0]))
    spectrum_b = np.fft.fft2((b - b.mean()) * window)

    def correlate(scale: float) -> tuple[float, float, float, float]:
        zoomed = a if scale == 1.0 else _zoom(a, scale)
        peak, dy, dx = _phase_correlation(np.fft.fft2((zoomed - zoomed.mean()) * window), spectrum_b)
        return peak, scale, dy, dx

    best = max((correlate(float(s)) for s in ZOOMS), key=lambda r: r[0])
    best = max(best, correlate(best[1] - ZOOM_REFINE), correlate(best[1] + ZOOM_REFINE), key=lambda r: r[0])
    _, scale, dy, dx = best
    scale_x = width / small[0]
    scale_y = height / small[1]
    return Motion(scale, dx * scale_x, dy * scale_y)


def warp(image: Image.Image, motion: Motion) -> tuple[Image.Image, np.ndarray]:
    """``image`` moved along ``motion``, and a mask of the pixels that have a source inside it (True)."""
    width, height = image.size
    coefficients = _inverse(motion, width, height)
    moved = image.transform(image.size, Image.Transform.AFFINE, coefficients, Image.Resampling.BICUBIC)
    inside = Image.new("L", image.size, 255).transform(
        image.size, Image.Transform.AFFINE, coefficients, Image.Resampling.NEAREST
    )
    return moved, np.asarray(inside) > 0


def _inverse(motion: Motion, width: int, height: int) -> tuple[float, ...]:
    """PIL's affine data: for each output pixel, where to read in the input (the motion's inverse)."""
    cx, cy = (width - 1) / 2, (height - 1) / 2
    s = motion.scale
    # x = (x' - c - d) / s + c
    return (1 / s, 0.0, cx - (cx + motion.dx) / s, 0.0, 1 / s, cy - (cy + motion.dy) / s)


def _gray(image: Image.Image, size: tuple[int, int]) -> np.ndarray:
    small = image.convert("L").resize(size, Image.Resampling.BILINEAR)
    return np.asarray(small, dtype=np.float64) / 255.0


def _zoom(array: np.ndarray, scale: float) -> np.ndarray:
    """``array`` zoomed by ``scale`` about its centre, the border filled by its edge."""
    image = Image.fromarray(array.astype(np.float32), mode="F")
    height, width = array.shape
    coefficients = _inverse(Motion(scale), width, height)
    moved = image.transform(image.size, Image.Transform.AFFINE, coefficients, Image.Resampling.BILINEAR)
    out = np.asarray(moved, dtype=np.float64)
    inside = np.asarray(
        Image.new("F", image.size, 1.0).transform(image.size, Image.Transform.AFFINE, coefficients)
    )
    return np.where(inside > 0.5, out, array.mean())


def _phase_correlation(spectrum_a: np.ndarray, spectrum_b: np.ndarray) -> tuple[float, float, float]:
    """(peak height, dy, dx): how far ``b`` is ``a`` shifted, to a tenth of a pixel or so."""
    cross = spectrum_b * np.conj(spectrum_a)
    cross /= np.abs(cross) + 1e-12
    surface = np.fft.ifft2(cross).real
    height, width = surface.shape
    y, x = np.unravel_index(int(np.argmax(surface)), surface.shape)
    peak = float(surface[y, x])
    dy = y + _subpixel(surface[(y - 1) % height, x], peak, surface[(y + 1) % height, x])
    dx = x + _subpixel(surface[y, (x - 1) % width], peak, surface[y, (x + 1) % width])
    dy = dy - height if dy > height / 2 else dy
    dx = dx - width if dx > width / 2 else dx
    return peak, float(dy), float(dx)


def _subpixel(before: float, peak: float, after: float) -> float:
    """The vertex of the parabola through three samples around the peak."""
    denominator = before - 2 * peak + after
    return 0.0 if abs(denominator) < 1e-12 else float(0.5 * (before - after) / denominator)

"""Photos of different shapes in one batch: a shared canvas, and masks that keep each photo on its own.

Each image sits in the top-left corner of a canvas as large as the largest of them, zeros around it.
Padding alone would change the results: VGG's convolutions at an image's right and bottom edges would see
the padding's activations where a single run sees zeros, and its pooling would keep a row or column that a
single run drops. So every layer's activations are multiplied by a mask of the image's valid area at that
layer's resolution (floor-halved at each pooling, as the pooling does), which makes the area outside the
image exactly zero at every layer, exactly what a single run's zero padding supplies. The losses then sum
over the valid positions only (content error, Gram matrices, total variation) and divide by their count.

In exact arithmetic a padded image is optimized exactly as alone; in floating point the sums run over more
(zero) terms in another order, so it drifts by rounding like any batch (tests/engine/test_batch.py).
The price is the padded pixels' compute (``waste``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

LEVELS = 5  # VGG19's resolutions: the pixels and after each of its four poolings


@dataclass(frozen=True)
class Canvas:
    sizes: tuple[tuple[int, int], ...]  # (width, height) of each image

    @property
    def width(self) -> int:
        return max(w for w, _ in self.sizes)

    @property
    def height(self) -> int:
        return max(h for _, h in self.sizes)

    @property
    def padded(self) -> bool:
        return len(set(self.sizes)) > 1

    def waste(self) -> float:
        """The share of the canvas's pixels that belong to no image: compute spent on padding."""
        area = len(self.sizes) * self.width * self.height
        return 1.0 - sum(w * h for w, h in self.sizes) / area

    def pad(self, images: list[torch.Tensor]) -> torch.Tensor:
        """``(1, C, h, w)`` each -> ``(N, C, H, W)`` with zeros to the right and below each image."""
        if not self.padded:
            return torch.cat(images)
        return torch.cat(
            [F.pad(im, (0, self.width - im.shape[-1], 0, self.height - im.shape[-2])) for im in images]
        )

    def crop(self, image: torch.Tensor, index: int) -> torch.Tensor:
        """Image ``index``'s own area of its row of the canvas (``(1, C, H, W) -> (1, C, h, w)``)."""
        width, height = self.sizes[index]
        return image[..., :height, :width]

    def masks(self, device: torch.device, dtype: torch.dtype) -> Masks | None:
        """The valid area of each image at each of VGG's resolutions; None when nothing is padded."""
        if not self.padded:
            return None
        levels = []
        for level in range(LEVELS):
            height, width = self.height >> level, self.width >> level
            mask = torch.zeros(len(self.sizes), 1, height, width, dtype=dtype, device=device)
            for i, (w, h) in enumerate(self.sizes):
                mask[i, :, : h >> level, : w >> level] = 1.0
            levels.append(mask)
        return Masks(tuple(levels))


@dataclass(frozen=True)
class Masks:
    levels: tuple[torch.Tensor, ...]  # (N, 1, H >> l, W >> l) for each level l, 1 inside each image

    def positions(self, level: int) -> torch.Tensor:
        """How many valid positions each image has at ``level`` (``(N,)``)."""
        return self.levels[level].sum(dim=(1, 2, 3))

    def select(self, rows: list[int]) -> Masks:
        index = torch.tensor(rows, device=self.levels[0].device)
        return Masks(tuple(m[index] for m in self.levels))


def layer_level(layer: str) -> int:
    """The resolution a VGG layer works at: ``conv4_2`` comes after three poolings."""
    return int(layer[4]) - 1

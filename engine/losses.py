"""The three terms of Gatys et al.'s objective, as small modules.

Normalization is what lets one set of weights work at every resolution and for every painting:
- Gram matrices are averaged over positions (divided by H*W), so they are statistics of the texture,
  not sums that grow with the image.
- The content and style terms are relative squared errors: the mean squared difference divided by the
  mean square of the target. A value of 1.0 means "as far off as the target is large", at any layer,
  any resolution and for any painting, so the per-layer weights can be equal as in the paper.
- Total variation is the mean squared difference between neighbouring pixels of the 0..1 image.

Every loss is computed per image of a batch (shape ``(B,)``) so that batched jobs keep independent
objectives: the gradient of the sum with respect to one image is that image's gradient alone.
"""

from __future__ import annotations

import torch
from torch import nn

from engine import devices
from engine.canvas import Masks, layer_level

EPS = 1e-8


def wide(tensor: torch.Tensor) -> torch.Tensor:
    """At least float32: statistics of bf16 features are summed in float32; float64 stays float64."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def gram_matrix(features: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
    """``(B, C, H, W) -> (B, C, C)``: channel co-activations averaged over positions, in float32 or more.

    ``positions``: each item's count of valid positions when the batch is padded (the rest are zeros).
    The product runs in full float32 even under bf16 autocast or TF32 (``devices.full_precision``): these
    statistics are what the style is matched on. Channels-last features are read as positions by channels,
    a view, where the channels-first form would first copy them into another order (and again for the
    gradient): the same sums, a quarter less time for a Gram matrix at conv1_1 (bench under load, 2026-12-07).
    """
    b, c, h, w = features.shape
    with devices.full_precision(features.device):
        if features.is_contiguous(memory_format=torch.channels_last):  # the extractor's layout (engine.vgg)
            flat = wide(features.permute(0, 2, 3, 1).reshape(b, h * w, c))  # a view: no copy to reorder
            gram = torch.bmm(flat.transpose(1, 2), flat)
        else:
            flat = wide(features.reshape(b, c, h * w))
            gram = torch.bmm(flat, flat.transpose(1, 2))
    return gram / (h * w) if positions is None else gram / positions.to(gram.dtype)[:, None, None]


def relative_mse(
    value: torch.Tensor, target: torch.Tensor, count: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-item mean squared error divided by the target's mean square (``(B,)``).

    ``count``: each item's number of valid elements when the batch is padded (zeros in both elsewhere).
    """
    dims = tuple(range(1, value.dim()))
    if count is None:
        error = (wide(value) - wide(target)).pow(2).mean(dim=dims)
        scale = wide(target).pow(2).mean(dim=dims).clamp_min(EPS)
        return error / scale
    count = count.to(wide(value).dtype)
    error = (wide(value) - wide(target)).pow(2).sum(dim=dims) / count
    scale = (wide(target).pow(2).sum(dim=dims) / count).clamp_min(EPS)
    return error / scale


class ContentLoss(nn.Module):
    """How far the features at one layer are from the photo's."""

    target: torch.Tensor

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("target", target.detach())

    def forward(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        count = None if positions is None else positions * features.shape[1]
        return relative_mse(features, self.target, count)


class StyleLoss(nn.Module):
    """How far the Gram matrix at one layer is from the painting's (or from a blend of paintings')."""

    target: torch.Tensor

    def __init__(self, target_gram: torch.Tensor) -> None:
        super().__init__()
        if target_gram.dim() == 2:
            target_gram = target_gram.unsqueeze(0)
        self.register_buffer("target", wide(target_gram.detach()))

    def forward(self, features: torch.Tensor, positions: torch.Tensor | None = None) -> torch.Tensor:
        return relative_mse(gram_matrix(features, positions), self.target)


def total_variation(image: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Smoothness prior: penalizing pixel-to-pixel jumps hides the optimizer's high-frequency noise.

    The mean squared difference between neighbours (``(B,)``); with a ``mask`` (padded batch), between
    neighbours that are both inside the image.
    """
    dx = (image[..., :, 1:] - image[..., :, :-1]).pow(2)
    dy = (image[..., 1:, :] - image[..., :-1, :]).pow(2)
    if mask is None:
        return dx.mean(dim=(1, 2, 3)) + dy.mean(dim=(1, 2, 3))
    mask_x = mask[..., :, 1:] * mask[..., :, :-1]
    mask_y = mask[..., 1:, :] * mask[..., :-1, :]
    channels = image.shape[1]
    return (dx * mask_x).sum(dim=(1, 2, 3)) / (channels * mask_x.sum(dim=(1, 2, 3))) + (dy * mask_y).sum(
        dim=(1, 2, 3)
    ) / (channels * mask_y.sum(dim=(1, 2, 3)))


def blend_grams(grams: list[dict[str, torch.Tensor]], weights: list[float]) -> dict[str, torch.Tensor]:
    """Mix several paintings' statistics with normalized weights.

    For squared errors, the weighted sum of losses against each painting equals the loss against the
    weighted mean Gram matrix plus a constant, so blending the targets gives the same gradients for
    the price of one style term.
    """
    total = sum(weights)
    return {
        layer: sum(g[layer] * (w / total) for g, w in zip(grams, weights, strict=True))  # type: ignore[misc]
        for layer in grams[0]
    }


class StyleTransferObjective(nn.Module):
    """``content_weight * content + style_weight * style + tv_weight * tv`` for one or more images.

    The weights are plain numbers or one per image (``(B,)``); so are the style layer weights, which lets
    images that match their style at different layers share a batch: the style targets cover the union of
    their layers, and an image's weight is zero at a layer it does not use (any finite target will do
    there). ``masks`` mark each image's area in a padded batch (``engine.canvas``).
    """

    def __init__(
        self,
        extractor: nn.Module,
        content_targets: dict[str, torch.Tensor],
        style_targets: dict[str, torch.Tensor],
        *,
        content_weight: float | torch.Tensor,
        style_weight: float | torch.Tensor,
        tv_weight: float | torch.Tensor,
        style_layer_weights: dict[str, float | torch.Tensor] | None = None,
        masks: Masks | None = None,
    ) -> None:
        super().__init__()
        self.extractor = extractor
        self.content = nn.ModuleDict({k: ContentLoss(v) for k, v in content_targets.items()})
        self.style = nn.ModuleDict({k: StyleLoss(v) for k, v in style_targets.items()})
        n_style = len(style_targets)
        self.style_layer_weights: dict[str, float | torch.Tensor] = style_layer_weights or {
            k: 1.0 / n_style for k in style_targets
        }
        self.weights = (content_weight, style_weight, tv_weight)
        self.layers = frozenset(content_targets) | frozenset(style_targets)
        self.masks = masks
        self.positions = (
            {k: masks.positions(layer_level(k)) for k in self.layers} if masks is not None else {}
        )

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The total per image (``(B,)``) and its parts, for progress reports."""
        masks = self.masks.levels if self.masks is not None else None
        features = self.extractor(image, self.layers, masks) if masks else self.extractor(image, self.layers)
        at = self.positions.get
        content = sum(loss(features[k], at(k)) for k, loss in self.content.items()) / len(self.content)
        style = sum(self.style_layer_weights[k] * loss(features[k], at(k)) for k, loss in self.style.items())
        tv = total_variation(image, masks[0] if masks else None)
        cw, sw, tw = self.weights
        total = cw * content + sw * style + tw * tv
        return total, {"content": content, "style": style, "tv": tv}

    def select(self, rows: list[int]) -> StyleTransferObjective:
        """The objective of some of the images only: the batch shrinks as images finish."""
        index = torch.tensor(rows, device=_target(next(iter(self.content.values()))).device)

        def pick(value: float | torch.Tensor) -> float | torch.Tensor:
            return value[index] if isinstance(value, torch.Tensor) and value.dim() > 0 else value

        def targets(losses: nn.ModuleDict) -> dict[str, torch.Tensor]:  # a single target is shared by all
            return {k: t[index] if (t := _target(loss)).shape[0] > 1 else t for k, loss in losses.items()}

        cw, sw, tw = self.weights
        return StyleTransferObjective(
            self.extractor,
            targets(self.content),
            targets(self.style),
            content_weight=pick(cw),
            style_weight=pick(sw),
            tv_weight=pick(tw),
            style_layer_weights={k: pick(w) for k, w in self.style_layer_weights.items()},
            masks=self.masks.select(rows) if self.masks is not None else None,
        )


def _target(loss: nn.Module) -> torch.Tensor:
    assert isinstance(loss, (ContentLoss, StyleLoss))
    return loss.target

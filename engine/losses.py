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

EPS = 1e-8


def wide(tensor: torch.Tensor) -> torch.Tensor:
    """At least float32: statistics of bf16 features are summed in float32; float64 stays float64."""
    return tensor if tensor.dtype == torch.float64 else tensor.float()


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``(B, C, H, W) -> (B, C, C)``: channel co-activations averaged over positions, in float32 or more."""
    b, c, h, w = features.shape
    flat = wide(features.reshape(b, c, h * w))
    return torch.bmm(flat, flat.transpose(1, 2)) / (h * w)


def relative_mse(value: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-item mean squared error divided by the target's mean square (``(B,)``)."""
    dims = tuple(range(1, value.dim()))
    error = (wide(value) - wide(target)).pow(2).mean(dim=dims)
    scale = wide(target).pow(2).mean(dim=dims).clamp_min(EPS)
    return error / scale


class ContentLoss(nn.Module):
    """How far the features at one layer are from the photo's."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("target", target.detach())

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return relative_mse(features, self.target)


class StyleLoss(nn.Module):
    """How far the Gram matrix at one layer is from the painting's (or from a blend of paintings')."""

    def __init__(self, target_gram: torch.Tensor) -> None:
        super().__init__()
        if target_gram.dim() == 2:
            target_gram = target_gram.unsqueeze(0)
        self.register_buffer("target", wide(target_gram.detach()))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return relative_mse(gram_matrix(features), self.target)


class TVLoss(nn.Module):
    """Smoothness prior: penalizing pixel-to-pixel jumps hides the optimizer's high-frequency noise."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        dx = (image[..., :, 1:] - image[..., :, :-1]).pow(2).mean(dim=(1, 2, 3))
        dy = (image[..., 1:, :] - image[..., :-1, :]).pow(2).mean(dim=(1, 2, 3))
        return dx + dy


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
    """``content_weight * content + style_weight * style + tv_weight * tv`` for one or more images."""

    def __init__(
        self,
        extractor: nn.Module,
        content_targets: dict[str, torch.Tensor],
        style_targets: dict[str, torch.Tensor],
        *,
        content_weight: float,
        style_weight: float,
        tv_weight: float,
        style_layer_weights: dict[str, float] | None = None,
    ) -> None:
        super().__init__()
        self.extractor = extractor
        self.content = nn.ModuleDict({k: ContentLoss(v) for k, v in content_targets.items()})
        self.style = nn.ModuleDict({k: StyleLoss(v) for k, v in style_targets.items()})
        self.tv = TVLoss()
        n_style = len(style_targets)
        self.style_layer_weights = style_layer_weights or {k: 1.0 / n_style for k in style_targets}
        self.weights = (content_weight, style_weight, tv_weight)
        self.layers = frozenset(content_targets) | frozenset(style_targets)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The total per image (``(B,)``) and its parts, for progress reports."""
        features = self.extractor(image, self.layers)
        content = sum(loss(features[k]) for k, loss in self.content.items()) / len(self.content)
        style = sum(self.style_layer_weights[k] * loss(features[k]) for k, loss in self.style.items())
        tv = self.tv(image)
        cw, sw, tw = self.weights
        total = cw * content + sw * style + tw * tv
        return total, {"content": content, "style": style, "tv": tv}

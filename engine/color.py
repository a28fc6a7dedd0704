"""Colour preservation, after Gatys, Bethge, Hertzmann and Shechtman, "Preserving Color in Neural Artistic
Style Transfer" (2016). Both modes work on RGB tensors in 0..1 of shape ``(B, 3, H, W)``.

- ``luminance``: transfer style on the luminance channel only (the painting's luminance first matched to
  the photo's mean and spread), then put the photo's own chroma back.
- ``histogram``: recolour the painting so that its colour mean and covariance match the photo's, then
  transfer style as usual.
"""

from __future__ import annotations

import torch

_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]]
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", matrix.to(image), image)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    return _apply(_RGB_TO_YIQ, image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    return _apply(_YIQ_TO_RGB, image)


def luminance(image: torch.Tensor) -> torch.Tensor:
    """The Y channel, repeated on three channels so VGG sees a gray picture."""
    return rgb_to_yiq(image)[:, :1].expand(-1, 3, -1, -1).contiguous()


def match_luminance(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The painting's gray version with the photo's luminance mean and standard deviation."""
    y_style, y_content = luminance(style), luminance(content)
    mu_s, sd_s = y_style.mean(), y_style.std().clamp_min(1e-5)
    mu_c, sd_c = y_content.mean(), y_content.std()
    return ((y_style - mu_s) * (sd_c / sd_s) + mu_c).clamp(0, 1)


def restore_chroma(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The stylized luminance with the photo's chroma: the photo's colours, the painting's strokes."""
    y = rgb_to_yiq(stylized)[:, :1]
    iq = rgb_to_yiq(content)[:, 1:]
    return yiq_to_rgb(torch.cat([y, iq], dim=1)).clamp(0, 1)


def match_color_histogram(style: torch.Tensor, content: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Affinely recolour ``style`` so its colour mean and covariance equal ``content``'s.

    Uses ``x' = C_c^{1/2} C_s^{-1/2} (x - mu_s) + mu_c`` with symmetric square roots, the variant the
    paper reports as giving the most natural colours.
    """
    s = style.flatten(2).double()  # (B, 3, N)
    c = content.flatten(2).double()
    mu_s, mu_c = s.mean(dim=2, keepdim=True), c.mean(dim=2, keepdim=True)
    eye = eps * torch.eye(3, dtype=s.dtype, device=s.device)
    cov_s = _covariance(s - mu_s) + eye
    cov_c = _covariance(c - mu_c) + eye
    transform = _sqrtm(cov_c) @ torch.linalg.inv(_sqrtm(cov_s))
    out = transform @ (s - mu_s) + mu_c
    return out.reshape(style.shape).to(style.dtype).clamp(0, 1)


def _covariance(centered: torch.Tensor) -> torch.Tensor:
    return centered @ centered.transpose(1, 2) / centered.shape[2]


def _sqrtm(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    return vectors @ torch.diag_embed(values.clamp_min(0).sqrt()) @ vectors.transpose(-1, -2)

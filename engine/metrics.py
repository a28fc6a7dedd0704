"""One fixed way to say how well an image took a style and kept a photo's content.

Tests and benchmarks compare outputs of different programs (ours, pastiche's) with these numbers, so they
must not depend on any run's settings: the Caffe VGG19 with max pooling, the paper's layers, equal layer
weights, everything measured at the evaluated image's own size.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from engine.clips.motion import STILL, Motion, estimate, warp
from engine.images import fit_within
from engine.losses import gram_matrix, relative_mse
from engine.protocol import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS
from engine.vgg import feature_extractor

# A mean change (0..1) from frame to frame below this is a still clip (a quarter of a grey level):
# ``flicker`` divides by it instead, so a still source gives no infinity.
STILL_CHANGE = 1e-3


def _tensor(image: Image.Image) -> torch.Tensor:
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def _features(image: Image.Image, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
    extractor = feature_extractor("caffe", "cpu", "conv5_1", "max")
    with torch.no_grad():
        return extractor(_tensor(image), layers)


def style_distance(image: Image.Image, painting: Image.Image) -> float:
    """Mean relative Gram error over conv1_1..conv5_1, the painting seen at the image's longest side.

    0 means the image has exactly the painting's texture statistics; a photo typically scores near 1.
    """
    side = max(image.size)
    painting = painting.convert("RGB").resize(fit_within(*painting.size, side), Image.Resampling.LANCZOS)
    ours, theirs = _features(image, DEFAULT_STYLE_LAYERS), _features(painting, DEFAULT_STYLE_LAYERS)
    errors = [relative_mse(gram_matrix(ours[k]), gram_matrix(theirs[k])).item() for k in DEFAULT_STYLE_LAYERS]
    return float(np.mean(errors))


def content_distance(image: Image.Image, photo: Image.Image) -> float:
    """Relative feature error at conv4_2 against the photo resized to the image's size.

    0 means the same picture to VGG's eyes; an unrelated image scores about 1 or more.
    """
    photo = photo.convert("RGB").resize(image.size, Image.Resampling.LANCZOS)
    ours, theirs = _features(image, DEFAULT_CONTENT_LAYERS), _features(photo, DEFAULT_CONTENT_LAYERS)
    return float(np.mean([relative_mse(ours[k], theirs[k]).item() for k in DEFAULT_CONTENT_LAYERS]))


def temporal_change(frames: Sequence[Image.Image], motions: Sequence[Motion] | None = None) -> float:
    """Mean absolute change from each frame to the next (0..1 per channel, averaged over the pixels and
    the frame pairs).

    With ``motions`` (one per frame, the first ignored: ``engine.clips.motion``) each previous frame is
    first carried along its motion and only the pixels it covers count, so what is left is change that
    motion does not explain: flicker.
    """
    if len(frames) < 2:
        return 0.0
    changes = []
    for index in range(1, len(frames)):
        previous, current = frames[index - 1].convert("RGB"), frames[index].convert("RGB")
        mask = np.ones((current.height, current.width), dtype=bool)
        if motions is not None:
            previous, mask = warp(previous, motions[index])
        if not mask.any():
            continue
        difference = np.abs(np.asarray(current, np.float64) - np.asarray(previous, np.float64)) / 255.0
        changes.append(float(difference[mask].mean()))
    return float(np.mean(changes)) if changes else 0.0


def flicker(
    painted: Sequence[Image.Image], source: Sequence[Image.Image], *, compensate: bool = False
) -> float:
    """How much more a painted clip changes from frame to frame than its source did (1: as much).

    ``compensate``: the motion between the source's frames (estimated on the source, at the painting's
    size) is taken out of both first. A perfectly steady painting of a pan still changes more than the
    photo uncompensated (its strokes are sharper than the photo's detail), so the plain ratio bounds
    flicker from above; the compensated one is the residue, and small sources make it noisy.

    A source that changes less than ``STILL_CHANGE`` counts as changing that much, so a still source
    gives a finite number: a still painting of it scores its own change over ``STILL_CHANGE`` (0 when it
    does not change at all), a moving one a large number (a mean change of 0.1 scores 100).
    """
    if len(painted) != len(source):
        raise ValueError("the painting and its source must have as many frames")
    size = painted[0].size
    source = [f.convert("RGB").resize(size, Image.Resampling.LANCZOS) for f in source]
    motions = None
    if compensate:
        motions = [STILL] + [estimate(a, b) for a, b in itertools.pairwise(source)]
    base = temporal_change(source, motions)
    return temporal_change(painted, motions) / max(base, STILL_CHANGE)

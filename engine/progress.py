"""Progress of one run across its scales: steps, ETA, previews, the time budget and cancellation.

The optimizer calls ``on_step`` after every step; this module decides what to do with it, so the loop
itself stays free of bookkeeping. Reports are throttled (a GPU makes hundreds of steps a second), but a
cancel request is honoured at the very next step.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from engine.errors import Cancelled
from engine.optimize import StepInfo, StopScale
from engine.protocol import Progress
from engine.schedule import Scale

REPORT_INTERVAL = 0.25  # seconds between progress reports


class ProgressTracker:
    def __init__(
        self,
        scales: list[Scale],
        *,
        aspect: float,
        progress: Callable[[Progress], None] | None,
        should_cancel: Callable[[], bool] | None,
        time_budget: float | None,
        preview_every: int,
        make_preview: Callable[[torch.Tensor], bytes],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.scales = scales
        self.progress = progress
        self.should_cancel = should_cancel
        self.preview_every = preview_every
        self.make_preview = make_preview
        self.clock = clock
        self.started = clock()
        self.total_steps = sum(s.steps for s in scales)
        self.step = 0
        self._pixels = [s.side * s.side * min(aspect, 1 / aspect) for s in scales]  # area of each scale
        self._work_left = sum(s.steps * p for s, p in zip(scales, self._pixels, strict=True))
        self._work_done = 0.0
        self._optimizing = 0.0  # seconds spent inside steps, excluding set-up between scales
        self._last_report = float("-inf")
        self._deadlines = self._split_budget(time_budget)
        self._scale = 0
        self._scale_steps = 0
        self._size = (0, 0)
        self._step_started = 0.0

    def _split_budget(self, budget: float | None) -> list[float]:
        """Each scale may run until its share of the budget (by cost) has passed, so the run always
        reaches the final resolution, and time a scale leaves unused flows on to the next."""
        if budget is None:
            return [float("inf")] * len(self.scales)
        costs = [s.steps * p for s, p in zip(self.scales, self._pixels, strict=True)]
        total, acc, deadlines = sum(costs) or 1.0, 0.0, []
        for cost in costs:
            acc += cost
            deadlines.append(self.started + budget * acc / total)
        return deadlines

    def check_cancel(self) -> None:
        if self.should_cancel is not None and self.should_cancel():
            raise Cancelled(f"cancelled at step {self.step} of {self.total_steps}")

    def begin_scale(self, index: int, width: int, height: int) -> Callable[[StepInfo], None]:
        """Start scale ``index`` (0-based) and return the callback its optimizer calls after each step."""
        self.check_cancel()
        self._scale, self._scale_steps, self._size = index, 0, (width, height)
        self._step_started = self.clock()
        return self._on_step

    def end_scale(self, steps_taken: int, losses: dict[str, float], image: torch.Tensor) -> None:
        """Account for steps a scale did not need (converged, out of time) and report where it ended."""
        skipped = self.scales[self._scale].steps - steps_taken
        if skipped > 0:
            self.total_steps -= skipped
            self._work_left -= skipped * self._pixels[self._scale]
        unseen = self.preview_every > 0 and self.step % self.preview_every != 0  # no preview at this step yet
        self._report(losses, image if unseen else None, force=True)

    def _on_step(self, info: StepInfo) -> None:
        now = self.clock()
        self._optimizing += now - self._step_started
        self.step += 1
        self._scale_steps = info.step
        pixels = self._pixels[self._scale]
        self._work_done += pixels
        self._work_left -= pixels
        self.check_cancel()
        preview_due = self.preview_every > 0 and self.step % self.preview_every == 0
        if preview_due or now - self._last_report >= REPORT_INTERVAL:
            losses = {term: values[0] for term, values in info.losses().items()}  # one image (item())
            self._report(losses, info.image if preview_due else None)
        self._step_started = self.clock()
        if now >= self._deadlines[self._scale]:
            raise StopScale

    def eta(self) -> float | None:
        if self._work_done == 0:
            return None
        remaining = self._optimizing / self._work_done * max(self._work_left, 0.0)
        deadline = self._deadlines[-1]
        return min(remaining, max(0.0, deadline - self.clock()))

    def _report(self, losses: dict[str, float], image: torch.Tensor | None, force: bool = False) -> None:
        if self.progress is None:
            return
        now = self.clock()
        if not force and now - self._last_report < REPORT_INTERVAL and image is None:
            return
        self._last_report = now
        self.progress(
            Progress(
                step=self.step,
                total_steps=self.total_steps,
                scale=self._scale + 1,
                scales=len(self.scales),
                width=self._size[0],
                height=self._size[1],
                losses=losses,
                elapsed=now - self.started,
                eta=self.eta(),
                preview=self.make_preview(image) if image is not None else None,
            )
        )

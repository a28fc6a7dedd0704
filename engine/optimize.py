"""The optimization loop for one scale: pixels in, better pixels out, for one image or a batch.

L-BFGS (the paper's choice, quick to converge; ``engine.lbfgs``) or Adam (steady). Both keep each image of
a batch on the trajectory it would follow alone, and every stop is per image: an image that converged, ran
out of time or was cancelled leaves the batch and the others carry on with fewer rows, so no step is spent
on it any more. One optimizer step is one forward and backward pass through VGG for every image still in
the batch. Between steps the loop hands control to ``on_step``, which reports progress and says which
images stop (cancel, time budget).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Protocol

import torch

from engine.lbfgs import BatchLBFGS

ADAM_LR = 0.02  # in 0..1 pixel units
LBFGS_HISTORY = 50
CONVERGENCE_WINDOW = 10


class Objective(Protocol):
    """The loss of a batch: the total per image ``(N,)`` and its named parts (each ``(N,)``)."""

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]: ...

    def select(self, rows: list[int]) -> Objective:
        """The same objective for a subset of the images (those still optimizing)."""
        ...


@dataclass
class StepInfo:
    """What ``on_step`` sees after each step. ``losses()`` syncs with the device, so call it sparingly.

    ``items`` names the images still optimizing (their index in the batch the run started with), one per
    row of ``image``.
    """

    step: int  # 1-based, within this scale
    image: torch.Tensor  # the images still optimizing (no grad); read only
    losses: Callable[[], dict[str, list[float]]]  # each term, one value per row of ``image``
    items: tuple[int, ...]

    def item(self, index: int) -> StepInfo:
        """The view of image ``index`` of the batch, as if it had been optimized alone."""
        row = self.items.index(index)
        whole = self.losses
        return StepInfo(
            self.step, self.image[row : row + 1], lambda: {k: [v[row]] for k, v in whole().items()},
            (index,),
        )  # fmt: skip


@dataclass
class Outcome:
    """Where one image of the batch ended this scale."""

    image: torch.Tensor  # (1, C, H, W), clamped to 0..1
    steps: int
    losses: dict[str, float]  # at the last evaluated image


def _untuned(shape: torch.Size) -> contextlib.AbstractContextManager[object]:
    return contextlib.nullcontext()


class StopScale(Exception):
    """Raised by ``on_step`` to end this scale early for every image still optimizing (time budget)."""


def optimize(
    image: torch.Tensor,
    objective: Objective,
    *,
    optimizer: str,
    steps: int,
    tolerance: float = 0.0,
    on_step: Callable[[StepInfo], Collection[int] | None] | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager[object]] = contextlib.nullcontext,
    tuning: Callable[[torch.Size], contextlib.AbstractContextManager[object]] = _untuned,
) -> list[Outcome]:
    """Run up to ``steps`` steps from ``image`` (one image or a batch ``(N, C, H, W)``); return where each
    image ended, in order.

    ``on_step`` may return the images (by index) that stop now, or raise ``StopScale`` to stop all.
    With L-BFGS, ``tolerance`` stops an image early once its loss improves by less than that fraction
    per step, averaged over the last ten steps (0 disables it), and a non-finite loss (a diverging step)
    ends that image's scale with its last finite image instead of a picture of noise. Adam runs its full
    budget: its loss is noisy. ``autocast`` wraps every forward pass; ``tuning`` every forward and backward
    pass, given the batch's shape (the device's convolution tuning; the batch shrinks as images leave).
    """
    lbfgs = optimizer == "lbfgs"
    if optimizer not in ("lbfgs", "adam"):
        raise ValueError(f"unknown optimizer {optimizer!r}")
    x = image.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)
    stepper: BatchLBFGS | _BatchAdam = (
        BatchLBFGS(x, history=min(LBFGS_HISTORY, steps)) if lbfgs else _BatchAdam(x)
    )
    items = list(range(image.shape[0]))  # the image of each row still optimizing
    last: dict[str, torch.Tensor] = {}
    history: dict[int, list[float]] = {i: [] for i in items}  # each image's L-BFGS loss at every step
    taken = dict.fromkeys(items, 0)
    outcomes: dict[int, Outcome] = {}

    def closure() -> torch.Tensor:
        with tuning(stepper.x.shape):
            with autocast():
                total, parts = objective(stepper.x)
            last.clear()
            last.update({"total": total.detach(), **{k: v.detach() for k, v in parts.items()}})
            total.sum().backward()
        return total.detach()

    def losses(rows: list[int]) -> Callable[[], dict[str, list[float]]]:
        return lambda: {k: v[rows].float().tolist() for k, v in last.items()}

    def finish(row: int, picture: torch.Tensor) -> None:
        item = items[row]
        values = {k: float(v[row]) for k, v in last.items()}
        outcomes[item] = Outcome(picture.unsqueeze(0).clamp(0.0, 1.0), taken[item], values)

    good = x.detach().clone()  # L-BFGS: each image's latest state whose loss was finite
    for step in range(1, steps + 1):
        before = stepper.x.detach().clone() if lbfgs else None
        totals = stepper.step(closure)  # each image's loss before this step
        current = stepper.x.detach()
        leaving: dict[int, torch.Tensor] = {}  # row -> the picture it ends with
        if lbfgs:
            assert before is not None
            for row, value in enumerate(totals.tolist()):  # L-BFGS has synced for the direction already
                item = items[row]
                if not math.isfinite(value):
                    leaving[row] = good[row]
                    continue
                history[item].append(value)
                if row in stepper.stalled or (tolerance > 0 and _converged(history[item], tolerance)):
                    taken[item] = step
                    leaving[row] = current[row]
            good = before
        else:
            with torch.no_grad():
                stepper.x.clamp_(0.0, 1.0)
        staying = [row for row in range(len(items)) if row not in leaving]
        for row in staying:
            taken[items[row]] = step
        if on_step is not None and staying:
            view = current if len(staying) == len(items) else current[staying]
            info = StepInfo(step, view, losses(staying), tuple(items[row] for row in staying))
            try:
                stops = set(on_step(info) or ())
            except StopScale:
                stops = {items[row] for row in staying}
            leaving.update({row: current[row] for row in staying if items[row] in stops})
        if leaving:
            for row, picture in leaving.items():
                finish(row, picture)
            keep = [row for row in range(len(items)) if row not in leaving]
            if not keep:
                break
            stepper.keep(keep)
            objective = objective.select(keep)
            good = good[keep]
            items = [items[row] for row in keep]
    for row in range(len(items)):
        if items[row] not in outcomes:
            finish(row, stepper.x.detach()[row])
    return [outcomes[i] for i in range(image.shape[0])]


class _BatchAdam:
    """``torch.optim.Adam`` on the batch (it works element by element), able to drop rows like L-BFGS."""

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x
        self.optimizer = torch.optim.Adam([x], lr=ADAM_LR)
        self.stalled: list[int] = []

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        losses = closure()
        self.optimizer.step()
        return losses

    def keep(self, rows: list[int]) -> None:
        index = torch.tensor(rows, device=self.x.device)
        state = self.optimizer.state[self.x]
        self.x = self.x.detach()[index].requires_grad_(True)
        self.optimizer = torch.optim.Adam([self.x], lr=ADAM_LR)
        self.optimizer.state[self.x] = {  # the moments per element; the step count is shared
            k: v[index] if k != "step" else v.clone() for k, v in state.items()
        }


def _converged(history: list[float], tolerance: float) -> bool:
    """True when the loss fell by less than ``tolerance`` per step over the last ten steps."""
    if len(history) <= CONVERGENCE_WINDOW:
        return False
    old, new = history[-CONVERGENCE_WINDOW - 1], history[-1]
    return (old - new) / max(abs(new), 1e-12) < tolerance * CONVERGENCE_WINDOW

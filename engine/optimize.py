"""The optimization loop for one scale: pixels in, better pixels out.

L-BFGS (the paper's choice, quick to converge) or Adam (steady, and each image of a batch keeps its own
trajectory). One optimizer step is one forward and backward pass through VGG. Between steps the loop
hands control to ``on_step``, which reports progress and may stop the run (cancel, time budget).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

ADAM_LR = 0.02  # in 0..1 pixel units
LBFGS_HISTORY = 50
CONVERGENCE_WINDOW = 10


@dataclass
class StepInfo:
    """What ``on_step`` sees after each step. ``losses()`` syncs with the device, so call it sparingly."""

    step: int  # 1-based, within this scale
    image: torch.Tensor  # the current image or batch (no grad); read only
    losses: Callable[[], dict[str, list[float]]]  # each term, one value per image of the batch

    def item(self, index: int) -> StepInfo:
        """The view of one image of a batch, as if it had been optimized alone."""
        whole = self.losses
        return StepInfo(
            self.step, self.image[index : index + 1], lambda: {k: v[index] for k, v in whole().items()}
        )


class StopScale(Exception):
    """Raised by ``on_step`` to end this scale early and keep the image so far (time budget spent)."""


def optimize(
    image: torch.Tensor,
    objective: Callable[[torch.Tensor], tuple[torch.Tensor, dict[str, torch.Tensor]]],
    *,
    optimizer: str,
    steps: int,
    tolerance: float = 0.0,
    on_step: Callable[[StepInfo], None] | None = None,
    autocast: Callable[[], contextlib.AbstractContextManager[None]] = contextlib.nullcontext,
) -> tuple[torch.Tensor, int, dict[str, list[float]]]:
    """Run up to ``steps`` steps from ``image`` (one image or a batch); return the result, the steps taken
    and the last losses, per image.

    With L-BFGS, ``tolerance`` stops early once the loss improves by less than that fraction per step,
    averaged over the last ten steps (0 disables it), and a non-finite loss (a diverging step) ends the
    scale with the last finite image instead of a picture of noise. Adam runs its full budget: its loss is
    noisy, and a fixed schedule keeps every image of a batch on exactly the trajectory it would have alone.
    """
    x = image.detach().clone(memory_format=torch.contiguous_format).requires_grad_(True)  # L-BFGS flattens it
    last: dict[str, torch.Tensor] = {}

    def evaluate() -> torch.Tensor:
        with autocast():
            total, parts = objective(x)
        last.clear()
        last.update({"total": total.detach(), **{k: v.detach() for k, v in parts.items()}})
        return total.sum()

    def losses() -> dict[str, list[float]]:
        return {k: v.float().tolist() for k, v in last.items()}

    if optimizer == "lbfgs":
        opt: torch.optim.Optimizer = torch.optim.LBFGS(
            [x], lr=1.0, max_iter=1, history_size=LBFGS_HISTORY, tolerance_grad=0.0, tolerance_change=0.0
        )
    elif optimizer == "adam":
        opt = torch.optim.Adam([x], lr=ADAM_LR)
    else:
        raise ValueError(f"unknown optimizer {optimizer!r}")

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        loss = evaluate()
        loss.backward()
        return loss

    history: list[float] = []  # the L-BFGS loss at every step
    good = x.detach().clone()  # the latest image whose loss was finite
    taken = 0
    for step in range(1, steps + 1):
        before = x.detach().clone() if optimizer == "lbfgs" else None
        loss = opt.step(closure)  # the loss of the image before this step
        if optimizer == "adam":
            with torch.no_grad():
                x.clamp_(0.0, 1.0)
        else:
            value = float(loss.detach())  # L-BFGS has synced for it already
            if not math.isfinite(value):
                x.data.copy_(good)
                break
            good = before
            history.append(value)
            if tolerance > 0 and _converged(history, tolerance):
                taken = step
                break
        taken = step
        if on_step is not None:
            try:
                on_step(StepInfo(step, x.detach(), losses))
            except StopScale:
                break
    with torch.no_grad():
        result = x.detach().clamp(0.0, 1.0)
    return result, taken, losses()


def _converged(history: list[float], tolerance: float) -> bool:
    """True when the loss fell by less than ``tolerance`` per step over the last ten steps."""
    if len(history) <= CONVERGENCE_WINDOW:
        return False
    old, new = history[-CONVERGENCE_WINDOW - 1], history[-1]
    return (old - new) / max(abs(new), 1e-12) < tolerance * CONVERGENCE_WINDOW

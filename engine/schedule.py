"""Quality tiers and the coarse-to-fine schedule.

Optimizing at full resolution from the start wastes most steps on what a small image settles just as
well: the large shapes. So a run starts near 128 px, doubles the size scale by scale up to the target, and
warm-starts each scale from the upsampled result of the last. Later scales need fewer steps, and each
costs ~4x more.

A tier is a target size and a step budget. Accelerators get twice the side of the CPU for the same tier,
since the same tier should feel equally quick on either.

The budgets come from measurements (docs/benchmarks.md, "The sketch"; ``python -m bench.sketch``): the
style distance of a picture still at 128 px stops improving after 20-30 steps whatever it starts from, so
``normal`` spends 20 steps there and 20 at each finer scale, which buys 512 px on two CPU cores in about
the minute that 256 px with 100 + 50 steps took (its style distance lower, its content distance higher
than that 256 px result at its own size, and far lower than it shown at 512 px). ``high`` on an accelerator
paints the same size with the full budget, to convergence. On the CPU it paints twice the side: normal's
512 px picture, refined at 1024 px with a few steps (``cpu_budget``), what two cores with native bf16
(``ENGINE_PRECISION``) finish within two minutes, and two float32 cores no slower than high's 512 px budget
before (docs/benchmarks.md, issue 22).

The ``instant`` tier has no budget: its picture is the feed-forward sketch of ``engine.sketch``, which is
the result, so its plan is one "scale" of no steps at the final size. Its side is 1024 px on the CPU and on
accelerators alike: the sketch always runs on the CPU (onnxruntime, whatever device optimizes), where one
pass takes about 0.3 s at 1024 px on two cores, so no device needs a smaller one to feel instant; a larger
sketch only makes its strokes look finer. Like every tier it is still capped by the photo's own size and
``OUTPUT_MAX_SIDE`` (``Engine._target_side``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

COARSEST_SIDE = 128
HIGH_CPU_FINAL_STEPS = 20  # steps at 1024 px: within two minutes on two bf16 cores, and in fp32 no slower
# than high's 512 px budget before (docs/benchmarks.md, issue 22)


@dataclass(frozen=True)
class Budget:
    """Steps per scale: the coarsest, each one between, and the finest (``later_steps`` when not set)."""

    first_steps: int
    later_steps: int
    final_steps: int | None = None

    def steps(self, scales: int) -> list[int]:
        if scales == 1:
            return [self.first_steps]
        final = self.later_steps if self.final_steps is None else self.final_steps
        return [self.first_steps] + [self.later_steps] * (scales - 2) + [final]


@dataclass(frozen=True)
class Tier:
    name: str
    side_cpu: int
    side_accelerated: int
    first_steps: int  # at the coarsest scale, where the picture is composed
    later_steps: int  # at each finer scale, which mostly refines what the last one found
    cpu_budget: Budget | None = None  # the CPU's own steps, where they differ from the accelerators'

    def side(self, accelerated: bool) -> int:
        return self.side_accelerated if accelerated else self.side_cpu

    def budget(self, accelerated: bool) -> Budget:
        if not accelerated and self.cpu_budget is not None:
            return self.cpu_budget
        return Budget(self.first_steps, self.later_steps)

    @property
    def optimized(self) -> bool:
        """False for the tier whose result is the sketch (``instant``): no optimizer steps at all."""
        return self.first_steps > 0


TIERS: dict[str, Tier] = {
    "instant": Tier("instant", side_cpu=1024, side_accelerated=1024, first_steps=0, later_steps=0),
    "draft": Tier("draft", side_cpu=128, side_accelerated=256, first_steps=64, later_steps=40),
    "normal": Tier("normal", side_cpu=512, side_accelerated=1024, first_steps=20, later_steps=20),
    # On the CPU: normal's 512 px picture, refined at 1024 px (bench/precision.py, docs/benchmarks.md).
    "high": Tier("high", 1024, 1024, 150, 80, cpu_budget=Budget(20, 20, HIGH_CPU_FINAL_STEPS)),
}


@dataclass(frozen=True)
class Scale:
    side: int  # longest side of the image at this scale
    steps: int


def scale_sides(target_side: int, multiscale: bool = True) -> list[int]:
    """Longest sides from near 128 px up to ``target_side``, doubling each time."""
    if not multiscale or target_side <= COARSEST_SIDE * 1.5:
        return [target_side]
    count = round(math.log2(target_side / COARSEST_SIDE)) + 1
    return [round(target_side / 2 ** (count - 1 - i)) for i in range(count)]


def plan(
    tier: Tier,
    target_side: int,
    *,
    accelerated: bool = False,
    multiscale: bool = True,
    total_steps: int | None = None,
) -> list[Scale]:
    """The scales of one run and their step budgets on the CPU or an accelerator; ``total_steps``
    overrides the tier's budget.

    A tier that is not ``optimized`` plans one scale of no steps at the target side (``total_steps`` is
    ignored: there is nothing to spend them on).
    """
    if not tier.optimized:
        return [Scale(target_side, 0)]
    sides = scale_sides(target_side, multiscale)
    budget = tier.budget(accelerated).steps(len(sides))
    if total_steps is not None:
        budget = _redistribute(budget, total_steps)
    return [Scale(side, steps) for side, steps in zip(sides, budget, strict=True) if steps > 0]


def _redistribute(budget: list[int], total: int) -> list[int]:
    """Keep the tier's proportions between scales but sum to ``total`` (the finest scale gets at least 1)."""
    shares = [b / sum(budget) * total for b in budget]
    steps = [math.floor(s) for s in shares]
    for i in sorted(range(len(steps)), key=lambda i: shares[i] - steps[i], reverse=True)[
        : total - sum(steps)
    ]:
        steps[i] += 1
    if steps[-1] == 0:
        donor = max(range(len(steps)), key=steps.__getitem__)
        steps[donor] -= 1
        steps[-1] = 1
    return steps


def relative_cost(scales: list[Scale], aspect: float = 1.0) -> list[float]:
    """Each scale's share of the run's time: steps times pixels (VGG's cost is linear in pixels)."""
    costs = [s.steps * s.side * s.side * aspect for s in scales]
    total = sum(costs) or 1.0
    return [c / total for c in costs]

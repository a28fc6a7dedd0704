"""Quality tiers and the coarse-to-fine plan."""

from __future__ import annotations

import pytest

from engine.schedule import TIERS, Scale, plan, relative_cost, scale_sides


@pytest.mark.parametrize(
    ("target", "sides"),
    [
        (64, [64]),
        (128, [128]),
        (180, [180]),
        (256, [128, 256]),
        (300, [150, 300]),
        (512, [128, 256, 512]),
        (1024, [128, 256, 512, 1024]),
    ],
)
def test_scales_double_from_near_128(target: int, sides: list[int]) -> None:
    assert scale_sides(target) == sides


def test_single_scale_when_asked() -> None:
    assert scale_sides(1024, multiscale=False) == [1024]


def test_tiers_are_twice_as_large_on_accelerators() -> None:
    for tier in TIERS.values():
        assert tier.side(accelerated=True) == 2 * tier.side(accelerated=False)
    assert TIERS["draft"].side(False) == 128
    assert TIERS["normal"].side(False) == 256
    assert TIERS["normal"].side(True) == 512
    assert TIERS["high"].side(True) == 1024


def test_plan_uses_the_tier_budget() -> None:
    tier = TIERS["normal"]
    assert plan(tier, 256) == [Scale(128, tier.first_steps), Scale(256, tier.later_steps)]


@pytest.mark.parametrize("total", [1, 2, 3, 7, 150, 1000])
def test_step_override_sums_exactly_and_reaches_the_final_scale(total: int) -> None:
    scales = plan(TIERS["normal"], 512, total_steps=total)
    assert sum(s.steps for s in scales) == total
    assert scales[-1].side == 512
    assert scales[-1].steps >= 1


def test_relative_cost_weights_pixels() -> None:
    costs = relative_cost([Scale(128, 100), Scale(256, 25)])
    assert costs == pytest.approx([0.5, 0.5])

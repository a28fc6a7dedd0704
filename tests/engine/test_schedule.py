"""Quality tiers and the coarse-to-fine plan."""

from __future__ import annotations

import pytest

from engine.protocol import QUALITIES, StyleSettings, batch_group, leading_batch
from engine.schedule import HIGH_CPU_FINAL_STEPS, TIERS, Scale, plan, relative_cost, scale_sides
from engine.workers.batching import batch_limits


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


def test_tiers_are_twice_as_large_on_accelerators_but_high() -> None:
    for name, tier in TIERS.items():
        if tier.optimized and name != "high":
            assert tier.side(accelerated=True) == 2 * tier.side(accelerated=False)
    assert TIERS["draft"].side(False) == 128
    assert TIERS["normal"].side(False) == 512
    assert TIERS["normal"].side(True) == 1024
    assert TIERS["high"].side(True) == TIERS["high"].side(False) == 1024


def test_high_on_the_cpu_refines_the_normal_picture_at_full_size() -> None:
    """On the CPU, high paints normal's 512 px picture and refines it at 1024 px with a few steps; on an
    accelerator it keeps its full budget."""
    high, normal = TIERS["high"], TIERS["normal"]
    cpu = plan(high, 1024)
    assert cpu[:-1] == plan(normal, 512)
    assert cpu[-1] == Scale(1024, HIGH_CPU_FINAL_STEPS)
    assert plan(high, 1024, accelerated=True) == [
        Scale(128, 150),
        Scale(256, 80),
        Scale(512, 80),
        Scale(1024, 80),
    ]
    assert plan(high, 700) == [Scale(175, 20), Scale(350, 20), Scale(700, HIGH_CPU_FINAL_STEPS)]
    assert plan(high, 150) == [Scale(150, 20)]  # one scale: the first budget
    assert plan(normal, 1024) == plan(normal, 1024, accelerated=True)  # no budget of its own on the CPU


def test_a_step_override_spreads_over_the_cpu_budget() -> None:
    scales = plan(TIERS["high"], 1024, total_steps=40)
    assert sum(s.steps for s in scales) == 40
    assert [s.side for s in scales] == [128, 256, 512, 1024]


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


def test_every_quality_is_a_tier_in_order() -> None:
    assert QUALITIES == ("instant", "draft", "normal", "high")
    assert set(TIERS) == set(QUALITIES)
    assert [name for name, tier in TIERS.items() if not tier.optimized] == ["instant"]


def test_the_instant_tier_is_one_sketch_at_1024_px_everywhere() -> None:
    instant = TIERS["instant"]
    assert instant.side(accelerated=False) == instant.side(accelerated=True) == 1024
    assert plan(instant, 1024) == [Scale(1024, 0)]
    assert plan(instant, 300, multiscale=True, total_steps=50) == [Scale(300, 0)]  # nothing to spend them on
    assert relative_cost(plan(instant, 300)) == [0.0]


def test_an_instant_job_shares_a_batch_with_nobody() -> None:
    instant = StyleSettings(quality="instant")
    assert batch_group(instant) is None
    order = [("a", instant), ("b", instant), ("c", StyleSettings(quality="draft"))]
    assert leading_batch(order, lambda item: batch_group(item[1]), 4) == [order[0]]
    assert batch_group(StyleSettings(quality="draft", init="sketch")) == batch_group(
        StyleSettings(quality="draft")
    )  # the start is per image


def test_batch_limits_name_only_the_optimized_tiers() -> None:
    """A tier a worker does not name counts as 1 at the dispatchers: the sketches run one by one."""
    for limits in (
        batch_limits(4, "cpu", output_max_side=1024),
        batch_limits("auto", "cpu", output_max_side=1024),
        batch_limits("auto", "cuda:0 (H100)", output_max_side=1024, free_bytes=40 * 2**30),
    ):
        assert set(limits) == {"draft", "normal", "high"}

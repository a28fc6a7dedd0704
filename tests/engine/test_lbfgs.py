"""Batched L-BFGS: each row follows torch.optim.LBFGS's trajectory for that row alone."""

from __future__ import annotations

import torch

from engine.lbfgs import BatchLBFGS
from engine.losses import StyleTransferObjective, gram_matrix
from engine.optimize import Outcome, StepInfo, optimize
from engine.vgg import feature_extractor


def reference(start: torch.Tensor, loss, steps: int, history: int) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    """torch.optim.LBFGS exactly as the engine configured it before: the trajectory of one row."""
    x = start.clone().requires_grad_(True)
    opt = torch.optim.LBFGS(
        [x], lr=1.0, max_iter=1, history_size=history, tolerance_grad=0.0, tolerance_change=0.0
    )

    def closure() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        value = loss(x).sum()
        value.backward()
        return value

    path = []
    for _ in range(steps):
        opt.step(closure)
        path.append(x.detach().clone())
    return path


def batched(start: torch.Tensor, loss, steps: int, history: int) -> list[torch.Tensor]:  # type: ignore[no-untyped-def]
    opt = BatchLBFGS(start.clone().requires_grad_(True), history=history)

    def closure() -> torch.Tensor:
        value = loss(opt.x)
        value.sum().backward()
        return value.detach()

    path = []
    for _ in range(steps):
        opt.step(closure)
        path.append(opt.x.detach().clone())
    return path


def row_loss(row: torch.Tensor, kind: int) -> torch.Tensor:
    """A different function per kind: two quadratics of different curvature, a Rosenbrock valley, and a
    concave bowl (negative curvature: every pair is rejected, so that row's history stays empty)."""
    flat = row.reshape(-1)
    scales = torch.linspace(0.5, 4.0, flat.shape[0], dtype=row.dtype)
    if kind == 0:
        return (scales * flat**2).sum() + 1.0  # a minimum above zero: the relative improvement vanishes
    if kind == 1:
        return (scales.flip(0) * (flat - 0.3) ** 2).sum() + (flat**4).sum()
    if kind == 2:
        return ((1 - flat[:-1]) ** 2 + 10 * (flat[1:] - flat[:-1] ** 2) ** 2).sum()
    return -0.01 * (flat**2).sum()


def rows_loss(x: torch.Tensor, kinds: list[int] | None = None) -> torch.Tensor:
    """Row ``i`` of ``x`` under function ``kinds[i]`` (default: row ``i`` under function ``i``)."""
    kinds = kinds if kinds is not None else list(range(x.shape[0]))
    return torch.stack([row_loss(x[i], kind) for i, kind in enumerate(kinds)])


def vgg_loss() -> StyleTransferObjective:
    torch.manual_seed(0)
    extractor = feature_extractor("caffe", "cpu", "conv2_1", "max")
    with torch.no_grad():
        content = extractor(torch.rand(1, 3, 20, 24), ("conv2_1",))
        style = {"conv1_1": gram_matrix(extractor(torch.rand(1, 3, 16, 16), ("conv1_1",))["conv1_1"])}
    return StyleTransferObjective(
        extractor, content, style, content_weight=1, style_weight=10, tv_weight=1e-3
    )


def test_one_row_is_torch_lbfgs_bit_for_bit() -> None:
    """A single image is optimized exactly as before: same dot products, same fused updates, same first
    step, and the history wrapping around (history 4 over 12 steps)."""
    objective = vgg_loss()
    start = torch.rand(1, 3, 20, 24, generator=torch.Generator().manual_seed(1))
    theirs = reference(start, lambda x: objective(x)[0], 12, history=4)
    ours = batched(start, lambda x: objective(x)[0], 12, history=4)
    for step, (a, b) in enumerate(zip(theirs, ours, strict=True)):
        assert torch.equal(a, b), f"step {step + 1}"


def test_each_row_follows_its_own_trajectory_in_float64() -> None:
    """Rows with different functions, curvatures and accepted-pair counts (one rejects every pair, so the
    rows' ring buffers drift apart) each match their single run."""
    start = torch.rand(4, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    ours = batched(start, rows_loss, 15, history=3)
    for row in range(4):
        theirs = reference(start[row : row + 1], lambda x, r=row: rows_loss(x, [r]), 15, history=3)
        for step, (a, b) in enumerate(zip(theirs, ours, strict=True)):
            assert torch.allclose(a, b[row : row + 1], rtol=1e-12, atol=1e-12), (row, step + 1)


def test_dropping_rows_leaves_the_others_on_their_paths() -> None:
    start = torch.rand(3, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    opt = BatchLBFGS(start.clone().requires_grad_(True), history=5)
    kept = [0, 2]
    kinds = [0, 1, 2]

    def closure() -> torch.Tensor:
        value = rows_loss(opt.x, kinds)
        value.sum().backward()
        return value.detach()

    for step in range(10):
        if step == 4:
            opt.keep(kept)
            kinds = kept
        opt.step(closure)
    for position, row in enumerate(kept):
        (alone,) = reference(start[row : row + 1], lambda x, r=row: rows_loss(x, [r]), 10, history=5)[-1:]
        assert torch.allclose(opt.x[position : position + 1].detach(), alone, rtol=1e-12, atol=1e-12)


class RowsObjective:
    """``rows_loss`` as an engine objective over a subset of its rows."""

    def __init__(self, rows: list[int]) -> None:
        self.rows = rows

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return rows_loss(image, self.rows), {}

    def select(self, rows: list[int]) -> RowsObjective:
        return RowsObjective([self.rows[i] for i in rows])


def test_optimize_stops_each_image_on_its_own() -> None:
    """Row 0 (a quadratic) converges, row 1 is stopped by ``on_step`` at step 3, rows 2 and 3 run on; each
    ends where it would alone."""
    start = torch.rand(4, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    seen: list[tuple[int, ...]] = []

    def on_step(info: StepInfo) -> set[int]:
        seen.append(info.items)
        assert info.image.shape[0] == len(info.items)
        return {1} if info.step == 3 else set()

    outcomes = optimize(
        start, RowsObjective([0, 1, 2, 3]), optimizer="lbfgs", steps=40, tolerance=1e-4, on_step=on_step
    )
    assert all(isinstance(o, Outcome) for o in outcomes)
    assert outcomes[1].steps == 3
    assert 3 < outcomes[0].steps < 40  # converged
    assert outcomes[2].steps == outcomes[3].steps == 40
    assert seen[0] == (0, 1, 2, 3)
    assert seen[-1] == (2, 3)
    for row, outcome in enumerate(outcomes):
        alone = optimize(
            start[row : row + 1], RowsObjective([row]), optimizer="lbfgs", steps=outcome.steps, tolerance=0
        )[0]
        assert torch.allclose(outcome.image, alone.image, rtol=1e-12, atol=1e-12), row


def test_optimize_ends_a_diverging_image_with_its_last_finite_state() -> None:
    class Explodes(RowsObjective):
        def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            total, parts = super().__call__(image)
            if 1 in self.rows and self.calls >= 4:
                total = total.clone()
                total[self.rows.index(1)] = float("nan")
            self.calls += 1
            return total, parts

        calls = 0

        def select(self, rows: list[int]) -> Explodes:
            picked = Explodes([self.rows[i] for i in rows])
            picked.calls = self.calls
            return picked

    start = torch.rand(2, 2, 3, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    outcomes = optimize(start, Explodes([0, 1]), optimizer="lbfgs", steps=8)
    assert outcomes[1].steps == 4
    assert torch.isfinite(outcomes[1].image).all()
    assert outcomes[0].steps == 8

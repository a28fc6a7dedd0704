"""L-BFGS for a batch of images: each image (row) keeps its own history, direction and step.

``torch.optim.LBFGS`` treats its parameters as one vector, so in a batch one image's curvature would steer
every other image's step. This is torch's algorithm as the engine configures it (one iteration per step,
no line search, ``lr`` 1, no tolerance checks, the first step scaled by ``min(1, 1/|g|_1)``, a pair kept
only when ``s.y > 1e-10``, the initial Hessian ``s.y / y.y``) applied to each row on its own, with the
rows' arithmetic batched so that the device works on all of them at once.

For a single row every operation is the one torch performs (the dot products go to BLAS's ``dot`` as in
torch; the updates are fused multiply-adds as in ``Tensor.add_(alpha=...)``), so a batch of one follows
``torch.optim.LBFGS`` bit for bit (tests/engine/test_lbfgs.py). For several rows the dot products are one
batched matrix product: the same sums in another order, so a row drifts from its single run only by
rounding.

The history lives in ring buffers of shape ``(rows, capacity, pixels)``; each row advances its own head,
since a row that rejects a pair (``s.y <= 1e-10``) keeps its older pairs longer, exactly as torch's lists.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

CURVATURE_EPS = 1e-10  # torch.optim.LBFGS keeps a pair only when s.y exceeds this


class BatchLBFGS:
    """Optimizes the rows of ``x`` (a leaf tensor ``(N, ...)``) independently; see the module docstring."""

    def __init__(self, x: torch.Tensor, *, history: int) -> None:
        if not x.is_contiguous():
            raise ValueError("BatchLBFGS needs a contiguous tensor (each row is viewed as a flat vector)")
        self.x = x
        self.capacity = max(1, history)
        self.iterations = 0  # steps taken by every row (rows stay in step: they start and move together)
        self.direction: torch.Tensor | None = None  # (N, D)
        self.step_size: torch.Tensor | None = None  # (N,)
        self.previous_grad: torch.Tensor | None = None  # (N, D)
        self.hessian_diag: torch.Tensor | None = None  # (N,)
        self.steps_s: torch.Tensor | None = None  # (N, capacity, D): s = x_{k+1} - x_k
        self.grads_y: torch.Tensor | None = None  # (N, capacity, D): y = g_{k+1} - g_k
        self.rho: torch.Tensor | None = None  # (N, capacity): 1 / (s.y)
        self.heads: list[int] = [0] * x.shape[0]  # pairs each row has kept so far
        self.stalled: list[int] = []  # rows whose gradient was exactly zero at the last step

    @property
    def rows(self) -> int:
        return self.x.shape[0]

    def step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        """Evaluate ``closure`` (per-row losses ``(N,)``; it must call backward on their sum) and move every
        row one step; return the losses of the rows before the step.

        A row whose gradient is exactly zero sits at a stationary point: it does not move and is listed in
        ``stalled`` (torch's optimizer returns at once in that case, step after step).
        """
        self.x.grad = None
        with torch.enable_grad():
            losses = closure()
        with torch.no_grad():
            self._step()
        return losses

    def _step(self) -> None:
        n = self.rows
        grad = self.x.grad
        assert grad is not None, "the closure must call backward"
        flat_grad = grad.reshape(n, -1)
        self.stalled = [i for i, m in enumerate(flat_grad.abs().amax(dim=1).tolist()) if m <= 0.0]
        self.iterations += 1
        if self.iterations == 1:
            direction = flat_grad.neg()
            self.hessian_diag = torch.ones(n, dtype=flat_grad.dtype, device=flat_grad.device)
        else:
            assert self.previous_grad is not None and self.direction is not None
            assert self.step_size is not None
            y = flat_grad.sub(self.previous_grad)
            s = self.direction.mul(self.step_size[:, None])
            self._remember(s, y)
            direction = self._two_loop(flat_grad.neg())
        if self.previous_grad is None:
            self.previous_grad = flat_grad.clone(memory_format=torch.contiguous_format)
        else:
            self.previous_grad.copy_(flat_grad)
        if self.iterations == 1:  # torch: t = min(1, 1 / |g|_1) * lr, each row on its own
            inverse = torch.stack([row.abs().sum() for row in flat_grad]).reciprocal()
            self.step_size = torch.where(inverse < 1.0, inverse, torch.ones_like(inverse))
        else:
            self.step_size = torch.ones(n, dtype=flat_grad.dtype, device=flat_grad.device)
        self.direction = direction
        descent = _dot(flat_grad, direction)  # torch does not move a row along an ascent direction
        alpha = torch.where(descent > 0, torch.zeros_like(self.step_size), self.step_size)
        if self.stalled:
            alpha[self.stalled] = 0.0
        self.x.view(n, -1).addcmul_(direction, alpha[:, None])

    def _remember(self, s: torch.Tensor, y: torch.Tensor) -> None:
        """Keep each row's new pair when its curvature is positive (else that row keeps its history)."""
        assert self.hessian_diag is not None
        ys = _dot(y, s)
        yy = _dot(y, y)
        accepted = [i for i, v in enumerate(ys.tolist()) if v > CURVATURE_EPS and i not in self.stalled]
        if not accepted:
            return
        if self.steps_s is None:
            n, size = s.shape
            self.steps_s = s.new_zeros(n, self.capacity, size)
            self.grads_y = y.new_zeros(n, self.capacity, size)
            self.rho = ys.new_zeros(n, self.capacity)
        assert self.grads_y is not None and self.rho is not None
        slots = [self.heads[i] % self.capacity for i in accepted]
        if len(accepted) == self.rows and len(set(slots)) == 1:  # the usual case: one copy for all rows
            self.steps_s[:, slots[0]] = s
            self.grads_y[:, slots[0]] = y
            self.rho[:, slots[0]] = ys.reciprocal()
            self.hessian_diag = ys / yy
        else:
            rows = torch.tensor(accepted, device=s.device)
            index = torch.tensor(slots, device=s.device)
            self.steps_s[rows, index] = s[rows]
            self.grads_y[rows, index] = y[rows]
            self.rho[rows, index] = ys[rows].reciprocal()
            self.hessian_diag[rows] = ys[rows] / yy[rows]
        for i in accepted:
            self.heads[i] += 1

    def _two_loop(self, q: torch.Tensor) -> torch.Tensor:
        """Each row's inverse-Hessian approximation times ``q`` (the negative gradient), newest pair first."""
        assert self.hessian_diag is not None
        if self.steps_s is None:  # no row has a pair yet
            return q.mul(self.hessian_diag[:, None])
        assert self.grads_y is not None and self.rho is not None
        counts = [min(h, self.capacity) for h in self.heads]
        ages = range(max(counts))
        pairs = [self._pair(age, counts) for age in ages]
        alphas: list[torch.Tensor] = []
        for s, y, rho in pairs:  # newest to oldest
            alpha = _dot(s, q) * rho
            q.addcmul_(y, alpha.neg()[:, None])
            alphas.append(alpha)
        r = q.mul(self.hessian_diag[:, None])
        for (s, y, rho), alpha in zip(reversed(pairs), reversed(alphas), strict=True):  # oldest to newest
            beta = _dot(y, r) * rho
            r.addcmul_(s, (alpha - beta)[:, None])
        return r

    def _pair(self, age: int, counts: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each row's ``age``-th newest (s, y, rho); a row with fewer pairs gets rho 0: a no-op."""
        assert self.steps_s is not None and self.grads_y is not None and self.rho is not None
        slots = [(h - 1 - age) % self.capacity for h in self.heads]
        if len(set(slots)) == 1 and all(age < c for c in counts):  # a view: no copy
            slot = slots[0]
            return self.steps_s[:, slot], self.grads_y[:, slot], self.rho[:, slot]
        rows = torch.arange(self.rows, device=self.rho.device)
        index = torch.tensor(slots, device=self.rho.device)
        valid = torch.tensor([age < c for c in counts], device=self.rho.device, dtype=self.rho.dtype)
        return self.steps_s[rows, index], self.grads_y[rows, index], self.rho[rows, index] * valid

    def keep(self, rows: list[int]) -> None:
        """Drop every row not in ``rows`` (finished or cancelled images), so later steps skip their work."""
        index = torch.tensor(rows, device=self.x.device)
        self.x = self.x.detach()[index].requires_grad_(True)
        for name in ("direction", "step_size", "previous_grad", "hessian_diag", "steps_s", "grads_y", "rho"):
            value = getattr(self, name)
            if value is not None:
                setattr(self, name, value[index])
        self.heads = [self.heads[i] for i in rows]
        self.stalled = [rows.index(i) for i in self.stalled if i in rows]


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise dot products ``(N, D), (N, D) -> (N,)``.

    One row: BLAS's ``dot``, the call torch.optim.LBFGS makes, so a single image is optimized bit for bit
    as before. Several: one batched matrix product, the same sums in another order.
    """
    if a.shape[0] == 1:
        return torch.dot(a[0], b[0]).unsqueeze(0)
    return torch.bmm(a.unsqueeze(1), b.unsqueeze(2)).view(-1)

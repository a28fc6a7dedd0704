"""Fake-engine factories for the Discord tests (``WorkerOptions.engine_factory`` names them by path)."""

from __future__ import annotations

from typing import Any

from tests.fakes.engine import FakeEngine


def three_second_engine(settings: Any, device: str = "cpu") -> FakeEngine:
    """Every job takes 60 steps of 50 ms (3 s): time to queue a second job and act on it while the first
    paints, and enough progress events after that to see what each one does."""
    return FakeEngine(settings, device=device, step_seconds=0.05, steps=60)

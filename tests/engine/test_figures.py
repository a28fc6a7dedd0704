"""engine/figures.py without the model: what a figure asks of the engine, and the pictures it makes."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from engine import figures
from engine.errors import Cancelled
from engine.protocol import DEFAULT_STYLE_LAYERS, Progress, StyleSettings, StyleSource, StylizeRequest
from tests.fakes.engine import FakeEngine
from tests.fakes.images import pattern


def request(figure: str | None, **settings: object) -> StylizeRequest:
    return StylizeRequest(
        pattern(48, 36), (StyleSource(preset="udnie"),), StyleSettings(figure=figure, **settings)
    )


class Recording(FakeEngine):
    """The fake engine, remembering the batches it was given."""

    def __init__(self, **options: object) -> None:
        super().__init__(step_seconds=0.0, **options)  # type: ignore[arg-type]
        self.batches: list[list[StylizeRequest]] = []

    def stylize_batch(self, requests, **options):  # type: ignore[no-untyped-def, override]
        self.batches.append(requests)
        return super().stylize_batch(requests, **options)


def test_a_strength_strip_is_one_batch_of_five_rising_strengths_a_tier_lower() -> None:
    engine = Recording()
    figures.run(engine, request("strength", quality="high", size=900, steps=500, time_budget=5.0))
    (batch,) = engine.batches
    assert [r.settings.strength for r in batch] == list(figures.STRENGTHS)
    assert tuple(sorted(figures.STRENGTHS)) == figures.STRENGTHS
    for r in batch:  # the panel tier decides size and steps, so every strip costs the same
        assert (r.settings.quality, r.settings.size, r.settings.steps, r.settings.time_budget) == (
            "normal", None, None, None,
        )  # fmt: skip
        assert r.settings.figure is None


def test_a_layer_strip_adds_one_deeper_layer_per_panel() -> None:
    engine = Recording()
    result = figures.run(engine, request("layers"))
    (batch,) = engine.batches
    assert [r.settings.style_layers for r in batch] == [DEFAULT_STYLE_LAYERS[: n + 1] for n in range(5)]
    # each panel weighs its own layers alike, conv5_1 included (the defaults leave it out)
    assert [r.settings.style_layer_weights for r in batch] == [(1.0,) * (n + 1) for n in range(5)]
    strip = Image.open(io.BytesIO(result.image))
    assert len(figures.panel_boxes(strip.size, len(batch))) == 5
    assert strip.width == 5 * 48 + 4 * figures.GAP


def test_progress_of_a_strip_is_one_job_going_forwards() -> None:
    seen: list[Progress] = []
    figures.run(Recording(), request("strength"), progress=seen.append)
    fractions = [p.fraction for p in seen]
    assert fractions == sorted(fractions)
    assert fractions[-1] == pytest.approx(1.0)
    assert all(p.preview is None for p in seen)


def test_a_panel_that_fails_fails_the_strip() -> None:
    with pytest.raises(Cancelled):
        figures.run(Recording(), request("strength"), should_cancel=lambda: True)


def test_weights() -> None:
    assert figures.weight(StyleSettings()) == 1.0
    assert figures.weight(StyleSettings(figure="forming")) == 1.0
    assert figures.weight(StyleSettings(quality="draft", figure="strength")) == 5.0  # five drafts
    normal = figures.weight(StyleSettings(quality="normal", figure="layers"))
    assert 1.0 <= normal < 1.5  # five drafts are about one normal job
    # high's panels are normal jobs (512 px on the CPU) and a high job refines one at 1024 px: five of
    # them weigh a little more than one high job
    assert figures.weight(StyleSettings(quality="high", figure="strength")) == 1.2
    for quality in ("draft", "normal", "high"):  # both strips are one batch of five panels
        assert figures.weight(StyleSettings(quality=quality, figure="layers")) == figures.weight(
            StyleSettings(quality=quality, figure="strength")
        )


def test_forming_makes_a_triptych_and_a_steady_animation() -> None:
    result = figures.run(FakeEngine(step_seconds=0.0, steps=60), request("forming"))
    triptych = Image.open(io.BytesIO(result.image))
    assert triptych.width == 3 * 48 + 2 * figures.GAP
    assert result.animation is not None
    gif = Image.open(io.BytesIO(result.animation))
    assert gif.n_frames > 10
    assert gif.size == (48, 36)


def test_an_animation_too_large_drops_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    frames = [Image.effect_noise((64, 64), 60 + i).convert("RGB") for i in range(30)]
    whole = figures.encode_animation(None, frames, frames[-1])
    monkeypatch.setattr(figures, "ANIMATION_MAX_BYTES", len(whole) // 3)
    smaller = figures.encode_animation(None, frames, frames[-1])
    assert len(smaller) <= len(whole) // 3
    assert 2 <= Image.open(io.BytesIO(smaller)).n_frames < 31


def test_the_request_carries_the_figure_and_the_result_its_animation() -> None:
    from engine.protocol import StylizeResult, settings_from_dict, settings_to_dict

    assert settings_from_dict(settings_to_dict(StyleSettings(figure="layers"))).figure == "layers"
    with pytest.raises(ValueError, match="figure"):
        StyleSettings(figure="selfie")
    result = StylizeResult(b"x", "png", 1, 1, 0.1, 1, "cpu", {}, animation=b"GIF89a")
    assert StylizeResult.from_dict(result.to_dict()) == result


def test_the_animation_crosses_the_wire_by_value_and_by_reference(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from engine.protocol import StylizeResult
    from engine.workers.wire import BadReportError, ResultReport, check_animation, staged_animation

    painted = figures.run(FakeEngine(step_seconds=0.0, steps=12), request("forming"))
    assert painted.animation is not None
    by_value = ResultReport.from_dict(ResultReport.of(painted, inline=True).to_dict())
    assert (by_value.animated, by_value.animation) == (True, painted.animation)
    by_reference = ResultReport.from_dict(ResultReport.of(painted, inline=False).to_dict())
    assert (by_reference.animated, by_reference.animation) == (True, None)
    plain = ResultReport.of(StylizeResult(b"x", "png", 1, 1, 0.1, 1, "cpu", {}), inline=True)
    assert not plain.animated
    check_animation(painted.animation[:16], len(painted.animation))
    with pytest.raises(BadReportError):
        check_animation(b"\x89PNG\r\n\x1a\n", 100)
    assert staged_animation(tmp_path / ".result-7-ab") == tmp_path / ".result-7-ab.gif"


def test_a_figure_at_instant_quality_is_made_at_draft_and_says_so() -> None:
    """The instant tier does not optimize, and every figure shows the optimization."""
    engine = Recording()
    result = figures.run(engine, request("strength", quality="instant"))
    (batch,) = engine.batches
    assert {r.settings.quality for r in batch} == {"draft"}
    assert figures.INSTANT_NOTE in result.notes
    seen: list[StylizeRequest] = []

    class Forming(FakeEngine):
        def stylize(self, request, **options):  # type: ignore[no-untyped-def, override]
            seen.append(request)
            return super().stylize(request, **options)

    forming = figures.run(Forming(step_seconds=0.0, steps=20), request("forming", quality="instant"))
    assert seen[0].settings.quality == "draft"
    assert forming.animation is not None
    assert figures.INSTANT_NOTE in forming.notes
    for figure in ("strength", "layers", "forming"):  # weighed as at draft
        assert figures.weight(StyleSettings(quality="instant", figure=figure)) == figures.weight(
            StyleSettings(quality="draft", figure=figure)
        )

"""A clip job in a worker (engine.workers.clips): a ticket with a clip order comes back as an encoded
clip with one frame per frame decoded, progress in frames, cancel between frames, typed refusals; the
fake engine paints fast, and the real instant path runs once at a tiny size."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from engine.clips import CLIP_TIERS, ClipLimits, decode
from engine.errors import Cancelled
from engine.workers.clips import ClipOrder, run_clip
from engine.workers.runner import run_job
from engine.workers.wire import BadReportError, ImageInput, ResultReport, Style, Ticket, check_image
from tests.engine.samples import encode as encode_image
from tests.engine.samples import painting
from tests.engine.test_workers import Recorder
from tests.fakes import clips
from tests.fakes.engine import FakeEngine

ORDER = ClipOrder("instant", "mp4", 50 * 2**20, 10.0, 12.0)


def clip_ticket(tmp_path: Path, data: bytes, order: ClipOrder = ORDER, job_id: int = 9) -> Ticket:
    source = tmp_path / f"clip-{job_id}"
    source.write_bytes(data)
    return Ticket(
        job_id,
        ImageInput(path=str(source)),
        (Style(1.0, preset="starry_night"),),
        {"quality": "instant"},
        result_path=str(tmp_path / f"result-{job_id}"),
        clip=order.to_dict(),
    )


@pytest.mark.parametrize(
    ("data", "fmt"),
    [(clips.gif(6), "mp4"), (clips.mp4(6), "mp4"), (clips.video_note(6), "mp4"), (clips.mp4(6), "gif")],
    ids=["gif-in", "mp4-in", "video-note-in", "gif-out"],
)
def test_a_clip_ticket_comes_back_as_a_clip_with_every_frame(tmp_path: Path, data: bytes, fmt: str) -> None:
    order = ClipOrder("instant", fmt, 50 * 2**20, 10.0, 12.0)
    reports = Recorder()
    assert run_job(FakeEngine(), clip_ticket(tmp_path, data, order), reports, lambda _: False)
    expected = len(decode(data, CLIP_TIERS["instant"].side(False), order.limits).frames)
    steps = [entry[2] for entry in reports.sent if entry[0] == "progress"]
    assert steps == list(range(1, expected + 1))  # one report a frame
    kind, job_id, report = reports.sent[-1]
    assert (kind, job_id) == ("done", 9)
    assert isinstance(report, ResultReport)
    assert (report.format, report.steps) == (fmt, expected)
    written = Path(tmp_path / "result-9").read_bytes()
    check_image(fmt, written[:16], len(written))
    assert clips.frame_count(written) == expected


def test_the_fake_paints_each_frame_as_its_negative(tmp_path: Path) -> None:
    data = clips.mp4(3)
    request = clip_ticket(tmp_path, data).request()
    result = run_clip(FakeEngine(), request, ORDER, progress=lambda _: None, should_cancel=lambda: False)
    source = decode(data, 480).frames[0].convert("RGB").getpixel((2, 2))
    painted = decode(result.image, 480).frames[0].convert("RGB").getpixel((2, 2))
    assert isinstance(source, tuple)
    assert isinstance(painted, tuple)
    assert all(abs(a + b - 255) < 40 for a, b in zip(source, painted, strict=True))


def test_a_clip_cancelled_mid_way_stops_between_frames(tmp_path: Path) -> None:
    reports = Recorder()

    def should_cancel(job_id: int) -> bool:  # after two frames painted
        return len([e for e in reports.sent if e[0] == "progress"]) >= 2

    assert run_job(FakeEngine(), clip_ticket(tmp_path, clips.gif(8)), reports, should_cancel)
    assert [e[2] for e in reports.sent if e[0] == "progress"] == [1, 2]
    assert reports.sent[-1][:3] == ("failed", 9, "cancelled")
    assert not (tmp_path / "result-9").exists()


def test_a_clip_cancelled_while_it_is_decoded_stops_there(tmp_path: Path) -> None:
    """Cancel and /block reach a worker still decoding (a long or dense clip): decode asks at each
    source frame."""
    request = clip_ticket(tmp_path, clips.mp4(12)).request()
    asked: list[int] = []

    def should_cancel() -> bool:
        asked.append(1)
        return len(asked) > 3

    with pytest.raises(Cancelled, match="while decoding, after 3 frames"):
        run_clip(FakeEngine(), request, ORDER, progress=lambda _: None, should_cancel=should_cancel)


@pytest.mark.parametrize(
    ("data", "order", "code"),
    [
        (clips.mp4(30, fps=10), ClipOrder("instant", "mp4", 2**20, 2.0, 12.0), "clip_too_long"),
        (b"not a clip at all", ORDER, "unsupported_clip"),
        (clips.mp4(4), ClipOrder("instant", "mp4", 10, 10.0, 12.0), "clip_too_big_to_send"),
    ],
    ids=["too-long", "not-a-clip", "too-big-to-send"],
)
def test_a_clip_the_worker_cannot_take_fails_with_its_code(
    tmp_path: Path, data: bytes, order: ClipOrder, code: str
) -> None:
    reports = Recorder()
    assert run_job(FakeEngine(), clip_ticket(tmp_path, data, order), reports, lambda _: False)
    assert reports.sent[-1][:3] == ("failed", 9, code)


@pytest.mark.parametrize(
    "data",
    [{}, {"quality": "better", "format": "mp4", "max_bytes": 1, "max_seconds": 1, "max_fps": 1}],
)
def test_a_malformed_order_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="clip"):
        ClipOrder.from_dict(data)


def test_an_order_survives_the_wire(tmp_path: Path) -> None:
    ticket = clip_ticket(tmp_path, clips.gif(2))
    assert Ticket.from_dict(ticket.to_dict()) == ticket
    assert ClipOrder.from_dict(ticket.clip) == ORDER
    assert ORDER.limits == ClipLimits(10.0, 12.0)


class _Catalogued(FakeEngine):
    """The fake's device and catalog, painted by the real instant path (no ``paint_clip``)."""

    paint_clip = None  # type: ignore[assignment]


def test_the_real_instant_path_paints_a_tiny_clip(tmp_path: Path) -> None:
    style = tmp_path / "style.png"
    style.write_bytes(encode_image(painting(64, 64, seed=3)))
    source = tmp_path / "clip"
    source.write_bytes(clips.gif(4, (48, 32)))
    ticket = Ticket(
        5,
        ImageInput(path=str(source)),
        (Style(1.0, image=ImageInput(path=str(style))),),
        {"quality": "instant"},
        result_path=str(tmp_path / "result"),
        clip=ORDER.to_dict(),
    )
    reports = Recorder()
    assert run_job(_Catalogued(), ticket, reports, lambda _: False)
    assert reports.sent[-1][0] == "done", reports.sent[-1]
    assert clips.frame_count((tmp_path / "result").read_bytes()) == 4


def test_by_value_the_clip_comes_back_in_the_report(tmp_path: Path) -> None:
    """A Celery worker elsewhere: the clip travels in the ticket and back in the report, which the bot
    checks as it checks a painting (its format, its signature)."""
    ticket = clip_ticket(tmp_path, clips.gif(4)).by_value()
    ticket = Ticket.from_dict({**ticket.to_dict(), "result_path": None})
    assert ticket.carries_its_images
    reports = Recorder()
    assert run_job(FakeEngine(), ticket, reports, lambda _: False)
    kind, _, report = reports.sent[-1]
    assert kind == "done"
    carried = ResultReport.from_dict(report.to_dict())
    assert carried.format == "mp4"
    assert carried.suffix == "mp4"
    assert carried.image is not None
    check_image("mp4", carried.image[:16], len(carried.image))
    assert clips.frame_count(carried.image) == 4
    with pytest.raises(BadReportError, match="not an mp4"):
        check_image("mp4", encode_image(painting(8, 8, seed=1))[:16], 100)  # a PNG calling itself a clip


def test_the_real_instant_path_finds_a_catalog_painting(tmp_path: Path) -> None:
    """A preset's picture comes from the engine's own store (on disk here: no download)."""
    from engine.api import Engine

    styles = tmp_path / "styles"
    styles.mkdir()
    (styles / "udnie.png").write_bytes(encode_image(painting(64, 64, seed=5)))
    engine = Engine(device="cpu", styles_dir=styles, precision="fp32")
    source = tmp_path / "clip"
    source.write_bytes(clips.mp4(3, (48, 32)))
    request = Ticket(
        3, ImageInput(path=str(source)), (Style(1.0, preset="udnie"),), {"quality": "instant"}
    ).request()
    result = run_clip(engine, request, ORDER, progress=lambda _: None, should_cancel=lambda: False)
    assert (result.format, result.steps) == ("mp4", 3)
    assert clips.frame_count(result.image) == 3


@pytest.mark.slow
def test_the_real_painted_path_paints_a_tiny_clip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Gatys per frame through the worker's path, on the CPU, at a tiny size: every frame comes back. (The
    tier's side is cut to the clip's own 48 px: decode fits a clip to the tier's 256 px, upscaling this
    one, and Gatys at 256x171 took a minute of the suite for nothing this test looks at.)"""
    from engine.api import Engine

    monkeypatch.setitem(CLIP_TIERS, "painted", dataclasses.replace(CLIP_TIERS["painted"], side_cpu=48))
    style = tmp_path / "style.png"
    style.write_bytes(encode_image(painting(48, 48, seed=4)))
    source = tmp_path / "clip"
    source.write_bytes(clips.mp4(2, (48, 32)))
    request = Ticket(
        4,
        ImageInput(path=str(source)),
        (Style(1.0, image=ImageInput(path=str(style))),),
        {"quality": "draft"},
    ).request()
    engine = Engine(device="cpu", styles_dir=tmp_path / "styles", precision="fp32")
    frames: list[int] = []
    order = ClipOrder("painted", "gif", 2**20, 10.0, 12.0)
    result = run_clip(
        engine, request, order, progress=lambda p: frames.append(p.step), should_cancel=lambda: False
    )
    assert frames == [1, 2]
    assert result.format == "gif"
    assert clips.frame_count(result.image) == 2

"""The worker plumbing without processes: tickets and reports on the wire, and running a job with them."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from engine.protocol import Progress, StylizeRequest, StylizeResult
from engine.workers import broker, process, wire
from engine.workers.runner import is_device_error, load_factory, run_assignment
from engine.workers.wire import (
    BadReportError,
    ImageInput,
    InputLostError,
    ResultReport,
    Style,
    Ticket,
    check_image,
    write_durably,
)
from tests.fakes.engine import FakeEngine, fake_engine, invert, marked
from tests.fakes.images import pattern

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ["api", "optimize", "vgg", "losses", "schedule", "images", "catalog", "style_stats", "cli"]


def test_the_engine_library_does_not_import_the_worker_plumbing() -> None:
    code = (
        "import sys\n"
        f"for name in {LIBRARY!r}: __import__('engine.' + name)\n"
        "plumbing = [m for m in sys.modules if m.startswith('engine.workers') or m in ('celery', 'kombu')]\n"
        "loaded = sorted(plumbing)\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


class Recorder:
    """``runner.Reports`` that keeps what it is told."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []

    def started(self, job_id: int) -> None:
        self.sent.append(("started", job_id))

    def progress(self, job_id: int, progress: Progress) -> None:
        self.sent.append(("progress", job_id, progress.step))

    def done(self, job_id: int, report: ResultReport) -> None:
        self.sent.append(("done", job_id, report))

    def failed(self, job_id: int, code: str, message: str) -> None:
        self.sent.append(("failed", job_id, code, message))


def ticket(tmp_path: Path, content: bytes, *, job_id: int = 7, by_reference: bool = True) -> Ticket:
    photo = tmp_path / f"photo-{job_id}"
    photo.write_bytes(content)
    made = Ticket(
        job_id,
        ImageInput(path=str(photo)),
        (Style(1.0, preset="starry_night"),),
        {"steps": 3},
        result_path=str(tmp_path / f"result-{job_id}"),
    )
    return made if by_reference else made.by_value()


@pytest.mark.parametrize(
    ("content", "cancel", "outcome", "healthy"),
    [
        (None, False, "done", True),
        (marked("BADIMG"), False, "corrupt_image", True),
        (marked("SLOW"), True, "cancelled", True),
        (marked("CUDAERR"), False, "device_error", False),
    ],
    ids=["done", "engine-error", "cancelled", "cuda-error"],
)
def test_a_job_is_reported_per_job(
    tmp_path: Path, content: bytes | None, cancel: bool, outcome: str, healthy: bool
) -> None:
    image = pattern(24, 16, fmt="PNG")
    job = ticket(tmp_path, content or image)
    reports = Recorder()
    assert run_assignment(FakeEngine(), [job], reports, lambda job_id: cancel and job_id == 7) is healthy
    first, *middle, last = reports.sent
    assert first == ("started", 7)
    assert all(kind == "progress" and job_id == 7 for kind, job_id, _ in middle)
    if outcome == "done":
        assert last[:2] == ("done", 7)
        assert last[2].image is None  # by reference: the painting is in the file the ticket named
        assert Path(job.result_path or "").read_bytes() == invert(image)
        assert [step for *_, step in middle] == [1, 2, 3]
    else:
        assert last[:3] == ("failed", 7, outcome)


def test_by_value_the_painting_comes_back_in_the_report(tmp_path: Path) -> None:
    image = pattern(24, 16, fmt="PNG")
    job = ticket(tmp_path, image, by_reference=False)
    job = Ticket.from_dict(job.to_dict())  # as it crosses a broker
    assert job.content.path is None
    assert job.content.data == image
    reports = Recorder()
    run_assignment(FakeEngine(), [Ticket(**{**job.__dict__, "result_path": None})], reports, lambda _: False)
    report = ResultReport.from_dict(reports.sent[-1][2].to_dict())
    assert report.image == invert(image)


def ends_of(reports: Recorder) -> dict[int, str]:
    return {m[1]: "done" if m[0] == "done" else m[2] for m in reports.sent if m[0] in ("done", "failed")}


def test_each_job_of_an_assignment_has_its_own_outcome_and_cancel(tmp_path: Path) -> None:
    image = pattern(24, 16, fmt="PNG")
    jobs = [ticket(tmp_path, image, job_id=1), ticket(tmp_path, marked("SLOW"), job_id=2)]
    jobs.append(ticket(tmp_path, marked("BADIMG"), job_id=3))
    reports = Recorder()
    assert run_assignment(FakeEngine(), jobs, reports, lambda job_id: job_id == 2)
    assert ends_of(reports) == {1: "done", 2: "cancelled", 3: "corrupt_image"}
    assert Path(jobs[0].result_path or "").read_bytes() == invert(image)


class BatchCounter(FakeEngine):
    """The fake engine, counting its ``stylize`` and ``stylize_batch`` calls."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.calls: list[tuple[str, int]] = []

    def stylize(self, request: StylizeRequest, **options: Any) -> StylizeResult:
        self.calls.append(("stylize", 1))
        return super().stylize(request, **options)

    def stylize_batch(self, requests: list[StylizeRequest], **options: Any) -> list[Any]:
        self.calls.append(("stylize_batch", len(requests)))
        return super().stylize_batch(requests, **options)


def test_one_job_is_one_stylize_call_and_several_are_one_batch(tmp_path: Path) -> None:
    images = [pattern(24 + i, 16, fmt="PNG") for i in range(3)]
    engine = BatchCounter()
    reports = Recorder()
    assert run_assignment(engine, [ticket(tmp_path, images[0], job_id=1)], reports, lambda _: False)
    assert engine.calls == [("stylize", 1)]

    engine.calls.clear()
    jobs = [ticket(tmp_path, image, job_id=10 + i) for i, image in enumerate(images)]
    reports = Recorder()
    assert run_assignment(engine, jobs, reports, lambda _: False)
    assert engine.calls == [("stylize_batch", 3)]
    assert ends_of(reports) == {10: "done", 11: "done", 12: "done"}
    for job, image in zip(jobs, images, strict=True):  # each its own painting, each its own progress
        assert Path(job.result_path or "").read_bytes() == invert(image)
        assert [m[2] for m in reports.sent if m[:2] == ("progress", job.job_id)] == [1, 2, 3]
    assert [m[1] for m in reports.sent if m[0] == "started"] == [10, 11, 12]


def test_a_job_cancelled_mid_batch_ends_at_once_and_the_others_go_on(tmp_path: Path) -> None:
    image = pattern(24, 16, fmt="PNG")
    jobs = [ticket(tmp_path, marked("SLOW"), job_id=1), ticket(tmp_path, image, job_id=2)]
    jobs = [Ticket(**{**job.__dict__, "settings": {"steps": 30}}) for job in jobs]  # one batch group
    reports = Recorder()
    steps_seen: list[int] = []

    def should_cancel(job_id: int) -> bool:  # job 1 is cancelled once job 2 has taken 5 steps
        steps_seen[:] = [m[2] for m in reports.sent if m[:2] == ("progress", 2)]
        return job_id == 1 and len(steps_seen) >= 5

    assert run_assignment(FakeEngine(), jobs, reports, should_cancel)
    assert ends_of(reports) == {1: "cancelled", 2: "done"}
    ended = [m[:2] for m in reports.sent if m[0] in ("done", "failed")]
    assert ended == [("failed", 1), ("done", 2)]  # the cancel was reported while job 2 still ran
    cancelled_at = reports.sent.index(next(m for m in reports.sent if m[:2] == ("failed", 1)))
    assert any(m[:2] == ("progress", 2) for m in reports.sent[cancelled_at:])
    assert not any(m[:2] == ("progress", 1) for m in reports.sent[cancelled_at:])


def test_a_batch_job_whose_input_is_gone_fails_alone(tmp_path: Path) -> None:
    image = pattern(24, 16, fmt="PNG")
    gone = Ticket(1, ImageInput(path=str(tmp_path / "gone")), (Style(1.0, preset="udnie"),))
    reports = Recorder()
    assert run_assignment(FakeEngine(), [gone, ticket(tmp_path, image, job_id=2)], reports, lambda _: False)
    assert ends_of(reports) == {1: "input_lost", 2: "done"}


def test_a_device_error_in_a_batch_ends_every_job_and_the_process(tmp_path: Path) -> None:
    image = pattern(24, 16, fmt="PNG")
    jobs = [ticket(tmp_path, image, job_id=1), ticket(tmp_path, marked("CUDAERR"), job_id=2)]
    reports = Recorder()
    assert run_assignment(FakeEngine(), jobs, reports, lambda _: False) is False
    assert ends_of(reports) == {1: "device_error", 2: "device_error"}


def test_a_missing_input_is_reported_as_input_lost(tmp_path: Path) -> None:
    job = Ticket(1, ImageInput(path=str(tmp_path / "gone")), (Style(1.0, preset="udnie"),))
    reports = Recorder()
    run_assignment(FakeEngine(), [job], reports, lambda _: False)
    assert reports.sent[-1][:3] == ("failed", 1, "input_lost")
    assert "missing" in reports.sent[-1][3]
    with pytest.raises(InputLostError):
        job.by_value()


def test_unexpected_errors_are_reported_as_internal(tmp_path: Path) -> None:
    class Broken(FakeEngine):
        def stylize(self, request: StylizeRequest, **_: object) -> StylizeResult:
            raise KeyError("oops")

    reports = Recorder()
    assert run_assignment(Broken(), [ticket(tmp_path, b"x")], reports, lambda _: False)
    assert reports.sent == [("started", 7), ("failed", 7, "internal", "KeyError: 'oops'")]


def test_device_errors_are_told_apart() -> None:
    assert is_device_error(RuntimeError("CUDA error: an illegal memory access was encountered"))
    assert is_device_error(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert not is_device_error(RuntimeError("Expected all tensors to be on the same device, cuda:0 and cpu"))
    assert not is_device_error(ValueError("CUDA error"))


def test_engine_factories_are_resolved_from_import_paths() -> None:
    assert load_factory("tests.fakes.engine:fake_engine") is fake_engine
    assert load_factory("tests.fakes.engine:FakeEngine.stylize") is FakeEngine.stylize
    with pytest.raises(ValueError, match="module:attribute"):
        load_factory("tests.fakes.engine.fake_engine")
    with pytest.raises(AttributeError):
        load_factory("tests.fakes.engine:nothing_here")
    with pytest.raises(TypeError, match="not callable"):
        load_factory("tests.fakes.engine:MARKERS")


GOOD = {"format": "png", "width": 8, "height": 6, "seconds": 1.5, "steps": 3, "device": "cpu", "losses": {}}


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"format": "../../etc/passwd"}, "unknown result format"),
        ({"format": "webm"}, "unknown result format"),  # gif and mp4 are clips (issue 21)
        ({"width": 0}, "impossible result size"),
        ({"height": 10**9}, "impossible result size"),
        ({"width": "wide"}, "malformed"),
        ({"image": "not base64!"}, "malformed"),
        ({"steps": None}, "malformed"),
    ],
)
def test_a_report_out_of_bounds_is_refused(change: dict[str, Any], complaint: str) -> None:
    assert ResultReport.from_dict(GOOD).suffix == "png"
    assert ResultReport.from_dict({**GOOD, "format": "jpeg"}).suffix == "jpg"
    with pytest.raises(BadReportError, match=complaint):
        ResultReport.from_dict({**GOOD, **change})
    with pytest.raises(BadReportError):
        ResultReport.from_dict("not a dict")


def test_a_painting_must_be_what_its_report_says() -> None:
    png = pattern(8, 6, fmt="PNG")
    check_image("png", png[:16], len(png))
    with pytest.raises(BadReportError, match="not a jpeg"):
        check_image("jpeg", png[:16], len(png))
    with pytest.raises(BadReportError, match="bytes"):
        check_image("png", png[:16], 0)


def test_a_durable_write_leaves_the_whole_file_or_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "out" / "1.png"
    write_durably(target, b"first")
    assert target.read_bytes() == b"first"

    def full_disk(*_: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        write_durably(target, b"second")
    assert target.read_bytes() == b"first"
    assert [p.name for p in target.parent.iterdir()] == ["1.png"]  # no temporary file left behind


def test_a_ticket_knows_whether_it_needs_this_machines_disk(tmp_path: Path) -> None:
    by_reference = ticket(tmp_path, b"photo")
    assert not by_reference.carries_its_images
    assert not by_reference.by_value().carries_its_images  # it still names a result file
    assert Ticket(**{**by_reference.by_value().__dict__, "result_path": None}).carries_its_images


# ----- one report type for the pipe and the broker; the worker-process helpers -----

PROGRESS = Progress(3, 10, 1, 1, 40, 30, {"total": 0.5}, 1.5, 3.0, None)


@pytest.mark.parametrize(
    "report",
    [
        wire.Hello("cuda:0 (NVIDIA H100)", 2, {"normal": 4}),
        wire.Started(7, "cpu"),
        wire.Progressed(7, PROGRESS),
        wire.Done(7, {"format": "png", "width": 40}),
        wire.Failed(7, "corrupt_image", "the photo cannot be decoded"),
    ],
    ids=lambda report: report.kind,
)
def test_a_report_is_encoded_once_for_the_pipe_and_the_broker(report: wire.Report) -> None:
    encoded = wire.encode(report)
    assert json.loads(json.dumps(encoded)) == encoded  # plain data: a pipe message, a broker event's body
    assert encoded["kind"] == report.kind
    assert wire.decode(encoded) == report
    event = broker.report_event(report, "gpu0.1@host", "task-1") if not isinstance(report, wire.Hello) else {}
    if event:  # the broker adds who sent it for which task, and nothing else changes
        assert wire.decode(event) == report
        assert {k: event[k] for k in encoded} == encoded


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "started"},
        {"kind": "progress", "job_id": 1, "progress": {"step": "x"}},
        {"kind": "failed", "job_id": "one", "code": "x", "message": "y"},
        {"kind": "teleported", "job_id": 1},
        ["started", 1],
        None,
    ],
)
def test_a_malformed_report_is_refused(data: Any) -> None:
    with pytest.raises(BadReportError):
        wire.decode(data)


def test_the_report_sender_builds_each_report() -> None:
    sent: list[wire.Report] = []
    reports = wire.ReportSender(sent.append)
    reports.started(1)
    reports.progress(1, PROGRESS)
    reports.failed(1, "internal", "boom")
    assert sent == [wire.Started(1), wire.Progressed(1, PROGRESS), wire.Failed(1, "internal", "boom")]


def test_exits_are_described_in_words() -> None:
    assert process.describe_exit(None) == "still running"
    assert process.describe_exit(3) == "exit code 3"
    assert process.describe_exit(-9) == "killed by signal 9"


def test_back_off_doubles_up_to_a_ceiling() -> None:
    assert [process.backoff(n, 1.0, 5.0) for n in range(6)] == [0.0, 1.0, 2.0, 4.0, 5.0, 5.0]


def test_expiring_ids_are_forgotten_only_past_their_time_and_the_limit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(process.time, "monotonic", lambda: now[0])
    ids: process.Expiring[str] = process.Expiring(10.0, limit=2)
    ids.add(["a", "b"])
    now[0] = 105.0
    assert ("a" in ids, ids.since("a"), ids.since("zzz")) == (True, 5.0, float("inf"))
    now[0] = 111.0
    assert "a" in ids  # old, but the limit is not passed: nothing is pruned
    ids.add(["c"])  # three: the old ones go
    assert ("a" in ids, "b" in ids, "c" in ids) == (False, False, True)


def test_the_reconnect_loop_tries_again_until_closed() -> None:
    closing = threading.Event()
    tries: list[int] = []
    errors: list[str] = []
    waits: list[int] = []

    def serve() -> None:
        tries.append(1)
        if len(tries) == 3:
            closing.set()  # the third connection is closed from outside while it serves
            return
        raise ConnectionError(f"down {len(tries)}")

    process.keep_connected(
        serve,
        closing,
        delay=0.01,
        on_error=lambda err: errors.append(str(err)),
        meanwhile=lambda: waits.append(1),
    )
    assert (len(tries), errors) == (3, ["down 1", "down 2"])
    assert waits  # the watchdogs kept going while it waited

"""What the bot and its workers tell each other, whichever transport carries it (a pipe or a broker).

The bot hands a worker an *assignment*: a list of ``Ticket``s, one per job (one today; a batch later), each
with its own job id, so progress, cancel and the outcome stay per job. A worker answers per job:

``started``   it began the job (the bot claims the row then, in both back ends);
``progress``  a ``Progress`` of the engine;
``done``      a ``ResultReport``: the painting's format, size and summary, and the image itself only when it
              travels by value;
``failed``    an ``engine.errors`` code, or ``DEVICE_ERROR``, ``INPUT_LOST``, ``INTERNAL``, and a message.

Each is a dataclass (``Started``, ``Progressed``, ``Done``, ``Failed``; ``Hello`` when a pipe worker is
ready), encoded once (``encode``, ``decode``) for the pipe and for the broker: the same dict is a pipe
message and the body of a broker event (which adds who sent it and for which task).

By reference or by value. The embedded workers share the bot's disk: a ticket names the files of the
job's photo and style images and the file the worker writes the painting to (``result_path``), so no
image crosses the pipe. Celery workers may run on other machines: there the ticket carries the images and
the report carries the painting (base64 in JSON). ``Ticket.request`` reads either form.

The bot trusts nothing a worker sends back: ``ResultReport.from_dict`` accepts only the known formats and
sane sizes, and the bot keeps a painting by value or moves it from the ``result_path`` *it* chose, under a
name it makes from the job id and the format's suffix.

Plain data and the standard library only: the bot imports this without torch or Celery.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from engine.protocol import Progress, StyleSource, StylizeRequest, StylizeResult, settings_from_dict

# Worker → bot reports: the ``kind`` of an encoded report (``encode``), on the pipe and on the broker alike.
HELLO = "hello"
STARTED = "started"
PROGRESS = "progress"
DONE = "done"
FAILED = "failed"
# Bot → worker on the pipe; ``None`` asks the worker to exit.
ASSIGN = "assign"
CANCEL = "cancel"

# Failure codes of the workers, next to the engine's own (``engine.errors``).
DEVICE_ERROR = "device_error"  # the CUDA context broke: the process must restart; the job is retried
INPUT_LOST = "input_lost"  # the job's photo or style image could not be read
INTERNAL = "internal"

# Exit codes of a worker process.
EXIT_START_FAILED = 2  # the engine could not be built or loaded
EXIT_DEVICE_ERROR = 3  # after a CUDA error
EXIT_HUNG = 4  # a Celery worker whose job ignored a stop

# What a worker may paint in → the result file's suffix; "mp4" and "gif" are clips (engine.workers.clips).
RESULT_SUFFIXES = {"png": "png", "jpeg": "jpg", "mp4": "mp4", "gif": "gif"}
MAGIC = {"png": (b"\x89PNG\r\n\x1a\n",), "jpeg": (b"\xff\xd8\xff",), "gif": (b"GIF87a", b"GIF89a")}
MP4_BRAND = b"ftyp"  # an MP4 starts with its ``ftyp`` box: 4 bytes of size, then this
MAX_RESULT_BYTES = 64 * 1024 * 1024
GIF_MAGIC = (b"GIF87a", b"GIF89a")  # the animation of the "forming" figure (engine/figures.py)
MAX_RESULT_SIDE = 16_384


class BadReportError(ValueError):
    """A worker's report that the bot cannot trust (an unknown format, absurd sizes, a wrong type)."""


class InputLostError(OSError):
    """A ticket's file could not be read (deleted by hand, a lost volume)."""

    code = INPUT_LOST


@dataclass(frozen=True)
class ImageInput:
    """An input image by reference (``path``) or by value (``data``)."""

    path: str | None = None
    data: bytes | None = None

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.path is None:
            raise InputLostError("an input image has neither a path nor data")
        try:
            return Path(self.path).read_bytes()
        except OSError as err:
            raise InputLostError(
                f"an input file is missing or unreadable: {self.path} ({err.strerror or err})"
            ) from err

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path} if self.data is None else {"data": _b64(self.data)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ImageInput:
        if "data" in data:
            return cls(data=base64.b64decode(data["data"]))
        return cls(path=str(data["path"]))


@dataclass(frozen=True)
class Style:
    """One painting of a ticket: a catalog preset or an image."""

    weight: float
    preset: str | None = None
    image: ImageInput | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"weight": self.weight, "preset": self.preset, "image": self.image and self.image.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Style:
        image = data.get("image")
        return cls(
            float(data["weight"]), data.get("preset"), None if image is None else ImageInput.from_dict(image)
        )


@dataclass(frozen=True)
class Ticket:
    """One job of an assignment."""

    job_id: int
    content: ImageInput
    styles: tuple[Style, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    result_path: str | None = None  # by reference: write the painting here (atomically); None: report it
    alone: bool = False  # a retry of a job that lost its worker: it shares a batch with nobody
    clip: dict[str, Any] | None = None  # a clip job's order (``engine.workers.clips.ClipOrder``) or None

    def request(self) -> StylizeRequest:
        """The engine's request; reads the files of a ticket by reference (``InputLostError``)."""
        styles = tuple(
            StyleSource(preset=s.preset, weight=s.weight)
            if s.preset
            else StyleSource(image=(s.image or ImageInput()).read(), weight=s.weight)
            for s in self.styles
        )
        return StylizeRequest(self.content.read(), styles, settings_from_dict(self.settings))

    @property
    def carries_its_images(self) -> bool:
        """By value through and through: no file of this machine is read or written for it."""
        images = [self.content, *(s.image for s in self.styles if s.image is not None)]
        return self.result_path is None and all(image.data is not None for image in images)

    def by_value(self) -> Ticket:
        """The same ticket with its images read in, for a worker that cannot see this disk."""
        styles = tuple(
            s if s.image is None else dataclasses.replace(s, image=ImageInput(data=s.image.read()))
            for s in self.styles
        )
        return dataclasses.replace(self, content=ImageInput(data=self.content.read()), styles=styles)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "content": self.content.to_dict(),
            "styles": [s.to_dict() for s in self.styles],
            "settings": dict(self.settings),
            "result_path": self.result_path,
            "alone": self.alone,
            "clip": self.clip,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Ticket:
        return cls(
            job_id=int(data["job_id"]),
            content=ImageInput.from_dict(data["content"]),
            styles=tuple(Style.from_dict(s) for s in data["styles"]),
            settings=dict(data.get("settings") or {}),
            result_path=data.get("result_path"),
            alone=bool(data.get("alone", False)),
            clip=None if data.get("clip") is None else dict(data["clip"]),
        )


@dataclass(frozen=True)
class ResultReport:
    """A finished job as a worker reports it; ``image`` only when the painting travels by value."""

    format: str
    width: int
    height: int
    seconds: float
    steps: int
    device: str
    losses: dict[str, float]
    notes: tuple[str, ...] = ()
    image: bytes | None = None
    animated: bool = False  # a GIF comes with the painting: ``animation``, or beside the staged painting
    animation: bytes | None = None

    @classmethod
    def of(cls, result: StylizeResult, *, inline: bool) -> ResultReport:
        return cls(
            format=result.format,
            width=result.width,
            height=result.height,
            seconds=result.seconds,
            steps=result.steps,
            device=result.device,
            losses=dict(result.losses),
            notes=tuple(result.notes),
            image=result.image if inline else None,
            animated=result.animation is not None,
            animation=result.animation if inline else None,
        )

    @property
    def suffix(self) -> str:
        return RESULT_SUFFIXES[self.format]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["notes"] = list(self.notes)
        data["image"] = None if self.image is None else _b64(self.image)
        data["animation"] = None if self.animation is None else _b64(self.animation)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> ResultReport:
        """Parse and check a report from a worker; ``BadReportError`` for anything out of bounds."""
        try:
            fmt = data["format"]
            if fmt not in RESULT_SUFFIXES:
                raise BadReportError(f"unknown result format {str(fmt)[:40]!r}")
            width, height, steps = int(data["width"]), int(data["height"]), int(data["steps"])
            if not (1 <= width <= MAX_RESULT_SIDE and 1 <= height <= MAX_RESULT_SIDE):
                raise BadReportError(f"impossible result size {width}x{height}")
            image = data.get("image")
            animation = data.get("animation")
            for encoded in (image, animation):
                if encoded is not None and len(encoded) > MAX_RESULT_BYTES * 4 // 3 + 4:
                    raise BadReportError("the result image is too large")
            return cls(
                format=fmt,
                width=width,
                height=height,
                seconds=max(0.0, float(data["seconds"])),
                steps=max(0, steps),
                device=str(data.get("device", ""))[:200],
                losses={str(k)[:40]: float(v) for k, v in dict(data.get("losses") or {}).items()},
                notes=tuple(str(n)[:500] for n in list(data.get("notes") or [])[:10]),
                image=None if image is None else base64.b64decode(image, validate=True),
                animated=bool(data.get("animated", False)),
                animation=None if animation is None else base64.b64decode(animation, validate=True),
            )
        except BadReportError:
            raise
        except (KeyError, TypeError, ValueError) as err:
            raise BadReportError(f"a malformed result report ({err!r})") from None


# ----- reports: worker → bot, one type for the pipe and the broker, encoded once -----


@dataclass(frozen=True)
class Hello:
    """A pipe worker is ready, its model loaded (a Celery worker's heartbeats say the same)."""

    device: str  # e.g. "cuda:0 (NVIDIA H100 80GB HBM3)"
    gpus: int
    batch_limits: Any  # per quality tier, as sent: the bot checks it (``batching.parse_limits``)
    kind: ClassVar[str] = HELLO


@dataclass(frozen=True)
class Started:
    job_id: int
    device: str = ""
    kind: ClassVar[str] = STARTED


@dataclass(frozen=True)
class Progressed:
    job_id: int
    progress: Progress
    kind: ClassVar[str] = PROGRESS


@dataclass(frozen=True)
class Done:
    job_id: int
    result: Any  # a ``ResultReport.to_dict()``, as sent: the bot checks it (``ResultReport.from_dict``)
    kind: ClassVar[str] = DONE


@dataclass(frozen=True)
class Failed:
    job_id: int
    code: str
    message: str
    kind: ClassVar[str] = FAILED


Report = Hello | Started | Progressed | Done | Failed
JobReport = Started | Progressed | Done | Failed
REPORT_KINDS = (HELLO, STARTED, PROGRESS, DONE, FAILED)


def encode(report: Report) -> dict[str, Any]:
    """A report as plain JSON-able data: a pipe message, or the body of a broker event."""
    data: dict[str, Any] = {"kind": report.kind}
    for item in dataclasses.fields(report):
        value = getattr(report, item.name)
        data[item.name] = value.to_dict() if isinstance(value, Progress) else value
    return data


def decode(data: Any) -> Report:
    """``encode`` backwards; ``BadReportError`` for anything malformed (a worker is not trusted)."""
    try:
        kind = data["kind"]
        if kind == HELLO:
            return Hello(str(data["device"]), int(data["gpus"]), data.get("batch_limits"))
        job_id = int(data["job_id"])
        if kind == STARTED:
            return Started(job_id, str(data.get("device") or ""))
        if kind == PROGRESS:
            return Progressed(job_id, Progress.from_dict(data["progress"]))
        if kind == DONE:
            return Done(job_id, data["result"])
        if kind == FAILED:
            return Failed(job_id, str(data["code"]), str(data["message"]))
    except (KeyError, TypeError, ValueError) as err:
        raise BadReportError(f"a malformed report ({err!r})") from None
    raise BadReportError(f"an unknown report {str(kind)[:40]!r}")


class ReportSender:
    """``runner.Reports`` for a transport that only has to carry the reports (the pipe): each one is built
    here and handed to ``send``."""

    def __init__(self, send: Callable[[Report], None]) -> None:
        self._send = send

    def started(self, job_id: int) -> None:
        self._send(Started(job_id))

    def progress(self, job_id: int, progress: Progress) -> None:
        self._send(Progressed(job_id, progress))

    def done(self, job_id: int, report: ResultReport) -> None:
        self._send(Done(job_id, report.to_dict()))

    def failed(self, job_id: int, code: str, message: str) -> None:
        self._send(Failed(job_id, code, message))


def check_image(fmt: str, head: bytes, size: int) -> None:
    """That a painting's bytes are what its report says: the format's signature, a sane size."""
    if not 0 < size <= MAX_RESULT_BYTES:
        raise BadReportError(f"a result of {size} bytes")
    if fmt == "mp4":
        if head[4:8] != MP4_BRAND:
            raise BadReportError("the result is not an mp4 clip")
        return
    if not any(head.startswith(magic) for magic in MAGIC.get(fmt, ())):
        raise BadReportError(f"the result is not a {fmt} image")


def staged_animation(result_path: Path) -> Path:
    """Where a worker writes a job's animation when it writes the painting to ``result_path``."""
    return result_path.with_name(result_path.name + ".gif")


def check_animation(head: bytes, size: int) -> None:
    if not 0 < size <= MAX_RESULT_BYTES or not head.startswith(GIF_MAGIC):
        raise BadReportError("the animation is not a GIF of a sane size")


def write_durably(path: Path, data: bytes) -> None:
    """Write ``path`` so that after this returns it survives a crash whole or not at all: a temporary file
    beside it, fsync'd, renamed over it, and the folder fsync'd."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    sync_folder(path.parent)


def sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, as on Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")

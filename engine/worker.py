"""A worker process of the embedded queue: one engine, fed jobs over a pipe (see ``bot/queue/embedded.py``).

The parent starts ``run`` with the ``spawn`` method, so the child begins with a fresh interpreter: CUDA
cannot survive a ``fork``, and the bot's event loop, threads and sockets must not be copied. This module
itself imports no torch: the parent imports it to build ``WorkerOptions``, and the engine (with torch)
is imported inside the child only, by ``build_engine``.

Messages are small plain tuples of JSON-safe values (bytes are base64 inside the dicts already), so
they pickle cheaply, log readably and would cross any other transport unchanged:

parent → worker
    ``(job_id, request_dict)`` run ``StylizeRequest.from_dict(request_dict)``;
    ``None`` finish and exit with code 0.
worker → parent
    ``("hello", device_description, gpu_count)`` once, after the model loaded (``gpu_count``: CUDA devices
    this process can see, 0 off CUDA);
    ``("progress", job_id, progress_dict)`` as the engine reports;
    ``("done", job_id, result_dict)`` or ``("failed", job_id, code, message)`` once per job.

Cancelling does not use the pipe: the parent writes the job's id into the shared ``cancel_id`` and the
engine sees it at its next step, while this process is busy and not reading the pipe.

Exit codes: 0 when asked, ``EXIT_START_FAILED`` when the engine could not be built or loaded,
``EXIT_DEVICE_ERROR`` after a CUDA error (the CUDA context is then unusable for the rest of the process,
so only a fresh process can compute again; the parent restarts it).
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, Protocol

from engine.errors import StylebotError
from engine.protocol import Progress, StylizeRequest, StylizeResult

log = logging.getLogger(__name__)

HELLO = "hello"
PROGRESS = "progress"
DONE = "done"
FAILED = "failed"

DEVICE_ERROR = "device_error"  # a failure code of the queue, next to the engine's codes
INTERNAL = "internal"

EXIT_START_FAILED = 2
EXIT_DEVICE_ERROR = 3

# Workers run below the bot's priority: on a machine where the engine keeps every core busy, the bot's
# event loop still answers users at once (the engine loses only what the bot actually uses).
NICENESS = 10


class SharedInt(Protocol):
    """What the worker needs of ``multiprocessing.Value('q')``."""

    value: int


class WorkerEngine(Protocol):
    """What a worker needs of an engine; ``engine.api.Engine`` and the tests' fake both have it."""

    @property
    def device_name(self) -> str: ...

    def load_model(self) -> None: ...

    def stylize(
        self,
        request: StylizeRequest,
        *,
        progress: Callable[[Progress], None] | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> StylizeResult: ...


@dataclass(frozen=True)
class WorkerOptions:
    """How to start a worker; pickled into the child, so it holds only plain values.

    ``engine_factory`` is ``"module:attribute"`` (the attribute may be dotted) naming a callable that is
    called as ``factory(EngineSettings(**engine_settings), device=device)``. The queue gives each worker
    its own ``name`` and ``device``; ``threads`` (CPU threads for torch) overrides ``engine_threads``.
    """

    name: str = "worker"
    device: str = "auto"
    engine_factory: str = "engine.api:Engine.from_settings"
    engine_settings: Mapping[str, Any] = field(default_factory=dict)
    threads: int | None = None
    log_level: str = "INFO"

    def replace(self, **changes: Any) -> WorkerOptions:
        return dataclasses.replace(self, **changes)


def load_factory(path: str) -> Callable[..., Any]:
    """Resolve ``"package.module:Attr.attr"``."""
    module_name, sep, attribute = path.partition(":")
    if not sep or not module_name or not attribute:
        raise ValueError(f"engine factory {path!r} is not of the form 'module:attribute'")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"engine factory {path!r} is not callable")
    return target


def build_engine(options: WorkerOptions) -> WorkerEngine:
    """Make the engine the options describe (imports torch when the factory is the real engine)."""
    from engine.settings import EngineSettings

    values = dict(options.engine_settings)
    if options.threads is not None:
        values["engine_threads"] = options.threads
    return load_factory(options.engine_factory)(EngineSettings(**values), device=options.device)


def is_device_error(err: BaseException) -> bool:
    """An error after which the CUDA context cannot be trusted: a CUDA error (torch's
    ``AcceleratorError``, or a ``RuntimeError`` saying "CUDA"), or a CUDA out-of-memory error that escaped
    the engine's own retry at smaller sizes.

    "CUDA" is matched with its case: torch writes CUDA failures that way ("CUDA error: ...", "CUDA out of
    memory"), while programming errors such as a device mismatch name devices in lower case ("cuda:0").
    """
    torch = sys.modules.get("torch")  # never imported here for this: a fake engine runs without torch
    if torch is not None:
        accelerator_error = getattr(torch, "AcceleratorError", None)
        if accelerator_error is not None and isinstance(err, accelerator_error):
            return True
        if isinstance(err, torch.cuda.OutOfMemoryError):
            return True
    return isinstance(err, RuntimeError) and "CUDA" in str(err)


def visible_gpus(device_description: str) -> int:
    """CUDA devices this process can see (respects ``CUDA_VISIBLE_DEVICES``); 0 when not on CUDA."""
    if not device_description.startswith("cuda"):
        return 0
    import torch

    return int(torch.cuda.device_count())


def run(conn: Connection, cancel_id: SharedInt, options: WorkerOptions) -> None:
    """The child process's target: start the engine, say hello, then serve jobs until told to stop."""
    _setup_logging(options)
    # Ctrl+C in a terminal reaches the whole process group; the parent decides when workers stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _lower_priority()
    try:
        engine = build_engine(options)
        engine.load_model()
        description = engine.device_name
        hello = (HELLO, description, visible_gpus(description))
    except Exception:
        log.exception("could not start the engine on %s", options.device)
        sys.exit(EXIT_START_FAILED)
    try:
        conn.send(hello)
        log.info("ready on %s", description)
        serve(conn, cancel_id, engine)
    except (BrokenPipeError, ConnectionResetError):
        log.warning("the queue went away; exiting")


def serve(conn: Connection, cancel_id: SharedInt, engine: WorkerEngine) -> None:
    """Run jobs one at a time until ``None`` or the parent's end of the pipe closes."""
    while True:
        try:
            message = conn.recv()
        except EOFError:
            log.warning("the queue closed the pipe; exiting")
            return
        if message is None:
            log.info("asked to exit")
            return
        job_id, request = message
        if not run_job(conn, cancel_id, engine, job_id, request):
            sys.exit(EXIT_DEVICE_ERROR)


def run_job(
    conn: Connection, cancel_id: SharedInt, engine: WorkerEngine, job_id: int, request_dict: dict[str, Any]
) -> bool:
    """Run one job and report how it ended. ``False``: the device is broken and this process must go."""

    def report(progress: Progress) -> None:
        conn.send((PROGRESS, job_id, progress.to_dict()))

    def should_cancel() -> bool:
        return cancel_id.value == job_id

    log.info("job %d: started", job_id)
    try:
        request = StylizeRequest.from_dict(request_dict)
        result = engine.stylize(request, progress=report, should_cancel=should_cancel)
    except StylebotError as err:
        log.info("job %d: %s (%s)", job_id, err.code, err)
        conn.send((FAILED, job_id, err.code, str(err)))
        return True
    except (BrokenPipeError, ConnectionResetError):
        raise  # a progress report found the parent gone: nobody to report to
    except Exception as err:
        if is_device_error(err):
            log.error("job %d: device error, this process must restart: %s", job_id, err)
            conn.send((FAILED, job_id, DEVICE_ERROR, str(err)))
            return False
        log.exception("job %d: unexpected error", job_id)
        conn.send((FAILED, job_id, INTERNAL, f"{type(err).__name__}: {err}"))
        return True
    log.info("job %d: done in %.1f s", job_id, result.seconds)
    conn.send((DONE, job_id, result.to_dict()))
    return True


def _lower_priority() -> None:
    try:
        os.nice(NICENESS)
    except (AttributeError, OSError) as err:  # no nice() on Windows; a sandbox may refuse it
        log.info("could not lower this worker's priority: %s", err)


def _setup_logging(options: WorkerOptions) -> None:
    """A spawned child starts with no logging set up: log to stderr (shared with the bot), each line
    marked with the worker's name so interleaved lines from several workers can be told apart."""
    name = options.name.replace("%", "%%")
    logging.basicConfig(
        level=options.log_level,
        format=f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s",
        force=True,
    )

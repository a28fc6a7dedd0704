"""Building a worker's engine and running an assignment's jobs with it, whatever the transport.

The local pipe worker (``pipe``) and the Celery worker (``celery``) both start the engine with
``build_engine`` and run what they are given with ``run_assignment``; only ``Reports`` (where the reports
go) and ``should_cancel`` (where cancels come from) differ. This module imports no torch itself: the engine
(with torch) is imported by ``build_engine``, in the worker process only.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine import figures
from engine.errors import StylebotError
from engine.protocol import Progress, StylizeRequest, StylizeResult
from engine.workers.wire import (
    DEVICE_ERROR,
    INTERNAL,
    InputLostError,
    ResultReport,
    Ticket,
    staged_animation,
    write_durably,
)

log = logging.getLogger(__name__)


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


class Reports(Protocol):
    """Where a worker's reports about its jobs go (a pipe, a broker queue)."""

    def started(self, job_id: int) -> None: ...

    def progress(self, job_id: int, progress: Progress) -> None: ...

    def done(self, job_id: int, report: ResultReport) -> None: ...

    def failed(self, job_id: int, code: str, message: str) -> None: ...


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


def run_assignment(
    engine: WorkerEngine,
    tickets: Sequence[Ticket],
    reports: Reports,
    should_cancel: Callable[[int], bool],
) -> bool:
    """Run an assignment's jobs, each reported on its own. ``False``: the device broke, and this process
    must go (the jobs not run yet are left for the bot to retry elsewhere).

    One job at a time for now; ``Engine.stylize_batch`` can take a whole assignment later, with the same
    per-job reports and cancels.
    """
    return all(run_job(engine, ticket, reports, should_cancel) for ticket in tickets)


def run_job(
    engine: WorkerEngine, ticket: Ticket, reports: Reports, should_cancel: Callable[[int], bool]
) -> bool:
    """Run one job and report how it ended. ``False``: the device is broken and this process must go."""
    job_id = ticket.job_id
    reports.started(job_id)
    log.info("job %d: started", job_id)
    try:
        request = ticket.request()
        result = figures.run(
            engine,
            request,
            progress=lambda progress: reports.progress(job_id, progress),
            should_cancel=lambda: should_cancel(job_id),
        )
        if ticket.result_path is not None:
            if result.animation is not None:  # first: the painting's file says the job's files are written
                write_durably(staged_animation(Path(ticket.result_path)), result.animation)
            write_durably(Path(ticket.result_path), result.image)
    except StylebotError as err:
        log.info("job %d: %s (%s)", job_id, err.code, err)
        reports.failed(job_id, err.code, str(err))
        return True
    except InputLostError as err:
        log.warning("job %d: %s", job_id, err)
        reports.failed(job_id, err.code, str(err))
        return True
    except (BrokenPipeError, ConnectionResetError):
        raise  # a report found the bot gone: nobody to report to
    except Exception as err:
        if is_device_error(err):
            log.error("job %d: device error, this process must restart: %s", job_id, err)
            reports.failed(job_id, DEVICE_ERROR, str(err))
            return False
        log.exception("job %d: unexpected error", job_id)
        reports.failed(job_id, INTERNAL, f"{type(err).__name__}: {err}")
        return True
    log.info("job %d: done in %.1f s", job_id, result.seconds)
    reports.done(job_id, ResultReport.of(result, inline=ticket.result_path is None))
    return True

"""Building a worker's engine and running an assignment's jobs with it, whatever the transport.

The local pipe worker (``pipe``) and the Celery worker (``celery``) both start the engine with
``build_engine`` and run what they are given with ``run_assignment``; only ``Reports`` (where the reports
go) and ``should_cancel`` (where cancels come from) differ. An assignment of one job is one
``Engine.stylize`` call; several jobs (a batch, see ``batching``) are one ``Engine.stylize_batch`` call,
each job still started, reported, cancelled and ended on its own. This module imports no torch itself: the
engine (with torch) is imported by ``build_engine``, in the worker process only.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine import figures
from engine.errors import Cancelled, StylebotError
from engine.protocol import Progress, StylizeRequest, StylizeResult
from engine.workers.batching import batch_limits
from engine.workers.clips import ClipOrder, run_clip
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


class WorkerEngine(figures.FigureEngine, Protocol):
    """What a worker needs of an engine (a figure's ``stylize`` and ``stylize_batch``, and the model loaded
    up front); ``engine.api.Engine`` and the tests' fake both have it."""

    @property
    def device_name(self) -> str: ...

    def load_model(self) -> None: ...


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


def worker_batch_limits(options: WorkerOptions, engine: WorkerEngine) -> dict[str, int]:
    """This worker's batch size per quality tier (``ENGINE_BATCH_SIZE``, see ``batching``), once its
    model is loaded (on CUDA, ``auto`` reads the memory left free by it)."""
    from engine.settings import EngineSettings

    settings = EngineSettings(**dict(options.engine_settings))
    return batch_limits(
        settings.engine_batch_size, engine.device_name, output_max_side=settings.output_max_side
    )


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
    must go (the jobs not ended are reported ``DEVICE_ERROR``, for the bot to retry elsewhere).

    One job: ``engine.stylize``. Several: one ``engine.stylize_batch`` call (``_Batch``).
    """
    if len(tickets) == 1:
        return run_job(engine, tickets[0], reports, should_cancel)
    return _Batch(engine, tickets, reports, should_cancel).run()


class _Batch:
    """Several jobs in one ``stylize_batch`` call, each reported as if it ran alone.

    A job whose input cannot be read fails before the call, alone. A cancel ends its job at once: whenever
    the engine calls back for any job of the batch (a step, a progress report), every job is checked, and
    a cancelled one is reported ``cancelled`` there and then, while the engine drops it at its next step
    and carries on with the others. (The engine returns all outcomes at the end of the batch, and the bot
    gives a cancelled job only seconds to stop before it counts its worker as hung.) What the engine
    later returns for a job already reported is ignored.
    """

    def __init__(
        self,
        engine: WorkerEngine,
        tickets: Sequence[Ticket],
        reports: Reports,
        should_cancel: Callable[[int], bool],
    ) -> None:
        self._engine = engine
        self._tickets = list(tickets)
        self._reports = reports
        self._should_cancel = should_cancel
        self._open: set[int] = set()  # started and not reported ended yet

    def run(self) -> bool:
        ready: list[tuple[Ticket, StylizeRequest]] = []
        for ticket in self._tickets:
            self._reports.started(ticket.job_id)
            self._open.add(ticket.job_id)
            try:
                ready.append((ticket, ticket.request()))
            except InputLostError as err:
                log.warning("job %d: %s", ticket.job_id, err)
                self._end(ticket.job_id, err.code, str(err))
            except (BrokenPipeError, ConnectionResetError):
                raise
            except Exception as err:  # settings that do not parse: this job alone
                log.exception("job %d: its ticket cannot be run", ticket.job_id)
                self._end(ticket.job_id, INTERNAL, f"{type(err).__name__}: {err}")
        if not ready:
            return True
        ids = [ticket.job_id for ticket, _ in ready]
        log.info("jobs %s: started as one batch", ", ".join(map(str, ids)))
        try:
            outcomes = self._engine.stylize_batch(
                [request for _, request in ready],
                progress=[self._progress(job_id) for job_id in ids],
                should_cancel=[self._cancelled(job_id) for job_id in ids],
            )
        except (BrokenPipeError, ConnectionResetError):
            raise  # a report found the bot gone: nobody to report to
        except Exception as err:
            device = is_device_error(err)
            if device:
                log.error("jobs %s: device error, this process must restart: %s", ids, err)
            else:
                log.exception("jobs %s: unexpected error in the batch", ids)
            for job_id in ids:
                self._end(job_id, DEVICE_ERROR if device else INTERNAL, f"{type(err).__name__}: {err}")
            return not device
        for (ticket, _), outcome in zip(ready, outcomes, strict=True):
            if ticket.job_id not in self._open:
                continue
            if isinstance(outcome, StylebotError):
                log.info("job %d: %s (%s)", ticket.job_id, outcome.code, outcome)
                self._end(ticket.job_id, outcome.code, str(outcome))
            else:
                self._done(ticket, outcome)
        return True

    def _done(self, ticket: Ticket, result: StylizeResult) -> None:
        try:
            if ticket.result_path is not None:
                write_durably(Path(ticket.result_path), result.image)
        except OSError as err:
            log.exception("job %d: the painting could not be written", ticket.job_id)
            self._end(ticket.job_id, INTERNAL, f"{type(err).__name__}: {err}")
            return
        self._open.discard(ticket.job_id)
        log.info("job %d: done in %.1f s", ticket.job_id, result.seconds)
        self._reports.done(ticket.job_id, ResultReport.of(result, inline=ticket.result_path is None))

    def _end(self, job_id: int, code: str, message: str) -> None:
        if job_id in self._open:
            self._open.discard(job_id)
            self._reports.failed(job_id, code, message)

    def _poll(self) -> None:
        """Report every job cancelled since the last look (see the class docstring)."""
        for job_id in sorted(self._open):
            if self._should_cancel(job_id):
                log.info("job %d: cancelled; it leaves the batch", job_id)
                self._end(job_id, Cancelled.code, "cancelled")

    def _cancelled(self, job_id: int) -> Callable[[], bool]:
        def should_cancel() -> bool:
            self._poll()
            return job_id not in self._open

        return should_cancel

    def _progress(self, job_id: int) -> Callable[[Progress], None]:
        def progress(report: Progress) -> None:
            self._poll()
            if job_id in self._open:
                self._reports.progress(job_id, report)

        return progress


def run_job(
    engine: WorkerEngine, ticket: Ticket, reports: Reports, should_cancel: Callable[[int], bool]
) -> bool:
    """Run one job and report how it ended. ``False``: the device is broken and this process must go."""
    job_id = ticket.job_id
    reports.started(job_id)
    log.info("job %d: started", job_id)
    try:
        request = ticket.request()
        progress = functools.partial(reports.progress, job_id)
        cancelled = functools.partial(should_cancel, job_id)
        if ticket.clip is not None:  # a GIF or video, frame by frame (issue 21)
            order = ClipOrder.from_dict(ticket.clip)
            result = run_clip(engine, request, order, progress=progress, should_cancel=cancelled)
        else:
            result = figures.run(engine, request, progress=progress, should_cancel=cancelled)
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

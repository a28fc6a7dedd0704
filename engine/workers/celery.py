"""``python -m engine worker``, the command line: Celery workers for the scale-out queue
(``bot/queue/celery_queue.py``).

One command per machine. It starts one worker process per visible GPU (pinned to it with
``CUDA_VISIBLE_DEVICES``), or one on the CPU, times ``--concurrency-per-gpu``, and stays as their
supervisor: it restarts a process that dies (a crash, a broken CUDA context) after a pause that doubles
while restarts keep failing, and on SIGTERM (or Ctrl+C) stops them all and exits.

The roles live in modules of their own: this one is the command line; ``supervisor`` keeps the worker
processes running; ``celery_worker`` is one worker process (the task, the engine thread, the reports);
``celery_link`` is a worker's link to the broker (the outbox, the sidecar with its heartbeats and stops).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable

from engine import style_store
from engine.settings import EngineSettings
from engine.workers import broker as protocol
from engine.workers.broker import BrokerUnreachableError
from engine.workers.process import setup_logging
from engine.workers.runner import WorkerOptions
from engine.workers.settings import QueueSettings
from engine.workers.supervisor import CANCEL_GRACE, Supervisor, WorkerSpec

DEFAULT_FACTORY = "engine.api:Engine.from_settings"
GPU_PROBE_TIMEOUT = 120.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m engine worker",
        description="Run Stylebot's Celery workers on this machine: one process per GPU (or one on the "
        "CPU), fed through the broker at QUEUE_URL. Engine settings come from the environment.",
    )
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: ENGINE_DEVICE, else auto)")
    p.add_argument(
        "--concurrency-per-gpu",
        type=int,
        default=1,
        metavar="N",
        help="worker processes per GPU (or on the CPU); each loads its own model (default 1)",
    )
    p.add_argument("--queue-url", help="the broker, redis://... or amqp://... (default: QUEUE_URL)")
    p.add_argument(
        "--engine-factory",
        default=DEFAULT_FACTORY,
        metavar="MODULE:ATTR",
        help=f"what builds the engine (default {DEFAULT_FACTORY}; tests use a fake)",
    )
    p.add_argument(
        "--cancel-grace",
        type=float,
        default=CANCEL_GRACE,
        metavar="SECONDS",
        help=f"a job asked to stop that runs on this long ends its process (default {CANCEL_GRACE:g})",
    )
    p.add_argument("--log-level", default=None, help="default: LOG_LEVEL, else INFO")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.concurrency_per_gpu < 1:
        print("error: --concurrency-per-gpu must be at least 1", file=sys.stderr)
        return 2
    level = (args.log_level or os.environ.get("LOG_LEVEL") or "INFO").upper()
    setup_logging("supervisor", level)
    try:
        engine_settings = EngineSettings()
        queue = QueueSettings(**({"queue_url": args.queue_url} if args.queue_url else {}))
        protocol.check_broker(queue)
        devices = plan_devices(args.device or engine_settings.engine_device, _visible_gpus)
    except (BrokerUnreachableError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    specs = [
        WorkerSpec(
            options=WorkerOptions(
                name=name,
                device=device,
                engine_factory=args.engine_factory,
                engine_settings=engine_settings.model_dump(mode="json"),
                threads=engine_settings.engine_threads,
                log_level=level,
            ),
            queue=queue.model_dump(),
            cuda_visible=cuda_visible,
            cancel_grace=args.cancel_grace,
        )
        for label, device, cuda_visible in devices
        for name in _slot_names(label, args.concurrency_per_gpu)
    ]
    style_store.start_prefetch(engine_settings)  # this machine's paintings, in the background
    return Supervisor(specs).run()


def plan_devices(device: str, visible_gpus: Callable[[], list[str]]) -> list[tuple[str, str, str | None]]:
    """(label, device, CUDA_VISIBLE_DEVICES) per worker process to start, before concurrency.

    ``auto`` and ``cuda`` mean every visible GPU (``auto`` falls back to the engine's own choice, the
    CPU or Apple's MPS, when there is none); ``cuda:N`` the N-th visible GPU only. A GPU worker sees only
    its own GPU, as ``cuda:0``.
    """
    if device in ("auto", "cuda") or device.startswith("cuda:"):
        gpus = visible_gpus()
        if device.startswith("cuda:"):
            index = int(device.partition(":")[2])
            if index >= len(gpus):
                raise ValueError(f"there is no {device}; this machine shows {len(gpus)} CUDA device(s)")
            return [(f"gpu{index}", "cuda:0", gpus[index])]
        if gpus:
            return [(f"gpu{index}", "cuda:0", gpu) for index, gpu in enumerate(gpus)]
        if device == "cuda":
            raise ValueError("CUDA was asked for but no CUDA GPU is visible")
        return [("auto", "auto", None)]
    return [(device.replace(":", ""), device, None)]


def _slot_names(label: str, concurrency: int) -> list[str]:
    return [label] if concurrency == 1 else [f"{label}-{k}" for k in range(concurrency)]


def _visible_gpus() -> list[str]:
    """The GPUs this machine shows (as ``CUDA_VISIBLE_DEVICES`` names them, else their indices).

    Counted by torch in a short-lived child process: the supervisor itself never imports torch or
    touches CUDA.
    """
    code = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=GPU_PROBE_TIMEOUT
        )
        count = int(done.stdout.strip() or 0) if done.returncode == 0 else 0
    except (OSError, ValueError, subprocess.TimeoutExpired):
        count = 0
    listed = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    names = listed if listed else [str(index) for index in range(count)]
    return names[:count]


__all__ = ["build_parser", "main", "plan_devices"]

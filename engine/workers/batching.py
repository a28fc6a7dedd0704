"""How many jobs a worker paints at once (``ENGINE_BATCH_SIZE``), per quality tier.

The worker decides, since only it knows its device, and tells the bot in its hello (the pipe) or its
heartbeats (Celery); the dispatchers then cap every assignment at the limit of its first job's tier.

``ENGINE_BATCH_SIZE`` set to a number forces it for every optimized tier. The ``instant`` tier has no
limit here (so 1, as for any tier a worker does not name): its sketches run alone (``batch_group``).

``auto`` is 1 on the CPU and Apple's MPS (a CPU already spends every core on one image; batching there
buys only the overhead of a step, see ``bench/load.py``), and on CUDA what the free device memory holds at
the tier's largest picture:

    limit = free memory * SAFETY / (MIB_PER_MEGAPIXEL * side * side / 1e6), between 1 and MAX_AUTO

where ``side`` is the tier's side on an accelerator, capped by ``OUTPUT_MAX_SIDE`` (a square: the largest
picture of that side). ``MIB_PER_MEGAPIXEL`` comes from the working memory of one L-BFGS step measured in
docs/benchmarks.md ("Seconds per step and memory": 197 MiB at 256 px, 614 MiB at 512 px, about 2,300-3,000
MiB per megapixel) rounded up; on CUDA the activations are the same float32 tensors, and ``SAFETY``
leaves room for cuDNN's workspaces, the allocator's fragmentation and the padding of mixed shapes.
Torch is imported only to read the free memory of a CUDA device.
"""

from __future__ import annotations

import logging

from engine.schedule import TIERS

log = logging.getLogger(__name__)

MIB_PER_MEGAPIXEL = 3000.0  # working memory of one image in an optimization step
SAFETY = 0.6  # the share of the free device memory batches may plan to use
MAX_AUTO = 16  # beyond this a batch takes longer than users should wait for their first result


def batch_limits(
    setting: int | str, device_description: str, *, output_max_side: int, free_bytes: int | None = None
) -> dict[str, int]:
    """The most jobs of each tier this worker takes at once (see the module docstring).

    ``free_bytes`` is the free memory of the CUDA device (read from it when ``None``).
    """
    tiers = {name: tier for name, tier in TIERS.items() if tier.optimized}
    if isinstance(setting, int):
        return dict.fromkeys(tiers, max(1, setting))
    if not device_description.startswith("cuda"):
        return dict.fromkeys(tiers, 1)
    if free_bytes is None:
        free_bytes = cuda_free_bytes()
    limits = {}
    for name, tier in tiers.items():
        side = min(tier.side_accelerated, output_max_side)
        per_image = MIB_PER_MEGAPIXEL * side * side / 1e6 * 2**20
        limits[name] = max(1, min(MAX_AUTO, int(free_bytes * SAFETY // per_image)))
    log.info("batch size auto: %s with %.1f GiB free on %s", limits, free_bytes / 2**30, device_description)
    return limits


def cuda_free_bytes() -> int:
    """Free memory of the current CUDA device, after the model was loaded."""
    import torch

    free, _total = torch.cuda.mem_get_info()
    return int(free)


def parse_limits(data: object) -> dict[str, int]:
    """Limits as a worker sent them; anything malformed counts as 1 (no batching), never as an error."""
    if not isinstance(data, dict):
        return {}
    limits = {}
    for name, value in data.items():
        try:
            limits[str(name)[:20]] = max(1, min(1024, int(value)))
        except (TypeError, ValueError):
            continue
    return limits

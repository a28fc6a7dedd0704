"""Which queued job runs next, where each job stands and how long it will wait: pure functions, no I/O.

Both queue back ends and the bot's "you are number 3, about 2 minutes" messages use these, so the order
a user is told is the order the embedded queue follows.

Fairness is round robin across users (a user is a (platform, user id) pair). A job's *rank* is how many
of its owner's jobs would run before it:
the owner's running jobs plus the owner's older queued jobs. Jobs run in order of (rank, created_at, id),
so every user's first waiting job comes before anyone's second, a user who already has a job running
goes behind users who have none, and among equals the older job goes first.

Batches (``ENGINE_BATCH_SIZE``) are cut from the head of that order (``next_batch``): the first job and
the jobs right behind it that can share its batch (``engine.protocol.batch_group``), up to the worker's
limit for the first job's tier, stopping at the first job that cannot. So no job starts before a job
ahead of it in the fair order, unless both start in the same batch: batching never lets anyone jump the
line.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Callable, Hashable, Mapping, Sequence

from bot.db import JobRecord
from engine.protocol import batch_group, leading_batch, settings_from_dict


def fair_order(queued: Sequence[JobRecord], running: Sequence[JobRecord]) -> list[JobRecord]:
    """The queued jobs in the order they should start (see the module's docstring).

    ``running`` are the jobs on workers now. A dispatcher choosing the successor of a job that just ended
    passes that job too, so its user's next job is ranked as it was while the job ran (see
    ``EmbeddedQueue._dispatch``).
    """
    running_per_user = Counter(_owner(job) for job in running)
    queued_so_far: Counter[tuple[str, int]] = Counter()
    ranked: list[tuple[int, JobRecord]] = []
    for job in sorted(queued, key=lambda j: (j.created_at, j.id)):
        ranked.append((running_per_user[_owner(job)] + queued_so_far[_owner(job)], job))
        queued_so_far[_owner(job)] += 1
    ranked.sort(key=lambda item: (item[0], item[1].created_at, item[1].id))
    return [job for _, job in ranked]


def _owner(job: JobRecord) -> tuple[str, int]:
    """A user is a platform's user: Telegram's user 42 and Discord's user 42 are two people."""
    return job.platform, job.user_id


def job_group(job: JobRecord) -> Hashable:
    """The job's ``batch_group``. A job shares a batch with nobody when it is a retry (its worker died
    under it, maybe because of it: the others of its batch must not pay for it a second time) or when its
    stored settings do not parse (its worker fails it alone), and when it is a clip (its frames are its
    own batch: ``engine.workers.clips``)."""
    if job.attempts > 0 or job.clip is not None:
        return ("alone", job.id)
    try:
        return batch_group(settings_from_dict(job.settings))
    except (TypeError, ValueError):
        return ("alone", job.id)


def batch_limit(limits: Mapping[str, int], job: JobRecord) -> int:
    """The most jobs a worker with these per-tier ``limits`` takes in a batch led by ``job`` (1 unknown)."""
    return max(1, limits.get(str(job.settings.get("quality", "normal")), 1))


def next_batch(order: Sequence[JobRecord], limit: Callable[[JobRecord], int]) -> list[JobRecord]:
    """The batch at the head of ``order`` (a ``fair_order``): see the module's docstring."""
    if not order:
        return []
    return leading_batch(order, job_group, limit(order[0]))


def estimate_wait(
    position: int,
    *,
    workers: int,
    typical_seconds: float,
    running_remaining: Sequence[float],
    ahead: Sequence[float] | None = None,
) -> float:
    """Seconds until the job at ``position`` (1-based, its place in ``fair_order``) starts.

    The model: each worker becomes free when its running job's remaining time has passed (an idle
    worker is free now); the ``position - 1`` jobs ahead then start, in order, on whichever worker is free
    first, and each takes ``typical_seconds``. The job starts when a worker is free after them. With
    every worker free at the same moment this is ``(position - 1) // workers * typical_seconds`` plus
    that moment. More running jobs than workers (a stale count) keeps the ``workers`` soonest to finish.
    The estimate never decreases as the position grows. ``ahead``: the seconds each of the jobs ahead
    takes, in order, when they differ (a strip weighs more); by default each takes ``typical_seconds``.
    """
    if position < 1:
        raise ValueError("positions start at 1")
    if workers < 1:
        raise ValueError("a queue without workers has no wait estimate")
    typical = max(0.0, typical_seconds)
    free_at = sorted(max(0.0, r) for r in running_remaining)[:workers]
    free_at += [0.0] * (workers - len(free_at))
    heapq.heapify(free_at)
    for index in range(position - 1):
        seconds = typical if ahead is None else max(0.0, ahead[index])
        heapq.heapreplace(free_at, free_at[0] + seconds)
    return free_at[0]

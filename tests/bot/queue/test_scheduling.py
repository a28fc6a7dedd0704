"""Fair ordering, queue positions and wait estimates: pure functions on plain records."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.db import JobRecord, JobState
from bot.queue.scheduling import estimate_wait, fair_order

T0 = datetime(2025, 1, 1, 12, 0, tzinfo=UTC)


def job(
    job_id: int, user_id: int, minute: float = 0, state: JobState = JobState.QUEUED, **fields: Any
) -> JobRecord:
    """A job row created ``minute`` minutes after T0 (default: by id, so ids and ages agree)."""
    values: dict[str, Any] = {
        "id": job_id,
        "user_id": user_id,
        "chat_id": user_id,
        "chat_type": "private",
        "language_code": "en",
        "source_message_id": 1,
        "status_message_id": None,
        "state": state,
        "styles": [{"preset": "starry_night"}],
        "style_label": "The Starry Night",
        "settings": {},
        "content_path": "content.jpg",
        "style_paths": [],
        "attempts": 0,
        "max_attempts": 2,
        "worker": None,
        "external_id": None,
        "progress": None,
        "eta_seconds": None,
        "error_code": None,
        "error_message": None,
        "result_file_id": None,
        "result_width": None,
        "result_height": None,
        "engine_seconds": None,
        "created_at": T0 + timedelta(minutes=minute),
        "started_at": None,
        "finished_at": None,
        "heartbeat_at": None,
    }
    values.update(fields)
    return JobRecord(**values)


def running(job_id: int, user_id: int, **fields: Any) -> JobRecord:
    return job(job_id, user_id, minute=-10, state=JobState.RUNNING, **fields)


def ids(jobs: list[JobRecord]) -> list[int]:
    return [j.id for j in jobs]


# ----- fair_order -----


def test_empty_queue() -> None:
    assert fair_order([], []) == []
    assert fair_order([], [running(1, 7)]) == []


def test_one_user_runs_oldest_first() -> None:
    queued = [job(3, 1, minute=3), job(1, 1, minute=1), job(2, 1, minute=2)]
    assert ids(fair_order(queued, [])) == [1, 2, 3]


def test_a_heavy_user_does_not_hold_back_others() -> None:
    """A submits five, then B one and C one: everyone's first job comes before A's second."""
    queued = [job(i, user_id=1, minute=i) for i in range(1, 6)] + [job(6, 2, minute=6), job(7, 3, minute=7)]
    assert ids(fair_order(queued, [])) == [1, 6, 7, 2, 3, 4, 5]


def test_round_robin_interleaves_users() -> None:
    queued = [
        job(1, 1, minute=1),
        job(2, 1, minute=2),
        job(3, 1, minute=3),
        job(4, 2, minute=4),
        job(5, 2, minute=5),
        job(6, 3, minute=6),
    ]
    # Rank 0: 1 (A), 4 (B), 6 (C); rank 1: 2 (A), 5 (B); rank 2: 3 (A).
    assert ids(fair_order(queued, [])) == [1, 4, 6, 2, 5, 3]


def test_a_user_with_a_running_job_goes_behind() -> None:
    queued = [job(2, 1, minute=1), job(3, 2, minute=2)]
    assert ids(fair_order(queued, [])) == [2, 3]
    assert ids(fair_order(queued, [running(1, 1)])) == [3, 2]
    # Two running jobs push the user's first waiting job behind everyone's second.
    queued = [job(3, 1, minute=1), job(4, 2, minute=2), job(5, 2, minute=3), job(6, 2, minute=4)]
    assert ids(fair_order(queued, [running(1, 1), running(2, 1)])) == [4, 5, 3, 6]


def test_running_jobs_of_other_users_change_nothing() -> None:
    queued = [job(2, 1, minute=1), job(3, 2, minute=2)]
    assert ids(fair_order(queued, [running(1, 9), running(9, 8)])) == [2, 3]


def test_ties_fall_back_to_age_then_id() -> None:
    # Same rank and the same second: the lower id (inserted first) wins.
    queued = [job(5, 2, minute=1), job(4, 1, minute=1), job(6, 3, minute=0)]
    assert ids(fair_order(queued, [])) == [6, 4, 5]


def test_rank_counts_the_users_queue_by_age_not_by_input_order() -> None:
    queued = [job(3, 1, minute=3), job(2, 2, minute=2), job(1, 1, minute=1)]
    assert ids(fair_order(queued, [])) == [1, 2, 3]


def test_the_same_id_on_two_platforms_is_two_users() -> None:
    """Telegram's user 1 and Discord's user 1 never share a turn: each has a first job of rank 0."""
    queued = [
        job(1, 1, minute=1),
        job(2, 1, minute=2),
        job(3, 1, minute=3, platform="discord"),
    ]
    assert ids(fair_order(queued, [])) == [1, 3, 2]
    # A Telegram job running does not push the Discord user's job back.
    queued = [job(3, 1, minute=1, platform="discord"), job(4, 2, minute=2)]
    assert ids(fair_order(queued, [running(2, 1)])) == [3, 4]


def test_input_is_not_changed() -> None:
    queued = [job(2, 1, minute=2), job(1, 1, minute=1)]
    fair_order(queued, [])
    assert ids(queued) == [2, 1]


# ----- estimate_wait -----


def test_first_in_line_waits_for_the_soonest_free_worker() -> None:
    assert estimate_wait(1, workers=1, typical_seconds=60, running_remaining=[25]) == 25
    assert estimate_wait(1, workers=2, typical_seconds=60, running_remaining=[25, 10]) == 10
    assert estimate_wait(1, workers=2, typical_seconds=60, running_remaining=[25]) == 0  # one is idle
    assert estimate_wait(1, workers=1, typical_seconds=60, running_remaining=[]) == 0


def test_jobs_ahead_are_spread_over_the_workers() -> None:
    # One worker busy for 25 s: position 3 waits for it and two typical jobs.
    assert estimate_wait(3, workers=1, typical_seconds=60, running_remaining=[25]) == 145
    # Two idle workers: positions 1 and 2 start now, 3 and 4 after one job, 5 after two.
    waits = [estimate_wait(p, workers=2, typical_seconds=60, running_remaining=[]) for p in range(1, 6)]
    assert waits == [0, 0, 60, 60, 120]
    # Workers free at 10 s and 50 s: position 2 takes the second worker (50), 3 follows the first (70).
    waits = [estimate_wait(p, workers=2, typical_seconds=60, running_remaining=[50, 10]) for p in (1, 2, 3)]
    assert waits == [10, 50, 70]


@pytest.mark.parametrize(
    ("workers", "remaining"),
    [(1, []), (1, [30]), (2, [5, 90]), (3, [100, 0]), (4, [10, 20, 30, 40]), (2, [1, 2, 3])],
)
def test_estimates_never_decrease_with_position(workers: int, remaining: list[float]) -> None:
    waits = [
        estimate_wait(p, workers=workers, typical_seconds=45, running_remaining=remaining)
        for p in range(1, 30)
    ]
    assert waits == sorted(waits)
    assert waits[-1] > waits[0]


def test_more_running_jobs_than_workers_uses_the_soonest() -> None:
    assert estimate_wait(1, workers=2, typical_seconds=60, running_remaining=[300, 20, 40]) == 20
    assert estimate_wait(2, workers=2, typical_seconds=60, running_remaining=[300, 20, 40]) == 40


def test_estimate_clamps_nonsense_and_rejects_bad_arguments() -> None:
    assert estimate_wait(2, workers=1, typical_seconds=-5, running_remaining=[-3]) == 0
    with pytest.raises(ValueError, match="positions"):
        estimate_wait(0, workers=1, typical_seconds=60, running_remaining=[])
    with pytest.raises(ValueError, match="workers"):
        estimate_wait(1, workers=0, typical_seconds=60, running_remaining=[])

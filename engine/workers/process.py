"""What every worker process and its keeper need, written once: exit descriptions, logging, back-off,
ids remembered for a while, and the loop that keeps a broker connection up.

Standard library only: the bot imports this (the embedded queue, the Celery queue's listener).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


def describe_exit(code: int | None) -> str:
    """A process's exit code in words, for logs and the reason a job was retried."""
    if code is None:
        return "still running"
    return f"killed by signal {-code}" if code < 0 else f"exit code {code}"


def setup_logging(name: str, level: str | int) -> None:
    """Log to stderr, each line marked with the process's name: several processes share one stderr (a
    spawned child starts with no logging set up)."""
    name = name.replace("%", "%%")
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s",
        force=True,
    )


def backoff(failures: int, first: float, most: float) -> float:
    """The pause before the next start after ``failures`` failed ones in a row: 0, then ``first``,
    doubling, at most ``most`` seconds."""
    return 0.0 if failures < 1 else min(most, first * 2 ** (failures - 1))


class Expiring(Generic[K]):
    """Keys remembered with when they were last added; once there are more than ``limit``, those older
    than ``ttl`` seconds are forgotten. Safe to share between threads."""

    def __init__(self, ttl: float, *, limit: int = 1000) -> None:
        self._ttl = ttl
        self._limit = limit
        self._at: dict[K, float] = {}
        self._lock = threading.Lock()

    def add(self, keys: list[K]) -> None:
        now = time.monotonic()
        with self._lock:
            for key in keys:
                self._at[key] = now
            if len(self._at) > self._limit:
                self._at = {k: at for k, at in self._at.items() if now - at < self._ttl}

    def since(self, key: K) -> float:
        """Seconds since ``key`` was last added; infinity for a key not remembered."""
        with self._lock:
            at = self._at.get(key)
        return float("inf") if at is None else time.monotonic() - at

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._at


def keep_connected(
    serve: Callable[[], None],
    closing: threading.Event,
    *,
    delay: float,
    on_error: Callable[[Exception], None],
    meanwhile: Callable[[], None] | None = None,
    tick: float = 0.25,
) -> None:
    """Run ``serve`` (which connects and consumes) until ``closing`` is set, again ``delay`` seconds
    after each error (a lost connection: the sooner it is back after a broker restart, the better).
    ``on_error`` hears of each failure; ``meanwhile`` runs every ``tick`` while waiting to try again."""
    while not closing.is_set():
        try:
            serve()
        except Exception as err:
            if closing.is_set():
                return
            on_error(err)
            deadline = time.monotonic() + delay
            while not closing.is_set() and (left := deadline - time.monotonic()) > 0:
                if meanwhile is not None:
                    meanwhile()
                closing.wait(min(tick, left) if meanwhile is not None else left)

"""One rule for trying a chat platform's call again after a passing failure, for every front end.

A front end knows which of its platform's failures are passing (a timeout, a dropped connection, a 5xx) and
what a failure looks like in a log line without a token; this module knows when to try again. The pauses
are data, here once:

- ``PAUSES``: a call worth a few tries (a send, an edit, an answer): three more tries after 1, 2 and 4 s.
  After that the caller says "not now" (the notifier tries a result again later; a progress view is
  superseded by the next one).
- ``patient()``: for what must not be lost (a job's last status): pauses that grow from 1 s and stay at
  ``PATIENT_CAP`` for as long as the failures are passing, so the view is shown once the platform is back;
  a refusal (the message or the chat is gone) still ends it at once.

A pause the platform asked for (Telegram's flood control ``retry_after``) replaces the next pause. Tests
make the pauses short by setting ``PAUSES``, ``PATIENT_FIRST`` and ``PATIENT_CAP`` (read at each call).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

PAUSES: tuple[float, ...] = (1.0, 2.0, 4.0)  # seconds before the 2nd, 3rd and 4th try of a passing failure
PATIENT_FIRST = 1.0  # seconds before the 2nd try of a call that must not be lost; doubles after each try
PATIENT_CAP = 300.0  # ... up to this pause, then every PATIENT_CAP seconds while the failures are passing


def patient() -> Iterator[float]:
    """Endless pauses, doubling from ``PATIENT_FIRST`` up to ``PATIENT_CAP``: for a call the bot keeps trying
    until it goes through or is refused for good (or its task is cancelled, e.g. at shutdown)."""
    pause = PATIENT_FIRST
    while True:
        yield pause
        pause = min(pause * 2, PATIENT_CAP)


def _type_and_text(err: BaseException) -> str:
    return f"{type(err).__name__}: {err}"[:200]


async def retried(
    call: Callable[[], Awaitable[T]],
    *,
    passing: Callable[[BaseException], bool],
    what: str,
    pauses: Iterable[float] | None = None,
    asked: Callable[[BaseException], float | None] | None = None,
    describe: Callable[[BaseException], str] = _type_and_text,
    quiet: bool = False,
) -> T:
    """``call()``, tried again after each failure that ``passing`` says is worth it, pausing ``pauses``
    (``PAUSES`` when not given; ``patient()`` for a call that must not be lost) between tries; any other
    failure, or the one after the last pause, is raised. Only for calls that are safe to repeat.

    ``what`` names the call for the log lines, with its job and user ids ("job 7 (user 42): status");
    ``asked`` gives the pause the platform asked for, if any; ``describe`` turns a failure into log text
    (a front end's own, never a URL or a token). Each retry is one WARNING line: the platform misbehaved;
    with ``quiet`` only the first is (the later ones are DEBUG), so an outage waited out with ``patient()``
    is one line however long it lasts.
    """
    remaining = iter(PAUSES if pauses is None else pauses)
    for attempt in itertools.count(1):
        try:
            return await call()
        except Exception as err:
            if not passing(err):
                raise
            pause = next(remaining, None)
            if pause is None:
                raise
            wanted = asked(err) if asked is not None else None
            if wanted is not None:
                pause = wanted
            level = logging.DEBUG if quiet and attempt > 1 else logging.WARNING
            log.log(
                level, "%s failed (%s, try %d); trying again in %.1f s", what, describe(err), attempt, pause
            )
            await asyncio.sleep(pause)
    raise AssertionError("unreachable")

"""The one retry rule of both front ends (``bot.retrying``): which failures are tried again, how often,
after which pauses, and what is logged."""

from __future__ import annotations

import itertools
import logging

import pytest

from bot import retrying


class Passing(Exception):
    """A failure the classifier calls passing (a timeout, a 5xx)."""


class Refused(Exception):
    """A failure the classifier calls final (a 403)."""


def passing(err: BaseException) -> bool:
    return isinstance(err, Passing)


@pytest.fixture
def slept(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The pauses the rule took, instead of sleeping them."""
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr(retrying.asyncio, "sleep", sleep)
    return pauses


def failing(*errors: BaseException, result: str = "ok"):
    """A call that raises ``errors`` one per try, then returns ``result``; its tries are counted."""
    tries: list[int] = []

    async def call() -> str:
        tries.append(1)
        if len(tries) <= len(errors):
            raise errors[len(tries) - 1]
        return result

    return call, tries


async def test_a_passing_failure_is_tried_again_after_the_pauses(
    slept: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    call, tries = failing(Passing("502"), Passing("timeout"))
    assert await retrying.retried(call, passing=passing, what="job 7 (user 42): status") == "ok"
    assert len(tries) == 3
    assert slept == list(retrying.PAUSES[:2])
    lines = [r for r in caplog.records if r.name == "bot.retrying"]
    assert [r.levelno for r in lines] == [logging.WARNING, logging.WARNING]
    assert all("job 7 (user 42): status failed" in r.getMessage() for r in lines)
    assert "Passing: 502" in lines[0].getMessage()


async def test_the_failure_after_the_last_pause_is_raised(slept: list[float]) -> None:
    errors = [Passing(str(n)) for n in range(len(retrying.PAUSES) + 1)]
    call, tries = failing(*errors)
    with pytest.raises(Passing) as raised:
        await retrying.retried(call, passing=passing, what="answer")
    assert raised.value is errors[-1]
    assert len(tries) == len(retrying.PAUSES) + 1
    assert slept == list(retrying.PAUSES)


async def test_a_failure_that_is_not_passing_is_raised_at_once(slept: list[float]) -> None:
    call, tries = failing(Passing("502"), Refused("403"))
    with pytest.raises(Refused):
        await retrying.retried(call, passing=passing, what="answer")
    assert len(tries) == 2
    assert slept == [retrying.PAUSES[0]]


async def test_the_pauses_are_read_at_each_call(slept: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrying, "PAUSES", (0.5,))
    call, tries = failing(Passing("a"), Passing("b"))
    with pytest.raises(Passing):
        await retrying.retried(call, passing=passing, what="answer")
    assert (len(tries), slept) == (2, [0.5])


async def test_a_pause_the_platform_asked_for_replaces_the_next_one(slept: list[float]) -> None:
    call, _ = failing(Passing("flood"), Passing("502"))
    asked = {"flood": 7.0}
    result = await retrying.retried(
        call, passing=passing, what="answer", asked=lambda err: asked.get(str(err))
    )
    assert result == "ok"
    assert slept == [7.0, retrying.PAUSES[1]]


async def test_the_description_of_a_failure_is_the_front_ends(
    slept: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    call, _ = failing(Passing("https://discord.com/api/webhooks/1/SECRET-TOKEN"))
    await retrying.retried(call, passing=passing, what="answer", describe=lambda err: "503 (code 0)")
    (line,) = [r.getMessage() for r in caplog.records if r.name == "bot.retrying"]
    assert "503 (code 0)" in line
    assert "SECRET" not in line


def test_patient_pauses_grow_to_the_cap_and_never_end(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retrying, "PATIENT_FIRST", 1.0)
    monkeypatch.setattr(retrying, "PATIENT_CAP", 10.0)
    assert list(itertools.islice(retrying.patient(), 7)) == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0, 10.0]


async def test_a_patient_call_goes_on_until_it_goes_through(slept: list[float]) -> None:
    call, tries = failing(*[Passing("502")] * 30)
    assert await retrying.retried(call, passing=passing, what="status", pauses=retrying.patient()) == "ok"
    assert len(tries) == 31
    assert slept[-1] == retrying.PATIENT_CAP


async def test_a_patient_call_still_ends_at_a_refusal(slept: list[float]) -> None:
    call, tries = failing(Passing("502"), Passing("502"), Refused("404"))
    with pytest.raises(Refused):
        await retrying.retried(call, passing=passing, what="status", pauses=retrying.patient())
    assert len(tries) == 3


async def test_a_quiet_call_logs_one_warning_per_outage(
    slept: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    """A long outage waited out (the database's lease) is one WARNING, not one per try."""
    caplog.set_level(logging.DEBUG, logger="bot.retrying")
    call, tries = failing(*(Passing("down") for _ in range(5)))
    assert await retrying.retried(call, passing=passing, what="lease", pauses=retrying.patient(), quiet=True)
    assert len(tries) == 6
    levels = [r.levelno for r in caplog.records if r.name == "bot.retrying"]
    assert levels == [logging.WARNING] + [logging.DEBUG] * 4

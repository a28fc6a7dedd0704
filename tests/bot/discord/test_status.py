"""The Discord status's picture rules, without a Discord: the sketch goes up at once (past the interval),
text-only edits keep it, the last word drops it, a sketch quicker than the response waits for it."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import discord

from bot.discord.frontend import DiscordFrontend


class FakeInteraction:
    """The interaction whose token edits the response: records what each edit asked for."""

    def __init__(self) -> None:
        self.expires_at = discord.utils.utcnow() + timedelta(minutes=15)
        self.filesize_limit = 8 * 2**20
        self.edits: list[dict[str, Any]] = []

    async def edit_original_response(self, **fields: Any) -> None:
        self.edits.append(fields)


def job(status_message_id: int | None = 1) -> Any:
    return SimpleNamespace(
        id=7, user_id=42, status_message_id=status_message_id, language_code="en", chat_type="guild"
    )


def pictures(edit: dict[str, Any]) -> list[str] | None:
    """The attachments an edit sets (None: it leaves them as they are)."""
    files = edit.get("attachments")
    return None if files is None else [f.filename for f in files]


def buttons(edit: dict[str, Any]) -> list[str]:
    view = edit.get("view")
    return [] if view is None else [item.custom_id for item in view.children]


async def test_the_sketch_goes_up_at_once_and_text_only_edits_keep_it() -> None:
    frontend = DiscordFrontend(None, interval=3600.0)  # type: ignore[arg-type]
    clock = [0.0]
    frontend.throttle.clock = lambda: clock[0]
    interaction = FakeInteraction()
    await frontend.opened(job(), interaction)  # type: ignore[arg-type]
    await frontend.show_status(job(), "number 2", preview=b"sketch", now=True, keep=True)
    assert [pictures(e) for e in interaction.edits] == [["preview.jpg"]]  # not held back an hour
    assert buttons(interaction.edits[0]) == ["keep:7", "cancel:7"]
    clock[0] += 3600  # an interval later
    await frontend.show_status(job(), "number 1")  # the queue moved: text only, the offer stays off
    assert pictures(interaction.edits[1]) is None  # the sketch stays on the response
    assert buttons(interaction.edits[1]) == ["cancel:7"]
    clock[0] += 3600
    await frontend.show_status(job(), "number 1")  # nothing changed: no edit
    assert len(interaction.edits) == 2
    await frontend.show_status(job(), "Cancelled", final=True)
    assert pictures(interaction.edits[2]) == []  # the last word drops it
    assert buttons(interaction.edits[2]) == []


async def test_a_sketch_before_the_response_is_up_is_shown_when_it_is() -> None:
    frontend = DiscordFrontend(None, interval=3600.0)  # type: ignore[arg-type]
    await frontend.show_status(job(None), "number 1", preview=b"sketch", now=True)  # no response yet
    interaction = FakeInteraction()
    await frontend.opened(job(), interaction)  # type: ignore[arg-type]
    for _ in range(10):
        if interaction.edits:
            break
        await asyncio.sleep(0)
    assert [pictures(e) for e in interaction.edits] == [["preview.jpg"]]
    await frontend.close()

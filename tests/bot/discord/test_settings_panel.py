"""The /settings panel as the core builds it (no gateway needed)."""

from __future__ import annotations

from bot.discord.settings import settings_view
from bot.services.preferences import Preferences


async def test_the_sketch_toggle_is_there_only_where_the_operator_offers_sketches() -> None:
    body, view = settings_view("en", 1, Preferences())
    assert "Sketch first: on" in body
    assert "set:sketch" in [getattr(item, "custom_id", None) for item in view.children]

    body, view = settings_view("en", 1, Preferences(), sketches=False)  # SKETCH_PREVIEW=off
    assert "Sketch first: off (for everyone on this bot)" in body
    assert "set:sketch" not in [getattr(item, "custom_id", None) for item in view.children]

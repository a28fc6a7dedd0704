"""How a job's settings come together from the bot, the chat, the user and the preset."""

from __future__ import annotations

from bot.services.preferences import PREVIEW_EVERY, Preferences, job_settings


def test_round_trip_and_unknown_keys_are_ignored() -> None:
    prefs = Preferences(quality="draft", strength=0.7, preserve_colors="luminance", result_as="document")
    assert Preferences.from_dict({**prefs.to_dict(), "obsolete": 1}) == prefs


def test_layers_from_weakest_to_strongest() -> None:
    settings = job_settings(
        default_quality="normal",
        chat={"quality": "draft", "strength": 0.3},
        preferences=Preferences(strength=0.9),
        preset={"preserve_colors": "histogram"},
    )
    assert settings.quality == "draft"  # the chat's default beats the bot's
    assert settings.strength == 0.9  # the user's beats the chat's
    assert settings.preserve_colors == "histogram"  # the preset's beats everything


def test_explicit_painting_colours_override_a_chat_default() -> None:
    settings = job_settings(
        default_quality="normal",
        chat={"preserve_colors": "luminance"},
        preferences=Preferences(preserve_colors="none"),
        preset=None,
    )
    assert settings.preserve_colors is None


def test_live_preview_asks_the_engine_for_previews() -> None:
    on = job_settings(
        default_quality="draft", chat=None, preferences=Preferences(live_preview=True), preset=None
    )
    off = job_settings(default_quality="draft", chat=None, preferences=Preferences(), preset=None)
    assert (on.preview_every, off.preview_every) == (PREVIEW_EVERY, 0)


def test_strength_names_snap_to_the_nearest() -> None:
    assert Preferences().strength_name() == "balanced"
    assert Preferences(strength=0.92).strength_name() == "wild"
    assert Preferences(strength=0.3).strength_name() == "subtle"


def test_the_sketch_is_on_unless_turned_off() -> None:
    assert Preferences.from_dict({}).sketch is True  # users from before the sketch have it too
    off = Preferences(sketch=False)
    assert Preferences.from_dict(off.to_dict()).sketch is False
    assert "sketch" not in off.style_settings()  # not an engine setting: presets do not keep it

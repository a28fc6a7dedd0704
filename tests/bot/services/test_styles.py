"""Parsing what users type as a style."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.db import PresetRecord
from bot.services import styles
from engine.catalog import load_catalog
from engine.errors import UnknownStyleError

CATALOG = load_catalog()
NOW = datetime.now(UTC)


def preset(name: str, refs: list[dict], settings: dict | None = None) -> PresetRecord:
    return PresetRecord(1, 7, name, refs, settings or {}, NOW, NOW)


@pytest.mark.parametrize("typed", ["starry_night", "Starry Night", "starry-night", " starry_night "])
def test_one_painting(typed: str) -> None:
    choice = styles.parse(typed, CATALOG)
    assert choice.refs == ({"preset": "starry_night", "weight": 1.0},)
    assert choice.label == "The Starry Night"
    assert choice.image_file_ids == ()


@pytest.mark.parametrize(
    "typed", ["starry_night + great_wave", "starry_night,great_wave", "starry_night great_wave"]
)
def test_blends(typed: str) -> None:
    choice = styles.parse(typed, CATALOG)
    assert [r["preset"] for r in choice.refs] == ["starry_night", "great_wave"]
    assert " + " in choice.label


def test_unknown_names_suggest_paintings_and_own_presets() -> None:
    mine = [preset("stormy", [{"preset": "shipwreck", "weight": 1.0}])]
    with pytest.raises(UnknownStyleError) as caught:
        styles.parse("storm", CATALOG, mine)
    assert "stormy" in caught.value.suggestions
    with pytest.raises(UnknownStyleError) as caught:
        styles.parse("stary nite", CATALOG)
    assert "starry_night" in caught.value.suggestions


def test_a_users_preset_by_name_with_its_settings_and_images() -> None:
    mine = [
        preset(
            "Mix",
            [{"preset": "udnie", "weight": 2.0}, {"file_id": "AgAD-own", "weight": 1.0}],
            {"quality": "draft"},
        )
    ]
    choice = styles.parse("mix", CATALOG, mine)
    assert choice.label == "Mix"
    assert choice.settings == {"quality": "draft"}
    assert choice.refs == (
        {"preset": "udnie", "weight": 2.0},
        {"image": 0, "file_id": "AgAD-own", "weight": 1.0},
    )
    assert choice.image_file_ids == ("AgAD-own",)


def test_saving_turns_job_refs_back_into_file_ids() -> None:
    choice = styles.own_image("AgAD-x", "your image")
    assert styles.for_saving(choice) == [{"file_id": "AgAD-x", "weight": 1.0}]
    again = styles.from_saved(styles.for_saving(choice), "x", {})
    assert again.refs == choice.refs


def test_describe_uses_titles_and_a_label_for_images() -> None:
    saved = [{"preset": "great_wave"}, {"file_id": "f"}]
    assert styles.describe(saved, CATALOG, "your image") == "The Great Wave off Kanagawa + your image"


# -- blends: repeats merge, at most four different styles ------------------------------------------


def test_repeats_of_a_painting_merge_and_their_weights_add() -> None:
    choice = styles.parse(" + ".join(["udnie"] * 450 + ["great_wave"]), CATALOG)
    assert choice.refs == ({"preset": "udnie", "weight": 450.0}, {"preset": "great_wave", "weight": 1.0})
    assert choice.label == "Udnie + The Great Wave off Kanagawa"
    styles.check_blend(choice)  # two paintings: fine


def test_repeated_images_in_a_saved_blend_merge_and_are_renumbered() -> None:
    saved: list[dict] = [
        {"file_id": "A", "weight": 1.0},
        {"preset": "udnie", "weight": 0.5},
        {"file_id": "A", "weight": 2.0},
        {"file_id": "B"},
        {"preset": "udnie", "weight": 0.5},
    ]
    choice = styles.from_preset(preset("mine", saved))
    assert choice.refs == (
        {"image": 0, "file_id": "A", "weight": 3.0},
        {"preset": "udnie", "weight": 1.0},
        {"image": 1, "file_id": "B", "weight": 1.0},
    )
    assert choice.image_file_ids == ("A", "B")


@pytest.mark.parametrize(
    "make",
    [
        lambda: styles.parse("udnie + starry_night + great_wave + the_scream + the_kiss", CATALOG),
        lambda: styles.from_saved([{"file_id": str(n)} for n in range(5)], "x", {}),
        lambda: styles.from_preset(
            preset("p", [{"preset": "udnie"}] + [{"file_id": str(n)} for n in range(4)])
        ),
    ],
)
def test_more_than_four_different_styles_are_refused(make) -> None:
    with pytest.raises(styles.TooManyStylesError) as refused:
        styles.check_blend(make())
    assert refused.value.count == 5
    assert refused.value.code == "too_many_styles"


def test_spellings_of_one_painting_merge_too() -> None:
    choice = styles.parse("Starry Night + starry_night + starry-night", CATALOG)
    assert choice.refs == ({"preset": "starry_night", "weight": 3.0},)
    assert choice.label == "The Starry Night"

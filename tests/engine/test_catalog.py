"""The preset catalog: the bundled TOML, its validation, and the forgiving lookup of hand-typed ids."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import quote

import pytest

from engine.catalog import (
    DEFAULT_DEEP_STYLE_WEIGHT,
    Catalog,
    Preset,
    blended_default,
    default_layer_weights,
    load_catalog,
    normalize,
)
from engine.errors import UnknownStyleError

REPO = Path(__file__).resolve().parents[2]
SHARED_CATALOG = REPO.parent / "shared" / "catalog" / "paintings.md"
REQUIRED_IDS = {"starry_night", "great_wave", "the_scream", "shipwreck", "udnie", "composition_vii"}


def make_preset(preset_id: str, title: str = "A Painting", artist: str = "A. Painter", **changes) -> Preset:
    fields = {
        "id": preset_id,
        "title": title,
        "artist": artist,
        "year": "1900",
        "commons_file": f"{preset_id}.jpg",
        "urls": (f"https://example.org/{preset_id}.jpg",),
        "licence": "Public domain: the artist died in 1901; published before 1930.",
    }
    return Preset(**{**fields, **changes})


@pytest.fixture
def catalog() -> Catalog:
    return Catalog(
        [
            make_preset("starry_night", "The Starry Night", "Vincent van Gogh"),
            make_preset("great_wave", "The Great Wave off Kanagawa", "Katsushika Hokusai"),
            make_preset("cafe_terrace", "Café Terrace at Night", "Vincent van Gogh"),
            make_preset("water_lilies", "Water Lilies", "Claude Monet"),
        ]
    )


# The bundled catalog


def test_bundled_catalog_has_the_required_presets() -> None:
    bundled = load_catalog()
    assert len(bundled) >= 20
    assert set(bundled.ids) >= REQUIRED_IDS
    assert len(set(bundled.ids)) == len(bundled)
    assert load_catalog() is bundled  # parsed once per process


def test_bundled_presets_are_complete_and_use_https() -> None:
    for preset in load_catalog():
        assert re.fullmatch(r"[a-z][a-z0-9_]*", preset.id)
        assert all(url.startswith("https://") for url in preset.urls), preset.id
        assert len(set(preset.urls)) == len(preset.urls), preset.id
        assert preset.urls[0].startswith("https://upload.wikimedia.org/wikipedia/commons/"), preset.id
        assert preset.urls[-1] == (
            "https://commons.wikimedia.org/wiki/Special:FilePath/"
            f"{quote(preset.commons_file, safe='')}?width=1280"
        )
        assert preset.licence.startswith("Public domain"), preset.id
        assert all((preset.title, preset.artist, preset.year)), preset.id


def test_bundled_addresses_are_the_checked_ones() -> None:
    """No invented address: each url is the verified entry's url, url_original or thumb_1280."""
    if not SHARED_CATALOG.is_file():
        pytest.skip("../shared/catalog/paintings.md is not here")
    text = SHARED_CATALOG.read_text(encoding="utf-8")
    block = re.search(r"## Verified.*?```toml\n(.*?)```", text, re.DOTALL)
    assert block is not None
    verified = {entry["id"]: entry for entry in tomllib.loads(block.group(1))["verified"]}
    for preset in load_catalog():
        entry = verified[preset.id]
        assert preset.commons_file == entry["commons_file"]
        assert preset.urls[0] == entry["url"]
        checked = {entry["url"], entry["url_original"], entry.get("thumb_1280")}
        assert set(preset.urls[:-1]) <= checked, preset.id


def test_catalog_modules_do_not_import_torch() -> None:
    code = (
        "import sys, engine.catalog, engine.style_store, engine.styles_cli; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torchvision')))"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


# Lookup


def test_label() -> None:
    assert load_catalog().get("starry_night").label == "The Starry Night — Vincent van Gogh, 1889"


@pytest.mark.parametrize(
    "typed",
    ["starry_night", "Starry Night", "starry-night", "  STARRY NIGHT ", "The Starry Night", "/starry_night"],
)
def test_get_accepts_spelling_variants(catalog: Catalog, typed: str) -> None:
    assert catalog.get(typed).id == "starry_night"
    assert typed in catalog


def test_get_folds_accents_and_matches_titles(catalog: Catalog) -> None:
    assert catalog.get("cafe terrace at night").id == "cafe_terrace"
    assert catalog.get("Café Terrace at Night").id == "cafe_terrace"


def test_unknown_id_raises_with_suggestions(catalog: Catalog) -> None:
    with pytest.raises(UnknownStyleError) as caught:
        catalog.get("stary nigth")
    assert caught.value.style_id == "stary nigth"
    assert caught.value.suggestions == ("starry_night",)
    assert "Did you mean: starry_night?" in str(caught.value)
    assert "nonsense" not in catalog


def test_unknown_id_without_close_match_has_no_suggestions(catalog: Catalog) -> None:
    with pytest.raises(UnknownStyleError) as caught:
        catalog.get("qqqqqq")
    assert caught.value.suggestions == ()


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("starry nite", ["starry_night"]),
        ("wave", ["great_wave"]),
        ("van gogh", ["starry_night", "cafe_terrace"]),
        ("monet", ["water_lilies"]),
        ("", []),
        ("zz", []),
    ],
)
def test_suggest(catalog: Catalog, typed: str, expected: list[str]) -> None:
    assert catalog.suggest(typed) == expected


def test_suggest_returns_at_most_n() -> None:
    assert len(load_catalog().suggest("gogh", n=2)) == 2


def test_normalize() -> None:
    assert normalize(" Impression, Sunrise! ") == "impression_sunrise"
    assert normalize("Self-Portrait") == "self_portrait"
    assert normalize("Café") == "cafe"


def test_catalog_is_an_ordered_collection(catalog: Catalog) -> None:
    assert catalog.ids == ("starry_night", "great_wave", "cafe_terrace", "water_lilies")
    assert [p.id for p in catalog] == list(catalog.ids)
    assert len(catalog) == 4
    assert 42 not in catalog


def test_duplicate_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="duplicate preset id 'udnie'"):
        Catalog([make_preset("udnie"), make_preset("udnie")])


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"id": "Starry Night"}, "snake_case"),
        ({"id": "a" * 33}, "snake_case"),
        ({"id": "trailing_"}, "snake_case"),
        ({"urls": ()}, "at least one url"),
        ({"urls": ("ftp://example.org/a.jpg",)}, "bad url"),
        ({"title": ""}, "title"),
        ({"year": 1889}, "year"),
        ({"strength": 1.5}, "strength"),
        ({"strength": True}, "strength"),
        ({"style_scale": 0.05}, "style_scale"),
        ({"deep_style_weight": 1.5}, "deep_style_weight"),
        ({"deep_style_weight": -0.1}, "deep_style_weight"),
    ],
)
def test_preset_validation(changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_preset("udnie", **changes)


# Custom catalog files

GOOD_ENTRY = """
[[preset]]
id = "tiny"
title = "Tiny"
artist = "Nobody"
year = "1900"
url = "http://127.0.0.1:9/tiny.jpg"
licence = "Made for tests."
"""


def test_load_catalog_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(
        GOOD_ENTRY
        + 'fallback_urls = ["https://example.org/tiny.png"]\nstyle_scale = 2\ndeep_style_weight = 1\n'
    )
    tiny = load_catalog(path).get("tiny")
    assert tiny.urls == ("http://127.0.0.1:9/tiny.jpg", "https://example.org/tiny.png")
    assert (tiny.commons_file, tiny.strength, tiny.style_scale, tiny.deep_style_weight) == ("", None, 2, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            GOOD_ENTRY.replace('url = "http://127.0.0.1:9/tiny.jpg"\n', ""),
            r"#1 \('tiny'\): missing keys: url",
        ),
        (GOOD_ENTRY + "stlye_scale = 2\n", r"'tiny'.*unknown keys: stlye_scale"),
        (GOOD_ENTRY + "strength = 3\n", r"'tiny'.*strength must be"),
        (GOOD_ENTRY + "deep_style_weight = 2\n", r"'tiny'.*deep_style_weight must be"),
        (GOOD_ENTRY + 'fallback_urls = "https://example.org/x.jpg"\n', "fallback_urls must be a list"),
        (GOOD_ENTRY.replace('"tiny"', '"Tiny One"'), r"'Tiny One'.*snake_case"),
        (GOOD_ENTRY + GOOD_ENTRY, "duplicate preset id 'tiny'"),
        ("title = 'no presets'\n", "no \\[\\[preset\\]\\] entries"),
        ("[[preset]\n", "catalog .*catalog.toml"),
    ],
)
def test_malformed_catalog_names_the_entry(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_catalog(path)


def test_a_blend_takes_the_user_s_value_else_its_paintings_own_by_weight() -> None:
    base = load_catalog().get("udnie")
    soft = Preset(**{**base.__dict__, "strength": 0.2})
    assert blended_default(0.9, [(soft, 1.0)], "strength", 0.5) == 0.9  # the user's, whatever the painting
    assert blended_default(None, [(soft, 3.0), (None, 1.0)], "strength", 0.5) == pytest.approx(0.275)
    assert blended_default(None, [(base, 1.0)], "strength", 0.5) == 0.5  # no own default: the engine's


# The deep layers' default weight: no faces painted onto buildings (bench/portraits.py)

PORTRAITS = ("pearl_earring", "mona_lisa", "self_portrait_van_gogh", "the_kiss", "birth_of_venus")
LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")


def test_default_layer_weights_shrink_the_deep_layers() -> None:
    assert default_layer_weights(LAYERS, 1.0) == (1.0, 1.0, 1.0, 1.0, 1.0)  # the paper's equal weights
    assert default_layer_weights(LAYERS, 0.0) == (1.0, 1.0, 1.0, 1.0, 0.0)
    assert default_layer_weights(("conv4_2", "conv5_3"), 0.25) == (1.0, 0.25)  # block 5, any layer of it
    assert default_layer_weights(("conv5_1",), 0.0) == (1.0,)  # asked for alone: it still counts


def test_every_painting_a_user_s_own_too_gets_the_deep_layers_down_weighted() -> None:
    """The rule needs no portrait detection: a personal picture gets the engine's default, and no catalog
    portrait raises it back towards the equal weights that paint faces."""
    assert DEFAULT_DEEP_STYLE_WEIGHT < 1.0
    own = blended_default(None, [(None, 1.0)], "deep_style_weight", DEFAULT_DEEP_STYLE_WEIGHT)
    assert own == DEFAULT_DEEP_STYLE_WEIGHT
    bundled = load_catalog()
    for portrait in PORTRAITS:
        deep = blended_default(
            None, [(bundled.get(portrait), 1.0)], "deep_style_weight", DEFAULT_DEEP_STYLE_WEIGHT
        )
        assert deep <= DEFAULT_DEEP_STYLE_WEIGHT, portrait
        assert default_layer_weights(LAYERS, deep)[-1] < 1.0


def test_the_engine_weighs_the_layers_by_the_rule_unless_the_user_sets_weights() -> None:
    from PIL import Image

    from engine.api import _layer_weights, _Style
    from engine.protocol import StyleSettings

    own = _Style(image=Image.new("RGB", (8, 8)), digest="x", weight=1.0, preset=None)
    expected = default_layer_weights(LAYERS, DEFAULT_DEEP_STYLE_WEIGHT)
    weights = _layer_weights(StyleSettings(), [own])
    assert list(weights) == list(LAYERS)
    assert list(weights.values()) == pytest.approx([w / sum(expected) for w in expected])
    equal = _layer_weights(StyleSettings(style_layer_weights=(1, 1, 1, 1, 1)), [own])
    assert list(equal.values()) == pytest.approx([0.2] * 5)  # the user's own weights win

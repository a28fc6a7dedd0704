"""Both languages say everything, with the same placeholders, every key the code uses exists, and a text
that counts something says it in the right plural form ("1 картинка", "22 картинки", "25 картинок")."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from bot.texts import (
    DEFAULT_LANGUAGE,
    LANGUAGES,
    Template,
    catalog,
    duration,
    language_for,
    plural_categories,
    plural_category,
    text,
)

BOT = Path(__file__).resolve().parents[2] / "bot"
CALL = re.compile(r'\b(?:say|text)\([^,()]+,\s*"([a-z_]+)"([^)]*)\)')
REFUSAL = re.compile(r'\b(?:Refused|super\(\)\.__init__)\(\s*"([a-z_]+)"')  # bot/services: a text's key

# Each counting text, the word that follows the number in its forms for 1, 2 and 5: in Russian 21 takes
# the first (like 1), 22 the second (like 2), 11-14, 25 and 111 the third (like 5).
RUSSIAN = {
    "styles_coming": ("картина", "картины", "картин"),
    "limit_active": ("картинка", "картинки", "картинок"),
    "limit_hourly": ("картинку", "картинки", "картинок"),
    "preset_limit": ("пресет", "пресета", "пресетов"),
    "cancel_done": ("картинка", "картинки", "картинок"),
    "block_done": ("картинка", "картинки", "картинок"),
}
ENGLISH = {
    "styles_coming": ("more painting", "more paintings"),
    "limit_active": ("picture", "pictures"),
    "limit_hourly": ("picture", "pictures"),
    "preset_limit": ("preset", "presets"),
    "cancel_done": ("picture", "pictures"),
    "block_done": ("picture", "pictures"),
}
RUSSIAN_FORM = {1: 0, 2: 1, 5: 2, 21: 0, 22: 1, 25: 2, 11: 2, 12: 2, 14: 2, 111: 2}


def placeholders(template: str) -> frozenset[str]:
    return frozenset(field for _, field, _, _ in string.Formatter().parse(template) if field)


def forms(template: Template) -> dict[str, str]:
    return template if isinstance(template, dict) else {"": template}


def plural_keys(language: str) -> set[str]:
    return {key for key, template in catalog(language).items() if isinstance(template, dict)}


def filled(language: str, key: str, count: int) -> str:
    """The text with ``count`` and a stand-in for every other placeholder."""
    fields = set().union(*map(placeholders, forms(catalog(language)[key]).values()))
    return text(language, key, **{field: "…" for field in fields - {"count"}}, count=count)


def test_languages_have_the_same_keys_and_placeholders() -> None:
    english = catalog("en")
    for language in LANGUAGES:
        other = catalog(language)
        assert set(other) == set(english), language
        for key, template in english.items():
            expected = {placeholders(t) for t in forms(template).values()}
            assert {placeholders(t) for t in forms(other[key]).values()} == expected, (language, key)
            assert len(expected) == 1, ("every form of a text has the same placeholders", key)


def test_counting_texts_have_every_plural_form_of_their_language() -> None:
    assert plural_keys("en") == plural_keys("ru") == set(RUSSIAN) == set(ENGLISH)
    assert plural_categories("ru") == {"one", "few", "many", "other"}
    assert plural_categories("en") == {"one", "other"}
    for language in LANGUAGES:
        for key in plural_keys(language):
            template = catalog(language)[key]
            assert isinstance(template, dict)
            assert set(template) == plural_categories(language), (language, key)
            assert all("{count}" in form for form in template.values()), (language, key)


@pytest.mark.parametrize("count", sorted(RUSSIAN_FORM))
@pytest.mark.parametrize("key", sorted(RUSSIAN))
def test_russian_plurals(key: str, count: int) -> None:
    word = RUSSIAN[key][RUSSIAN_FORM[count]]
    said = filled("ru", key, count)
    assert re.search(rf"\b{count} {word}\b", said), said


@pytest.mark.parametrize("count", [1, 2, 5, 21])
@pytest.mark.parametrize("key", sorted(ENGLISH))
def test_english_plurals(key: str, count: int) -> None:
    word = ENGLISH[key][0 if count == 1 else 1]
    said = filled("en", key, count)
    assert re.search(rf"\b{count} {word}\b", said), said


def test_the_reported_russian_counts() -> None:
    """The issue's examples: "1 картинки", "21 картинок", "22 пресетов" are gone."""
    assert "1 картинка в работе" in text("ru", "limit_active", count=1)
    assert "сделали 21 картинку" in text("ru", "limit_hourly", count=21, eta="5 мин")
    assert "22 пресета," in text("ru", "preset_limit", count=22)


@pytest.mark.parametrize(
    ("count", "category"),
    [(1, "one"), (2, "few"), (4, "few"), (5, "many"), (11, "many"), (21, "one"), (0, "many"), (1.5, "other")],
)
def test_plural_category_follows_cldr(count: float, category: str) -> None:
    assert plural_category("ru", count) == category


def test_a_counting_text_needs_its_count() -> None:
    with pytest.raises(TypeError, match="count"):
        text("ru", "cancel_done")
    with pytest.raises(TypeError, match="count"):
        text("en", "cancel_done", count="3")


def test_an_unknown_language_counts_in_english() -> None:
    assert text("de", "cancel_done", count=1) == "Cancelled 1 picture."


def code_calls() -> list[tuple[str, str]]:
    calls = []
    for path in BOT.rglob("*.py"):
        calls += CALL.findall(path.read_text())
    assert calls, "the pattern found no keys: the test would prove nothing"
    return calls


def test_every_literal_key_in_the_code_exists() -> None:
    used = {key for key, _ in code_calls()}
    for path in (BOT / "services").rglob("*.py"):
        used |= set(REFUSAL.findall(path.read_text()))
    assert used <= set(catalog(DEFAULT_LANGUAGE)), used - set(catalog(DEFAULT_LANGUAGE))


def test_the_code_passes_a_count_to_every_counting_text() -> None:
    counted = [(key, args) for key, args in code_calls() if key in plural_keys(DEFAULT_LANGUAGE)]
    assert counted
    assert all("count=" in args for _, args in counted), counted


@pytest.mark.parametrize(
    ("code", "expected"),
    [("ru", "ru"), ("ru-RU", "ru"), ("en-GB", "en"), ("de", "en"), (None, "en"), ("", "en")],
)
def test_language_for(code: str | None, expected: str) -> None:
    assert language_for(code) == expected


def test_text_formats_and_falls_back_for_unknown_languages() -> None:
    assert text("ru", "queued", position=2, eta="1 мин").startswith("⏳ В очереди: номер 2")
    assert text("xx", "cancelled") == text("en", "cancelled")


@pytest.mark.parametrize(
    ("seconds", "en"), [(0.2, "1 s"), (45, "45 s"), (89, "89 s"), (150, "2 min"), (7200, "2 h")]
)
def test_duration(seconds: float, en: str) -> None:
    assert duration("en", seconds) == en

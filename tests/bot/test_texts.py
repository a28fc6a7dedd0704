"""Both languages say everything, with the same placeholders, and every key the code uses exists."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from bot.texts import DEFAULT_LANGUAGE, LANGUAGES, catalog, duration, language_for, text

BOT = Path(__file__).resolve().parents[2] / "bot"


def placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


def test_languages_have_the_same_keys_and_placeholders() -> None:
    english = catalog("en")
    for language in LANGUAGES:
        other = catalog(language)
        assert set(other) == set(english), language
        for key, template in english.items():
            assert placeholders(other[key]) == placeholders(template), (language, key)


def test_every_literal_key_in_the_code_exists() -> None:
    used = set()
    for path in BOT.rglob("*.py"):
        source = path.read_text()
        used |= set(re.findall(r'\b(?:say|text)\([^,()]+,\s*"([a-z_]+)"', source))
    assert used, "the pattern found no keys: the test would prove nothing"
    assert used <= set(catalog(DEFAULT_LANGUAGE)), used - set(catalog(DEFAULT_LANGUAGE))


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

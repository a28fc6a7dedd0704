"""Every user-facing text, in English and Russian, picked by the user's Telegram or Discord language.

Texts live in ``en.toml`` and ``ru.toml`` beside this file; code refers to them by key only, so a
translator never has to read Python. A text that counts something ("3 pictures") has one form per CLDR
plural category of its language (``limit_active.one``, ``limit_active.few``, ...); ``text`` picks the form
from the ``count`` value with Babel's CLDR rules, because Russian needs three forms where English needs two
("1 картинка", "2 картинки", "5 картинок", "21 картинка").
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path
from typing import TypeAlias

from babel import Locale
from babel.plural import PluralRule

LANGUAGES = ("en", "ru")
DEFAULT_LANGUAGE = "en"
_DIR = Path(__file__).parent

Template: TypeAlias = str | dict[str, str]
"""One text: a template, or a template per plural category ("one", "few", "many", "other")."""


def language_for(code: str | None) -> str:
    """An IETF tag from Telegram or Discord ("ru", "ru-RU", "en-GB") to one of ours; English for the rest."""
    base = (code or "").split("-")[0].lower()
    return base if base in LANGUAGES else DEFAULT_LANGUAGE


@functools.cache
def catalog(language: str) -> dict[str, Template]:
    with open(_DIR / f"{language}.toml", "rb") as f:
        return tomllib.load(f)


@functools.cache
def _plural_rule(language: str) -> PluralRule:
    return Locale.parse(language).plural_form


def plural_categories(language: str) -> frozenset[str]:
    """The forms a counting text has in ``language``: CLDR's categories, "other" included (Russian's
    "other" is for fractions, which the bot never counts, but CLDR's rule can answer it)."""
    return _plural_rule(language).tags | {"other"}


def plural_category(language: str, count: float) -> str:
    """CLDR's category of ``count`` in ``language``: ru 1, 21 → "one"; 2, 22 → "few"; 5, 11, 25 → "many"."""
    return str(_plural_rule(language)(count))


def text(language: str, key: str, /, **values: object) -> str:
    """The text ``key`` in ``language`` with ``values`` filled in (already HTML-escaped by the caller).

    A counting text needs ``count=`` (an int): it picks the plural form."""
    language = language_for(language)
    template = catalog(language).get(key)
    if template is None:
        language, template = DEFAULT_LANGUAGE, catalog(DEFAULT_LANGUAGE)[key]
    if isinstance(template, dict):
        count = values.get("count")
        if not isinstance(count, int | float):
            raise TypeError(f"the text {key!r} has plural forms: pass count= as a number")
        template = template[plural_category(language, count)]
    return template.format(**values) if values else template


def duration(language: str, seconds: float) -> str:
    """A rough, friendly duration: 40 s, 3 min, 2 h (abbreviations: the same for every number and case)."""
    seconds = max(1, round(seconds))
    if seconds < 90:
        return text(language, "seconds", n=seconds)
    if seconds < 90 * 60:
        return text(language, "minutes", n=round(seconds / 60))
    return text(language, "hours", n=round(seconds / 3600))

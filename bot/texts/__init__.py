"""Every user-facing text, in English and Russian, picked by the user's Telegram language.

Texts live in ``en.toml`` and ``ru.toml`` beside this file; code refers to them by key only, so a
translator never has to read Python.
"""

from __future__ import annotations

import functools
import tomllib
from pathlib import Path

LANGUAGES = ("en", "ru")
DEFAULT_LANGUAGE = "en"
_DIR = Path(__file__).parent


def language_for(code: str | None) -> str:
    """Telegram's IETF tag ("ru", "ru-RU", "en-GB") to one of ours; English for the rest."""
    base = (code or "").split("-")[0].lower()
    return base if base in LANGUAGES else DEFAULT_LANGUAGE


@functools.cache
def catalog(language: str) -> dict[str, str]:
    with open(_DIR / f"{language}.toml", "rb") as f:
        return tomllib.load(f)


def text(language: str, key: str, /, **values: object) -> str:
    """The text ``key`` in ``language`` with ``values`` filled in (already HTML-escaped by the caller)."""
    template = catalog(language_for(language)).get(key) or catalog(DEFAULT_LANGUAGE)[key]
    return template.format(**values) if values else template


def duration(language: str, seconds: float) -> str:
    """A rough, friendly duration: 40 s, 3 min, 2 h."""
    seconds = max(1, round(seconds))
    if seconds < 90:
        return text(language, "seconds", n=seconds)
    if seconds < 90 * 60:
        return text(language, "minutes", n=round(seconds / 60))
    return text(language, "hours", n=round(seconds / 3600))

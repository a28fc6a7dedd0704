"""The preset paintings users pick by id (``/style starry_night``), read from ``catalog.toml``.

Torch-free and cheap to import: the bot uses it to list presets, check what a user typed and suggest what
they probably meant. Downloading the paintings is ``engine.style_store``'s job.
"""

from __future__ import annotations

import difflib
import functools
import re
import tomllib
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import UnknownStyleError

CATALOG_PATH = Path(__file__).with_name("catalog.toml")
# Short snake_case, at most 32 characters: users type ids, and the bot puts them in button data.
ID_PATTERN = re.compile(r"(?=.{1,32}$)[a-z][a-z0-9]*(?:_[a-z0-9]+)*")
_TOML_KEYS = {"id", "title", "artist", "year", "commons_file", "url", "fallback_urls", "licence"}
_TOML_DEFAULTS = {"strength", "style_scale", "deep_style_weight"}
# The deepest Gram matrix (conv5_1) holds what a painting depicts, not only how it is painted: matched in
# full, a portrait's eyes and faces are painted into the photo (faces on towers). So every painting, a
# user's own included (nothing tells a portrait from its bytes), has it weighed this much beside the other
# layers' 1 unless its catalog entry says otherwise. Measured in bench/portraits.py (docs/portraits.md).
DEFAULT_DEEP_STYLE_WEIGHT = 0.0


@dataclass(frozen=True)
class Preset:
    """One painting of the catalog; ``urls`` holds the checked address first, then its fallbacks."""

    id: str
    title: str
    artist: str
    year: str
    commons_file: str
    urls: tuple[str, ...]
    licence: str
    strength: float | None = None  # the painting's own default, else the engine's
    style_scale: float | None = None
    deep_style_weight: float | None = None  # see DEFAULT_DEEP_STYLE_WEIGHT

    def __post_init__(self) -> None:
        _check(isinstance(self.id, str) and bool(ID_PATTERN.fullmatch(self.id)), "id must be snake_case")
        for name in ("title", "artist", "year", "licence"):
            value = getattr(self, name)
            _check(isinstance(value, str) and value.strip() != "", f"{name} must be a non-empty string")
        _check(isinstance(self.commons_file, str), "commons_file must be a string")
        _check(len(self.urls) > 0, "at least one url is needed")
        for url in self.urls:
            _check(isinstance(url, str) and url.startswith(("https://", "http://")), f"bad url {url!r}")
        _check(_in_range(self.strength, 0.0, 1.0), "strength must be a number between 0 and 1")
        _check(_in_range(self.style_scale, 0.1, 4.0), "style_scale must be a number between 0.1 and 4")
        _check(
            _in_range(self.deep_style_weight, 0.0, 1.0), "deep_style_weight must be a number between 0 and 1"
        )

    @property
    def label(self) -> str:
        """How the bot names the painting: "The Starry Night — Vincent van Gogh, 1889"."""
        return f"{self.title} — {self.artist}, {self.year}"


def normalize(text: str) -> str:
    """Fold what people type ("Starry Night", "starry-night", "Café") onto the spelling of ids."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return "_".join(re.findall(r"[^\W_]+", plain))


class Catalog:
    """The presets by id, with the forgiving lookup that hand-typed ids need."""

    def __init__(self, presets: Iterable[Preset]) -> None:
        self._by_id: dict[str, Preset] = {}
        for preset in presets:
            if preset.id in self._by_id:
                raise ValueError(f"duplicate preset id {preset.id!r}")
            self._by_id[preset.id] = preset
        # A normalized title is an exact hit too; ids are added last so that no title can shadow an id.
        self._aliases = {normalize(p.title): p.id for p in self._by_id.values()}
        self._aliases.update({p.id: p.id for p in self._by_id.values()})

    def get(self, style_id: str) -> Preset:
        """The preset for an id or title as typed; UnknownStyleError (with suggestions) when there is none."""
        found = self._aliases.get(normalize(style_id))
        if found is None:
            raise UnknownStyleError(style_id, self.suggest(style_id))
        return self._by_id[found]

    def suggest(self, text: str, n: int = 3) -> list[str]:
        """Up to ``n`` ids the user may have meant: presets whose id, title or artist contains the text,
        then difflib's near misses ("starry nite")."""
        key = normalize(text)
        if not key:
            return []
        containing = []
        if len(key) >= 3:  # shorter fragments ("a", "th") are inside nearly everything
            containing = [p.id for p in self if any(key in normalize(s) for s in (p.id, p.title, p.artist))]
        close = difflib.get_close_matches(key, self._aliases, n=n, cutoff=0.6)
        return list(dict.fromkeys([*containing, *(self._aliases[c] for c in close)]))[:n]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    def __contains__(self, style_id: object) -> bool:
        return isinstance(style_id, str) and normalize(style_id) in self._aliases

    def __iter__(self) -> Iterator[Preset]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)


def load_catalog(path: Path | str | None = None) -> Catalog:
    """The bundled catalog (parsed once per process), or the one at ``path`` (custom catalogs, tests).

    A malformed file raises ValueError naming the entry, so a typo fails at start-up, not on a user's request.
    """
    return _bundled_catalog() if path is None else _read_catalog(Path(path))


@functools.cache
def _bundled_catalog() -> Catalog:
    return _read_catalog(CATALOG_PATH)


def _read_catalog(path: Path) -> Catalog:
    try:
        entries = tomllib.loads(path.read_text(encoding="utf-8")).get("preset")
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"catalog {path}: {exc}") from exc
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"catalog {path}: no [[preset]] entries")
    presets = []
    for number, entry in enumerate(entries, start=1):
        if not isinstance(entry, dict):
            raise ValueError(f"catalog {path}: preset #{number} is not a table")
        try:
            presets.append(_preset_from_toml(entry))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"catalog {path}: preset #{number} ({entry.get('id', '?')!r}): {exc}") from exc
    try:
        return Catalog(presets)
    except ValueError as exc:
        raise ValueError(f"catalog {path}: {exc}") from exc


def _preset_from_toml(entry: dict[str, Any]) -> Preset:
    unknown = set(entry) - _TOML_KEYS - _TOML_DEFAULTS
    _check(not unknown, f"unknown keys: {', '.join(sorted(unknown))}")
    missing = _TOML_KEYS - {"fallback_urls", "commons_file"} - set(entry)
    _check(not missing, f"missing keys: {', '.join(sorted(missing))}")
    fallbacks = entry.get("fallback_urls", [])
    _check(isinstance(fallbacks, list), "fallback_urls must be a list")
    return Preset(
        id=entry["id"],
        title=entry["title"],
        artist=entry["artist"],
        year=entry["year"],
        commons_file=entry.get("commons_file", ""),
        urls=(entry["url"], *fallbacks),
        licence=entry["licence"],
        strength=entry.get("strength"),
        style_scale=entry.get("style_scale"),
        deep_style_weight=entry.get("deep_style_weight"),
    )


def _in_range(value: object, low: float, high: float) -> bool:
    if value is None:
        return True
    return isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def blended_default(
    user: float | None, styles: Sequence[tuple[Preset | None, float]], attribute: str, fallback: float
) -> float:
    """A knob a painting may set (``strength``, ``style_scale``, ``deep_style_weight``): the user's value
    if set, else each painting's own default (``fallback`` for one without, or for a personal picture)
    weighted by its share of the blend. One rule for the engine and for the bot's sketch, so both paint the
    same balance."""
    if user is not None:
        return user

    def own(preset: Preset | None) -> float:
        value = getattr(preset, attribute) if preset is not None else None
        return fallback if value is None else value

    total = sum(weight for _, weight in styles)
    if total <= 0:
        return fallback
    return sum(weight * own(preset) for preset, weight in styles) / total


def default_layer_weights(layers: Sequence[str], deep: float) -> tuple[float, ...]:
    """Style layer weights when the user sets none: ``deep`` for block 5 (conv5_1), 1 for the others;
    ``deep=1`` gives the paper's equal weights. Layers that would all weigh zero (conv5_1 alone at
    ``deep=0``) weigh equally instead: the user asked for them."""
    weights = tuple(deep if layer.startswith("conv5_") else 1.0 for layer in layers)
    return weights if sum(weights) > 0 else tuple(1.0 for _ in layers)

"""What a user asks to paint with, parsed from a caption or a command, before any job exists.

A blend names each style once: repeats of one painting (or one image) merge and their weights add, so
``udnie + udnie + ...`` costs the worker one painting, not hundreds. At most ``MAX_STYLES`` different
styles make one blend; ``check_blend`` refuses more, wherever the choice came from.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bot.db import PresetRecord, preset_key
from engine.catalog import Catalog
from engine.errors import StylebotError, UnknownStyleError

_SEPARATORS = re.compile(r"\s*[+,&]\s*")
MAX_STYLES = 4  # the worker decodes each style and runs VGG on it at every scale


class TooManyStylesError(StylebotError):
    """A blend of more different paintings or pictures than ``MAX_STYLES``."""

    code = "too_many_styles"

    def __init__(self, count: int) -> None:
        super().__init__(f"{count} different styles in one blend; at most {MAX_STYLES}")
        self.count = count


@dataclass(frozen=True)
class StyleChoice:
    """Paintings and/or the user's own images, with blend weights.

    ``refs`` is what a job row stores: ``{"preset": id, "weight": w}`` for a catalog painting or
    ``{"image": i, "file_id": ..., "weight": w}`` for the i-th of the user's own images, whose Telegram
    file ids are ``image_file_ids`` (downloaded when the job is submitted). ``settings`` are the saved
    settings of a user preset, if the choice came from one.
    """

    refs: tuple[dict[str, Any], ...]
    label: str
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "refs", merged(self.refs))

    @property
    def image_file_ids(self) -> tuple[str, ...]:
        """The platform's file ids of the own images kept by reference (Telegram's), in the job's order."""
        return tuple(ref["file_id"] for ref in self.refs if "image" in ref and "file_id" in ref)

    @property
    def stored_image_ids(self) -> tuple[int, ...]:
        """Personal styles kept in the database (Discord's), in the order of the job's images."""
        return tuple(ref["stored"] for ref in self.refs if "image" in ref and ref.get("stored"))


def merged(refs: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], ...]:
    """One ref per painting or image, in first-seen order, weights added; images renumbered from 0."""
    by_key: dict[tuple[str, object], dict[str, Any]] = {}
    for number, ref in enumerate(refs):
        if ref.get("file_id"):
            key: tuple[str, object] = ("file", ref["file_id"])
        elif ref.get("stored"):  # a personal style kept in the database (Discord)
            key = ("stored", ref["stored"])
        elif "image" in ref:  # a picture sent with the request itself
            key = ("upload", number)
        else:
            key = ("preset", ref["preset"])
        weight = float(ref.get("weight", 1.0))
        if key in by_key:
            by_key[key]["weight"] += weight
        else:
            by_key[key] = {**ref, "weight": weight}
    images = (ref for ref in by_key.values() if "image" in ref)
    for index, ref in enumerate(images):
        ref["image"] = index
    return tuple(by_key.values())


def check_blend(choice: StyleChoice) -> None:
    """Refuse a blend of more different styles than a worker should hold."""
    if len(choice.refs) > MAX_STYLES:
        raise TooManyStylesError(len(choice.refs))


def paintings(ids: Sequence[str], catalog: Catalog) -> StyleChoice:
    found = {name: catalog.get(name) for name in dict.fromkeys(ids)}  # each spelling looked up once
    presets = [found[name] for name in ids]
    refs = tuple({"preset": p.id, "weight": 1.0} for p in presets)  # repeats merge in StyleChoice
    return StyleChoice(refs=refs, label=" + ".join(dict.fromkeys(p.title for p in presets)))


def own_image(file_id: str, label: str) -> StyleChoice:
    return StyleChoice(refs=({"image": 0, "file_id": file_id, "weight": 1.0},), label=label)


def from_preset(record: PresetRecord) -> StyleChoice:
    """A user's saved preset, labelled with its name."""
    return from_saved(record.styles, record.name, record.settings)


def from_saved(saved: Sequence[dict[str, Any]], label: str, settings: dict[str, Any]) -> StyleChoice:
    """Refs as presets keep them; image refs are numbered in order so they index the job's stored images."""
    refs, index = [], 0
    for ref in saved:
        if ref.get("file_id"):
            refs.append({"image": index, "file_id": ref["file_id"], "weight": ref.get("weight", 1.0)})
            index += 1
        elif ref.get("stored"):
            refs.append({"image": index, "stored": ref["stored"], "weight": ref.get("weight", 1.0)})
            index += 1
        else:
            refs.append({"preset": ref["preset"], "weight": ref.get("weight", 1.0)})
    return StyleChoice(refs=tuple(refs), label=label, settings=dict(settings))


def describe(saved: Sequence[dict[str, Any]], catalog: Catalog, image_label: str) -> str:
    """A label for saved refs: the paintings' titles, and ``image_label`` for the user's own images."""
    names = [
        catalog.get(ref["preset"]).title if ref.get("preset") in catalog else image_label for ref in saved
    ]
    return " + ".join(names)


def for_saving(choice: StyleChoice) -> list[dict[str, Any]]:
    """The refs as a preset keeps them: images by Telegram file id or stored image, not by a job's index."""
    saved = []
    for ref in choice.refs:
        if "image" not in ref:
            saved.append(dict(ref))
        elif ref.get("stored"):
            saved.append({"stored": ref["stored"], "weight": ref["weight"]})
        else:
            saved.append({"file_id": ref.get("file_id"), "weight": ref["weight"]})
    return saved


def stored_image(image_id: int, label: str) -> StyleChoice:
    """One of the user's personal styles kept in the database."""
    return StyleChoice(refs=({"image": 0, "stored": image_id, "weight": 1.0},), label=label)


def parse(text: str, catalog: Catalog, presets: Sequence[PresetRecord] = ()) -> StyleChoice:
    """``starry_night``, ``Starry Night``, ``starry_night + great_wave``, or one of the user's preset names.

    Raises UnknownStyleError with suggestions from both the catalog and the user's presets.
    """
    text = text.strip()
    mine = {preset_key(p.name): p for p in presets}
    if preset_key(text) in mine:
        return from_preset(mine[preset_key(text)])
    parts = [p for p in _SEPARATORS.split(text) if p]
    if len(parts) == 1 and " " in text and text not in catalog:
        words = text.split()
        if all(word in catalog for word in words):  # "starry_night great_wave"
            parts = words
    missing = [part for part in parts if part not in catalog]
    if missing:
        suggestions = list(catalog.suggest(missing[0]))
        suggestions += [p.name for p in presets if missing[0].lower() in p.name.lower()][:2]
        raise UnknownStyleError(missing[0], suggestions)
    return paintings(parts, catalog)

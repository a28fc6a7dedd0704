"""From a stored job row to the engine's request, the same way for every back end.

A job's ``styles`` column lists what to paint with, in order: ``{"preset": id, "weight": w}`` for a catalog
painting, or ``{"image": i, "weight": w, ...}`` for the user's own picture stored at ``style_paths[i]``
(other keys, such as the Telegram ``file_id``, are kept for display and presets).
"""

from __future__ import annotations

from pathlib import Path

from bot.db import JobRecord
from engine.protocol import StyleSource, StylizeRequest, settings_from_dict


class JobInputMissingError(Exception):
    """The job's stored photo or style image is gone (deleted by hand, a lost volume)."""

    code = "input_lost"


def build_request(job: JobRecord) -> StylizeRequest:
    try:
        content = Path(job.content_path).read_bytes()
        styles = tuple(_style(ref, job.style_paths) for ref in job.styles)
    except (OSError, IndexError, KeyError) as err:
        raise JobInputMissingError(f"job {job.id}: its input files are missing ({err})") from err
    return StylizeRequest(content=content, styles=styles, settings=settings_from_dict(job.settings))


def _style(ref: dict, paths: list[str]) -> StyleSource:
    weight = float(ref.get("weight", 1.0))
    if ref.get("preset"):
        return StyleSource(preset=ref["preset"], weight=weight)
    return StyleSource(image=Path(paths[int(ref["image"])]).read_bytes(), weight=weight)

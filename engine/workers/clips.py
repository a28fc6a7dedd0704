"""A clip job in a worker (issue 21): the ticket's clip decoded at its quality's size and rate, painted
frame by frame, encoded as the platform asked, and handed back as the job's result.

The order travels in ``Ticket.clip`` (``ClipOrder``): the quality ("instant": the sketch network on each
frame; "painted": Gatys per frame, warm-started), the output format, the platform's byte limit and the
clip limits the bot probed the header with. The result is a ``StylizeResult`` whose ``image`` is the
encoded clip (``format`` "mp4" or "gif"), so the runner, the wire and the ledger keep it as they keep a
painting. Progress is in frames (``Progress.step`` of ``total_steps`` frames); cancel is asked between
frames (and at every optimizer step when painted), and at every source frame while decoding.

An engine may paint clips itself (``ClipPainter``: the tests' fake engine inverts each frame); otherwise
the real paths of ``engine.clips.paint`` run, the sketch network loaded on the first instant clip. This
module imports no torch until a real clip is painted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from engine.clips import CLIP_TIERS, QUALITIES, Clip, ClipLimits, decode, encode
from engine.protocol import Progress, StylizeRequest, StylizeResult

FORMATS = ("mp4", "gif")


@dataclass(frozen=True)
class ClipOrder:
    """What the bot asks of a clip job; stored as the job's ``clip`` and carried in its ticket."""

    quality: str  # "instant" or "painted"
    format: str  # "mp4" or "gif"
    max_bytes: int  # the platform's upload limit
    max_seconds: float
    max_fps: float

    def __post_init__(self) -> None:
        if self.quality not in QUALITIES:
            raise ValueError(f"clip quality must be one of {', '.join(QUALITIES)}")
        if self.format not in FORMATS:
            raise ValueError(f"clip format must be one of {', '.join(FORMATS)}")
        if self.max_bytes <= 0:
            raise ValueError("a clip's byte limit must be positive")

    @property
    def limits(self) -> ClipLimits:
        return ClipLimits(self.max_seconds, self.max_fps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "quality": self.quality,
            "format": self.format,
            "max_bytes": self.max_bytes,
            "max_seconds": self.max_seconds,
            "max_fps": self.max_fps,
        }

    @classmethod
    def from_dict(cls, data: Any) -> ClipOrder:
        """``ValueError`` for anything malformed (a ticket from an older or broken bot)."""
        try:
            return cls(
                str(data["quality"]),
                str(data["format"]),
                int(data["max_bytes"]),
                float(data["max_seconds"]),
                float(data["max_fps"]),
            )
        except (KeyError, TypeError) as err:
            raise ValueError(f"a malformed clip order ({err!r})") from None


@runtime_checkable
class ClipPainter(Protocol):
    """An engine that paints a decoded clip itself (the tests' fake does; the real engine goes through
    ``engine.clips.paint``)."""

    def paint_clip(
        self,
        clip: Clip,
        quality: str,
        request: StylizeRequest,
        *,
        progress: Callable[[Progress], None],
        should_cancel: Callable[[], bool],
    ) -> Clip: ...


def is_accelerated(device_name: str) -> bool:
    """A worker on a GPU (its device name starts "cuda" or "mps"): painted clips may be longer and larger."""
    return device_name.startswith(("cuda", "mps"))


def run_clip(
    engine: Any,
    request: StylizeRequest,
    order: ClipOrder,
    *,
    progress: Callable[[Progress], None],
    should_cancel: Callable[[], bool],
) -> StylizeResult:
    """Decode, paint and encode one clip; raises ``engine.clips``' typed errors and ``Cancelled``."""
    started = time.monotonic()
    accelerated = is_accelerated(str(engine.device_name))
    tier = CLIP_TIERS[order.quality]
    limits = tier.limits(order.limits, accelerated)
    clip = decode(request.content, tier.side(accelerated), limits, should_cancel=should_cancel)
    painter = engine if isinstance(engine, ClipPainter) else _RealPainter(engine)
    painted = painter.paint_clip(clip, order.quality, request, progress=progress, should_cancel=should_cancel)
    out = encode(painted.frames, painted.fps, order.format, max_bytes=order.max_bytes)
    return StylizeResult(
        image=out.data,
        format=out.format,
        width=out.width,
        height=out.height,
        seconds=time.monotonic() - started,
        steps=out.frames,
        device=str(engine.device_name),
        losses={},
        notes=(*painted.notes, *out.notes),
    )


_sketcher: Any = None  # engine.sketch.Sketcher, loaded on this process's first instant clip
_sketcher_lock = threading.Lock()


def _the_sketcher() -> Any:
    global _sketcher
    with _sketcher_lock:
        if _sketcher is None:
            from engine.sketch import Sketcher

            sketcher = Sketcher()
            sketcher.load()
            _sketcher = sketcher
        return _sketcher


class _RealPainter:
    """``engine.clips.paint`` with the real engine: its catalog for the paintings, its settings for
    Gatys; the sketch network of this process for the instant quality."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def paint_clip(
        self,
        clip: Clip,
        quality: str,
        request: StylizeRequest,
        *,
        progress: Callable[[Progress], None],
        should_cancel: Callable[[], bool],
    ) -> Clip:
        from engine.clips.paint import instant, painted

        if quality == "painted":
            return painted(
                clip,
                self.engine,
                request.styles,
                request.settings,
                progress=progress,
                should_cancel=should_cancel,
            )
        return instant(
            clip,
            _the_sketcher(),
            self._sketch_styles(request),
            strength=request.settings.strength,
            keep_colors=request.settings.preserve_colors is not None,
            progress=progress,
            should_cancel=should_cancel,
        )

    def _sketch_styles(self, request: StylizeRequest) -> list[Any]:
        from engine.images import decode_image, image_digest
        from engine.sketch import SketchStyle

        styles = []
        for source in request.styles:
            if source.preset is not None:
                preset = self.engine.catalog.get(source.preset)
                data = self.engine.store.ensure(preset.id).read_bytes()
            else:
                assert source.image is not None
                data = source.image
            styles.append(SketchStyle(decode_image(data), source.weight, image_digest(data)))
        return styles

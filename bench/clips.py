"""The clips benchmark (issue 21): seconds per frame, and how much a painted clip flickers.

    python -m bench.clips                      # both sections (about 30 min on a busy 2-core CPU)
    python -m bench.clips --only speed         # or: --only flicker
    python -m bench.clips --only flicker --out /tmp/clips    # also writes every clip as an MP4

The test clips are made here from the shared photos (../shared/images/content): a camera panning across a
photo and one closing in on it, ``--frames`` frames at 12 a second, encoded as MP4 and decoded again as
the bot would (``engine.clips.decode``), so they carry H.264's own noise.

``speed``    seconds per frame: instant (the sketch network, one style vector) at 240 and 480 px over 24
             frames, painted (Gatys, ``PaintedPlan``'s default budget) at 128 and 256 px over 4 frames: its
             first frame and the frames after it, which start from the last painting.
``flicker``  ``engine.metrics.flicker`` for each clip: the painted clip's frame-to-frame change over the
             source's, plain and motion-compensated, for instant and for painted with each start
             (``carried``: the last painting moved along the motion, the default; ``previous``: the last
             painting as it was; ``frame``: every frame painted afresh, the naive way). ``--steady``: the
             temporal filter instant and carried use (``engine.clips.paint.steadied``; 0: none).

Results go to bench/results/clips-<device>.json and a Markdown summary on stdout (docs/benchmarks.md records
it). Timings need an otherwise idle machine; the flicker numbers do not.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

    from engine.api import Engine
    from engine.clips.media import Clip

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "images"
RESULTS = REPO / "bench" / "results"
SECTIONS = ("speed", "flicker")
FPS = 12
CLIPS = (  # (name, photo, motion, painting)
    ("pan", "tubingen", "pan", "starry_night"),
    ("zoom", "chicago", "zoom", "great_wave"),
)
INSTANT_SIDES = (240, 480)
PAINTED_SIDES = (128, 256)
SPEED_PAINTED_FRAMES = 4  # the first frame and three that start from the last painting
FLICKER_SIDE = 128
STARTS = ("carried", "previous", "frame")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only these sections")
    parser.add_argument("--frames", type=int, default=8, help="frames per test clip (12 a second)")
    parser.add_argument("--first-steps", type=int, help="painted: the first frame's steps (PaintedPlan's)")
    parser.add_argument("--next-steps", type=int, help="painted: each later frame's steps (PaintedPlan's)")
    parser.add_argument(
        "--starts", default=",".join(STARTS), help="flicker: painted's starts to compare (comma-separated)"
    )
    parser.add_argument(
        "--steady",
        type=float,
        default=None,
        help="the temporal filter for instant and carried (default: 0.5)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, help="write every clip as an MP4 into this folder")
    args = parser.parse_args()
    if not (SHARED / "content").is_dir():
        print(f"needs the shared images in {SHARED}", file=sys.stderr)
        return 2
    from engine.api import Engine
    from engine.clips.paint import PaintedPlan
    from engine.sketch import Sketcher

    engine = Engine(device=args.device)
    engine.load_model()
    sketcher = Sketcher()
    sketcher.load()
    changes = {"first_steps": args.first_steps, "next_steps": args.next_steps, "steady": args.steady}
    plan = replace(PaintedPlan(), **{k: v for k, v in changes.items() if v is not None})
    starts = [s for s in args.starts.split(",") if s]
    report: dict[str, Any] = {
        "device": engine.device_name,
        "precision": engine.precision,
        "frames": args.frames,
        "plan": [plan.first_steps, plan.next_steps],
        "steady": plan.steady,
    }
    sections = args.only or list(SECTIONS)
    if "speed" in sections:
        report["speed"] = speed(engine, sketcher, plan, args.frames)
    if "flicker" in sections:
        report["flicker"] = flickers(engine, sketcher, plan, starts, args.frames, args.out)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"clips-{engine.device.type}.json"
    path.write_text(json.dumps(report, indent=2))
    print(markdown(report))
    print(f"\n(results: {path.relative_to(REPO)})")
    return 0


def test_clip(photo: str, motion: str, frames: int, side: int) -> Clip:
    """A pan or a zoom over a shared photo, through MP4 and back, at most ``side`` px."""
    from PIL import Image

    from engine.clips import decode, encode

    source = Image.open(SHARED / "content" / f"{photo}.jpg").convert("RGB")
    width, height = source.size
    view_w, view_h = width * 0.6, height * 0.6  # the camera sees 60% of the photo...
    pictures = []
    pan_step = min(0.2 / 12, 0.35 / frames)  # a fifth of the photo's width in a second, all in the photo
    zoom_step = min(0.33 / 12, 0.5 / frames)  # a third closer in a second
    for i in range(frames):
        if motion == "pan":  # ...and moves across
            left, top = width * (0.05 + i * pan_step), height * 0.2
            box = (left, top, left + view_w, top + view_h)
        else:  # ...and closes in on its centre
            shrink = 1 - i * zoom_step
            w, h = view_w * shrink / 2, view_h * shrink / 2
            box = (width / 2 - w, height / 2 - h, width / 2 + w, height / 2 + h)
        size = (side, round(side * view_h / view_w))
        pictures.append(source.resize(size, Image.Resampling.LANCZOS, box=box))
    return decode(encode(pictures, FPS, "mp4").data, side)


def styles_for(painting: str) -> tuple[Any, ...]:
    from engine.protocol import StyleSource

    return (StyleSource(image=(SHARED / "styles" / f"{painting}.jpg").read_bytes()),)


def sketch_styles(painting: str) -> list[Any]:
    from PIL import Image

    from engine.images import image_digest
    from engine.sketch import SketchStyle

    data = (SHARED / "styles" / f"{painting}.jpg").read_bytes()
    return [SketchStyle(Image.open(SHARED / "styles" / f"{painting}.jpg"), digest=image_digest(data))]


def speed(engine: Engine, sketcher: Any, plan: Any, frames: int) -> dict[str, Any]:
    """Seconds per frame: instant over the whole clip; painted's first frame apart from the rest."""
    from engine.clips.paint import instant, painted
    from engine.protocol import Progress

    _, photo, motion, painting = CLIPS[0]
    out: dict[str, Any] = {"instant": {}, "painted": {}}
    for side in INSTANT_SIDES:
        clip = test_clip(photo, motion, max(frames, 24), side)
        instant(
            type(clip)(clip.frames[:2], clip.fps), sketcher, sketch_styles(painting)
        )  # the vector, cached
        started = time.perf_counter()
        instant(clip, sketcher, sketch_styles(painting))
        seconds = time.perf_counter() - started
        out["instant"][str(side)] = {
            "size": list(clip.size),
            "frames": len(clip.frames),
            "s_per_frame": round(seconds / len(clip.frames), 4),
        }
        print(f"instant {side}: {out['instant'][str(side)]}", file=sys.stderr)
    for side in PAINTED_SIDES:
        clip = test_clip(photo, motion, SPEED_PAINTED_FRAMES, side)
        moments: list[float] = []
        started = time.perf_counter()

        def frame_done(_: Progress) -> None:
            moments.append(time.perf_counter() - started)  # noqa: B023 -- read at once, in this loop

        painted(clip, engine, styles_for(painting), plan=plan, progress=frame_done)
        later = [b - a for a, b in itertools.pairwise(moments)]
        out["painted"][str(side)] = {
            "size": list(clip.size),
            "frames": len(clip.frames),
            "first_s": round(moments[0], 2),
            "next_s_per_frame": round(statistics.mean(later), 2) if later else None,
        }
        print(f"painted {side}: {out['painted'][str(side)]}", file=sys.stderr)
    return out


def flickers(
    engine: Engine, sketcher: Any, plan: Any, starts: list[str], frames: int, out: Path | None
) -> list[dict[str, Any]]:
    """Each test clip: the source's own change, then each painting's ratio to it, plain and compensated."""
    from engine.clips import encode
    from engine.clips.paint import instant, painted
    from engine.metrics import flicker, temporal_change

    rows = []
    for name, photo, motion, painting in CLIPS:
        clip = test_clip(photo, motion, frames, FLICKER_SIDE)
        row: dict[str, Any] = {
            "clip": name,
            "photo": photo,
            "painting": painting,
            "size": list(clip.size),
            "frames": len(clip.frames),
            "source_change": round(temporal_change(clip.frames), 4),
        }
        results: dict[str, list[PILImage]] = {
            "instant": instant(clip, sketcher, sketch_styles(painting), steady=plan.steady).frames
        }
        for start in starts:
            began = time.perf_counter()
            results[f"painted-{start}"] = painted(
                clip, engine, styles_for(painting), plan=replace(plan, start=start)
            ).frames
            print(f"{name} painted-{start}: {time.perf_counter() - began:.0f} s", file=sys.stderr)
        for label, pictures in results.items():
            row[label] = {
                "plain": round(flicker(pictures, clip.frames), 3),
                "compensated": round(flicker(pictures, clip.frames, compensate=True), 3),
            }
            if out is not None:
                out.mkdir(parents=True, exist_ok=True)
                (out / f"{name}-{label}.mp4").write_bytes(encode(pictures, clip.fps).data)
        if out is not None:
            (out / f"{name}-source.mp4").write_bytes(encode(clip.frames, clip.fps).data)
        print(f"{name}: {row}", file=sys.stderr)
        rows.append(row)
    return rows


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"device: {report['device']} ({report['precision']}); painted plan {report['plan']} steps; "
        f"steady {report['steady']} (instant and painted-carried)"
    ]
    if "speed" in report:
        lines += ["", "| quality | side | frame size | frames | s/frame |", "|---|---|---|---|---|"]
        for side, r in report["speed"]["instant"].items():
            lines.append(
                f"| instant | {side} | {r['size'][0]}x{r['size'][1]} | {r['frames']} | {r['s_per_frame']} |"
            )
        for side, r in report["speed"]["painted"].items():
            lines.append(
                f"| painted | {side} | {r['size'][0]}x{r['size'][1]} | {r['frames']} | "
                f"first {r['first_s']}, then {r['next_s_per_frame']} |"
            )
    if "flicker" in report:
        labels = [k for k in report["flicker"][0] if k == "instant" or k.startswith("painted-")]
        lines += [
            "",
            "flicker = the painting's mean frame-to-frame change / the source's (plain; motion-compensated)",
            "",
            "| clip | size | frames | source change | " + " | ".join(labels) + " |",
            "|---|---|---|---|" + "---|" * len(labels),
        ]
        for row in report["flicker"]:
            cells = [f"{row[k]['plain']}; {row[k]['compensated']}" for k in labels]
            size = f"{row['size'][0]}x{row['size'][1]}"
            lines.append(
                f"| {row['clip']} ({row['photo']}, {row['painting']}) | {size} | {row['frames']} | "
                f"{row['source_change']} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

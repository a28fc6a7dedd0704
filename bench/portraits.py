"""Portraits as the style: faces painted onto buildings at the paper's equal layer weights, and not at ours.

    python -m bench.portraits                      # draft tier at 256 px: the portraits, then the others
    python -m bench.portraits --quality normal     # the normal tier (512 px on the CPU)
    python -m bench.portraits --only portraits --photos chicago

For each portrait of the catalog found in ../shared/images/styles (today only ``mona_lisa``) and each photo,
two paintings: "before", the paper's equal weights over conv1_1..conv5_1 (what every painting got before
``engine.catalog.DEFAULT_DEEP_STYLE_WEIGHT``), and "after", the engine's defaults; the portrait is given as
a user's own image, the path on which no catalog entry can help. The other paintings found there make the
table of what the rule costs a painting that is not a portrait. Distances are ``engine.metrics``' (equal
weights over the five layers, whatever the run used). Every result is kept in bench/results/portraits/ and
reused by the next run with the same settings, so the contact sheet can be redrawn without painting again.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image, ImageDraw

if TYPE_CHECKING:
    from engine.api import Engine

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "images"
RESULTS = REPO / "bench" / "results" / "portraits"
PORTRAITS = ("pearl_earring", "mona_lisa", "self_portrait_van_gogh", "the_kiss", "birth_of_venus")
PHOTOS = ("chicago", "tubingen")
EQUAL = (1.0, 1.0, 1.0, 1.0, 1.0)  # "before": the paper's weights over DEFAULT_STYLE_LAYERS
CELL = 256  # the contact sheet's cell height in pixels


@dataclass(frozen=True)
class Painted:
    photo: str
    style: str
    variant: str  # "before" or "after"
    path: Path
    style_distance: float
    content_distance: float
    shallow: float  # the mean of the style distance's conv1_1..conv4_1 terms: the painting's texture
    deepest: float  # its conv5_1 term, the one the defaults no longer match


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quality", default="draft", choices=("draft", "normal", "high"))
    parser.add_argument("--size", type=int, help="longest side (default: 256 at draft, the tier's otherwise)")
    parser.add_argument("--photos", nargs="+", default=list(PHOTOS), choices=PHOTOS)
    parser.add_argument(
        "--others-photo", default="tubingen", choices=PHOTOS, help="photo of the others' table"
    )
    parser.add_argument("--only", choices=("portraits", "others"))
    parser.add_argument("--sheet", type=Path, help="write the portraits' contact sheet here (JPEG or PNG)")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    size = args.size or (256 if args.quality == "draft" else None)
    styles = SHARED / "styles"
    if not styles.is_dir():
        sys.exit(f"the benchmark needs the paintings in {styles} (../shared beside the repository)")
    portraits = [p for p in PORTRAITS if (styles / f"{p}.jpg").is_file()]
    others = sorted(p.stem for p in styles.glob("*.jpg") if p.stem not in PORTRAITS)
    missing = [p for p in PORTRAITS if p not in portraits]
    if missing:
        print(f"portraits not in {styles}, skipped: {', '.join(missing)}", file=sys.stderr)

    from engine.api import Engine  # torch loads here, after the arguments are checked

    engine = Engine(device="cpu", precision="fp32", styles_dir=styles, threads=args.threads)
    tag = f"{args.quality}-{size or 'tier'}"
    if args.only != "others":
        rows = [
            [
                _paint(engine, photo, style, variant, args.quality, size, tag)
                for variant in ("before", "after")
            ]
            for style in portraits
            for photo in args.photos
        ]
        _table("Portraits", [r for row in rows for r in row])
        if args.sheet and rows:
            _contact_sheet(rows, args.sheet)
            print(f"\ncontact sheet: {args.sheet}")
    if args.only != "portraits":
        done = [
            _paint(engine, args.others_photo, style, variant, args.quality, size, tag)
            for style in others
            for variant in ("before", "after")
        ]
        _table("Paintings that are not portraits", done)
    return 0


def _paint(
    engine: Engine, photo: str, style: str, variant: str, quality: str, size: int | None, tag: str
) -> Painted:
    """One painting, or the one a previous run kept for the same settings; its distances measured once."""
    from engine import metrics
    from engine.protocol import StyleSettings, StyleSource, StylizeRequest

    out = RESULTS / tag / f"{photo}-{style}-{variant}.png"
    record = out.with_suffix(".json")
    painting, picture = SHARED / "styles" / f"{style}.jpg", SHARED / "content" / f"{photo}.jpg"
    if not out.is_file():
        weights = EQUAL if variant == "before" else None
        settings = StyleSettings(quality=quality, size=size, style_layer_weights=weights)
        own = StyleSource(image=painting.read_bytes())  # as a user's own picture: no catalog entry helps
        result = engine.stylize(StylizeRequest(picture.read_bytes(), (own,), settings))
        out.parent.mkdir(parents=True, exist_ok=True)
        Image.open(io.BytesIO(result.image)).convert("RGB").save(out)
        record.unlink(missing_ok=True)
    if not record.is_file() or "layers" not in json.loads(record.read_text()):
        image = Image.open(out).convert("RGB")
        distances = {
            "style": metrics.style_distance(image, Image.open(painting)),
            "content": metrics.content_distance(image, Image.open(picture)),
            "layers": _layer_errors(image, Image.open(painting)),
        }
        record.write_text(json.dumps(distances))
    distances = json.loads(record.read_text())
    layers = distances["layers"]
    return Painted(
        photo, style, variant, out, distances["style"], distances["content"], sum(layers[:4]) / 4, layers[4]
    )


def _layer_errors(image: Image.Image, painting: Image.Image) -> list[float]:
    """The five terms whose mean is ``metrics.style_distance`` (conv1_1..conv5_1), to show which layers a
    change of distance comes from."""
    from engine.images import fit_within
    from engine.losses import gram_matrix, relative_mse
    from engine.metrics import _features  # the evaluator's own network, so the terms add up to its distance
    from engine.protocol import DEFAULT_STYLE_LAYERS

    side = max(image.size)
    painting = painting.convert("RGB").resize(fit_within(*painting.size, side), Image.Resampling.LANCZOS)
    ours, theirs = _features(image, DEFAULT_STYLE_LAYERS), _features(painting, DEFAULT_STYLE_LAYERS)
    return [relative_mse(gram_matrix(ours[k]), gram_matrix(theirs[k])).item() for k in DEFAULT_STYLE_LAYERS]


def _table(title: str, painted: list[Painted]) -> None:
    """Markdown: one row per photo and painting, before and after side by side."""
    print(f"\n### {title}\n")
    print(
        "| photo | painting | style distance: before | after | conv1_1-conv4_1 terms: before | after "
        "| conv5_1 term: before | after | content distance: before | after |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    pairs: dict[tuple[str, str], dict[str, Painted]] = {}
    for p in painted:
        pairs.setdefault((p.photo, p.style), {})[p.variant] = p
    for (photo, style), pair in pairs.items():
        b, a = pair["before"], pair["after"]
        print(
            f"| {photo} | {style} | {b.style_distance:.3f} | {a.style_distance:.3f} | {b.shallow:.3f} "
            f"| {a.shallow:.3f} | {b.deepest:.3f} | {a.deepest:.3f} "
            f"| {b.content_distance:.3f} | {a.content_distance:.3f} |"
        )


def _contact_sheet(rows: list[list[Painted]], path: Path) -> None:
    """One row per portrait and photo: the photo, the portrait, before, after, each captioned."""
    label_height = 34
    cells: list[list[tuple[Image.Image, str]]] = []
    for before, after in rows:
        cells.append(
            [
                (Image.open(SHARED / "content" / f"{before.photo}.jpg"), before.photo),
                (Image.open(SHARED / "styles" / f"{before.style}.jpg"), before.style),
                (Image.open(before.path), _caption("before: equal weights", before)),
                (Image.open(after.path), _caption("after: defaults", after)),
            ]
        )
    scaled = [[(_fit_height(image, CELL), text) for image, text in row] for row in cells]
    widths = [max(row[i][0].width for row in scaled) for i in range(4)]
    sheet = Image.new("RGB", (sum(widths) + 10 * 5, len(rows) * (CELL + label_height + 10) + 10), "white")
    draw = ImageDraw.Draw(sheet)
    y = 10
    for row in scaled:
        x = 10
        for (image, text), width in zip(row, widths, strict=True):
            sheet.paste(image, (x, y))
            draw.multiline_text((x, y + CELL + 2), text, fill="black", spacing=2)
            x += width + 10
        y += CELL + label_height + 10
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() in (".jpg", ".jpeg"):
        sheet.save(path, quality=85, optimize=True)
    else:
        sheet.save(path, optimize=True)


def _caption(title: str, painted: Painted) -> str:
    return f"{title}\nstyle {painted.style_distance:.3f}  content {painted.content_distance:.3f}"


def _fit_height(image: Image.Image, height: int) -> Image.Image:
    width = max(1, round(image.width * height / image.height))
    return image.convert("RGB").resize((width, height), Image.Resampling.LANCZOS)


if __name__ == "__main__":
    raise SystemExit(main())

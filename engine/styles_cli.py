"""``python -m engine styles``: list the preset paintings, download them ahead of time, draw the gallery.

Pre-fetching matters on servers: the first job that needs a painting otherwise waits for its download, and a
host without internet needs the files put in place beforehand (``fetch`` on another machine, then copy).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from engine.catalog import load_catalog
from engine.errors import StyleUnavailableError, UnknownStyleError
from engine.settings import EngineSettings
from engine.style_store import StyleStore


def main(argv: list[str]) -> int:
    """Run one ``styles`` command; 0 on success, 1 when a painting or file failed, 2 for wrong arguments."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits on --help (0) and on wrong arguments (2)
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.ERROR, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        catalog = load_catalog(args.catalog)
    except (OSError, ValueError) as exc:
        print(f"styles: error: cannot read the catalog: {exc}", file=sys.stderr)
        return 2
    store = StyleStore(args.styles_dir or EngineSettings().styles_dir, catalog)
    try:
        return args.command(store, args)
    except UnknownStyleError as exc:
        print(f"styles: error: {exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--styles-dir",
        type=Path,
        help="where the paintings are kept (default: STYLES_DIR from the environment, else data/styles)",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log every download attempt")
    common.add_argument(
        "--catalog",
        type=Path,
        help="a catalog TOML file to use instead of the bundled one (for tests and custom catalogs)",
    )
    parser = argparse.ArgumentParser(prog="python -m engine styles", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(title="commands", required=True, metavar="{list,fetch,sheet}")

    listing = commands.add_parser("list", parents=[common], help="show the presets; * marks those on disk")
    listing.set_defaults(command=_list)

    fetch = commands.add_parser("fetch", parents=[common], help="download paintings that are not on disk")
    fetch.add_argument("ids", nargs="*", metavar="ID", help="preset ids (default: all)")
    fetch.set_defaults(command=_fetch)

    sheet = commands.add_parser("sheet", parents=[common], help="draw a contact sheet of all presets")
    sheet.add_argument("-o", "--output", type=Path, required=True, help="image file to write (.png, .jpg)")
    sheet.add_argument("--columns", type=_positive_int, default=5, help="thumbnails per row (default: 5)")
    sheet.set_defaults(command=_sheet)
    return parser


def _list(store: StyleStore, args: argparse.Namespace) -> int:
    catalog = store.catalog
    id_w, artist_w, year_w = (
        max(len(getattr(p, name)) for p in catalog) for name in ("id", "artist", "year")
    )
    on_disk = 0
    for preset in catalog:
        present = store.local_path(preset.id) is not None
        on_disk += present
        line = f"{preset.id:<{id_w}}  {preset.artist:<{artist_w}}  {preset.year:<{year_w}}  {preset.title}"
        print("*" if present else " ", line)
    print(f"{on_disk} of {len(catalog)} on disk in {store.styles_dir} (marked *)")
    return 0


def _fetch(store: StyleStore, args: argparse.Namespace) -> int:
    ids = list(dict.fromkeys(store.catalog.get(i).id for i in args.ids)) or list(store.catalog.ids)
    with tqdm(total=len(ids), unit="painting", disable=not sys.stderr.isatty()) as bar:

        def progress(done: int, total: int, style_id: str) -> None:
            if bar.disable:  # not a terminal (a log file, CI): one plain line per painting
                print(f"[{done}/{total}] {style_id}", flush=True)
            else:
                bar.set_postfix_str(style_id, refresh=False)
                bar.update()

        results = asyncio.run(store.fetch_many(ids, progress))
    failures = [error for error in results.values() if isinstance(error, StyleUnavailableError)]
    for error in failures:
        print(f"styles: error: {error}", file=sys.stderr)
    print(f"{len(results) - len(failures)} of {len(results)} paintings in {store.styles_dir}")
    return 1 if failures else 0


def _sheet(store: StyleStore, args: argparse.Namespace) -> int:
    image = store.make_sheet(columns=args.columns)
    try:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        image.save(args.output)
    except (OSError, ValueError) as exc:  # ValueError: Pillow knows no format for the file's extension
        print(f"styles: error: cannot write {args.output}: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({image.width}x{image.height})")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value

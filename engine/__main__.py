"""``python -m engine``: stylize a photo, manage the style catalog, or run a Celery worker."""

from __future__ import annotations

import gc
import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "styles":
        from engine.styles_cli import main as styles_main

        return styles_main(argv[1:])
    if argv and argv[0] == "worker":
        from engine.workers.celery import main as worker_main

        return worker_main(argv[1:])
    from engine.cli import main as stylize_main

    return stylize_main(argv)


def before_exit() -> None:
    """Interpreter shutdown collects garbage over every object left, torch's ~200,000 included: about
    0.5 s (bench/startup.py). Frozen objects are not collected; their memory goes back to the system at
    exit all the same."""
    gc.freeze()


if __name__ == "__main__":
    code = main()
    before_exit()
    sys.exit(code)

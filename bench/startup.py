"""The command line's fixed cost: where a short ``python -m engine PHOTO PAINTING -o OUT --steps 1`` goes.

    python -m bench.startup              # 5 runs of the plain CLI, then one run of each breakdown
    python -m bench.startup --runs 9 --size 128

Three views of the same run, each in fresh processes:
1. **whole process**: the plain command, timed from the outside, N times; the median is the headline.
2. **imports** (``python -X importtime``, one run): torch with everything it pulls in, against the rest.
3. **phases**: the same CLI run in a process that wraps the engine's steps in timers (interpreter start,
   importing the CLI, importing the engine, settings, device set-up, the catalog, decoding, the VGG
   weights, building the network, the style statistics, the content targets, the optimizer steps,
   encoding, writing, and interpreter shutdown). Each phase is counted exclusively: the weights are not
   also counted in "network". The style statistics come from ``data/cache/style-stats`` after the first
   run, as for a user who paints with the same painting twice; pass ``--cold-stats`` to time a fresh cache.

The machine is usually shared: the load average (``os.getloadavg``) is printed beside the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "images"
PHOTO = SHARED / "content" / "tubingen.jpg"
PAINTING = SHARED / "styles" / "starry_night.jpg"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="plain CLI runs for the median (default 5)")
    parser.add_argument("--photo", type=Path, default=PHOTO)
    parser.add_argument("--painting", default=str(PAINTING), help="an image file or a preset id")
    parser.add_argument("--size", type=int, help="passed on as --size (default: the normal tier's)")
    parser.add_argument("--cold-stats", action="store_true", help="a fresh style-statistics cache each run")
    parser.add_argument("--phases-child", action="store_true", help=argparse.SUPPRESS)  # internal
    args, rest = parser.parse_known_args()
    if args.phases_child:
        return _phases_child(rest)
    if not args.photo.is_file():
        sys.exit(f"the benchmark needs {args.photo} (../shared beside the repository)")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out.png"
        cli = [str(args.photo), args.painting, "-o", str(out), "--steps", "1", "-q"]
        if args.size:
            cli += ["--size", str(args.size)]
        env = dict(os.environ)
        if args.cold_stats:
            env["STYLE_CACHE_DIR"] = str(Path(tmp) / "stats")
        runs, cpu = [], []
        load_before = os.getloadavg()
        for _ in range(args.runs):
            if args.cold_stats:
                _clear(Path(tmp) / "stats")
            used = _children_cpu()
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "engine", *cli], cwd=REPO, env=env, check=True)
            runs.append(time.perf_counter() - started)
            cpu.append(_children_cpu() - used)
        load_after = os.getloadavg()
        empty = [_seconds([sys.executable, "-c", "pass"], env) for _ in range(3)]
        if args.cold_stats:
            _clear(Path(tmp) / "stats")
        imports = _import_totals(cli, env)
        if args.cold_stats:
            _clear(Path(tmp) / "stats")
        phases = _phases(cli, env)

    cold = " (a fresh style-statistics cache each run)" if args.cold_stats else ""
    print(f"python -m engine {' '.join(cli[:2])} -o OUT --steps 1 -q{cold}")
    print(f"load average {_load(load_before)} before, {_load(load_after)} after; {os.cpu_count()} cores")
    print(f"whole process: median {statistics.median(runs):.2f} s of {args.runs} ({_list(runs)})")
    print(f"  its CPU time (user + sys, all threads): median {statistics.median(cpu):.2f} s ({_list(cpu)})")
    print(f"empty interpreter (python -c pass): median {statistics.median(empty):.3f} s")
    print()
    print("imports (python -X importtime, one run, cumulative):")
    for name, seconds in imports.items():
        print(f"  {name:<32} {seconds:6.3f} s")
    print()
    print("phases (one run, exclusive):")
    for name, seconds in phases.items():
        print(f"  {name:<32} {seconds:6.3f} s")
    return 0


def _children_cpu() -> float:
    """CPU seconds of the finished child processes so far: steadier than wall time on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _clear(folder: Path) -> None:
    if folder.is_dir():
        for path in folder.iterdir():
            path.unlink()


def _seconds(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=env, check=True)
    return time.perf_counter() - started


def _load(values: tuple[float, float, float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


PACKAGES = (
    "torch", "numpy", "PIL", "pydantic", "pydantic_settings", "aiohttp", "tqdm", "onnxruntime", "onnx",
)  # fmt: skip


def _import_totals(cli: list[str], env: dict[str, str]) -> dict[str, float]:
    """One CLI run's imports: each package's whole tree (where it was first imported, whoever imported it),
    what is left (the engine's own modules and the standard library), and the sum of all."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "engine", *cli],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return import_totals(done.stderr)


def import_totals(importtime: str) -> dict[str, float]:
    """Parse ``-X importtime`` output (children before their parent, nesting by indent) into seconds per
    package of ``PACKAGES``: a package's subtree counts once, under the first of them that imported it
    (numpy, imported by torch, counts as torch)."""
    roots: list[tuple[str, float, list[Any]]] = []
    stack: list[tuple[int, tuple[str, float, list[Any]]]] = []
    for line in importtime.splitlines():
        match = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if not match:
            continue
        depth = len(match.group(2))
        children: list[Any] = []
        while stack and stack[-1][0] > depth:
            children.insert(0, stack.pop()[1])
        stack.append((depth, (match.group(3), int(match.group(1)) / 1e6, children)))
    roots = [node for _, node in stack]
    totals = dict.fromkeys(PACKAGES, 0.0)

    def visit(node: tuple[str, float, list[Any]], inside: str | None) -> None:
        name, seconds, children = node
        package = name.split(".")[0]
        if inside is None and package in totals:
            totals[package] += seconds
            inside = package
        for child in children:
            visit(child, inside)

    for root in roots:
        visit(root, None)
    everything = sum(seconds for _, seconds, _ in roots)
    report = {name: seconds for name, seconds in totals.items() if seconds > 0}
    report["the rest (engine, stdlib)"] = everything - sum(totals.values())
    report["all imports"] = everything
    return report


def _phases(cli: list[str], env: dict[str, str]) -> dict[str, float]:
    spawned = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "bench.startup", "--phases-child", f"--spawned={spawned!r}", *cli],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    ended = time.time()
    report = json.loads(done.stdout.strip().splitlines()[-1])
    phases: dict[str, float] = report["phases"]
    phases["interpreter shutdown"] = ended - report["returned"]
    phases["whole process"] = ended - spawned
    return phases


# -- the child: the CLI with its steps wrapped in timers ------------------------------------------


class _Timers:
    """Exclusive time per phase: a phase entered inside another is subtracted from the outer one."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}
        self.stack: list[list[Any]] = []  # [name, started, inner seconds]

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        entry: list[Any] = [name, time.perf_counter(), 0.0]
        self.stack.append(entry)
        try:
            yield
        finally:
            self.stack.pop()
            spent = time.perf_counter() - entry[1]
            self.totals[name] = self.totals.get(name, 0.0) + spent - entry[2]
            if self.stack:
                self.stack[-1][2] += spent

    def active(self, name: str) -> bool:
        return any(entry[0] == name for entry in self.stack)

    def wrap(self, owner: Any, attribute: str, name: str, unless: tuple[str, ...] = ()) -> None:
        original = getattr(owner, attribute)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if any(self.active(outer) for outer in unless):
                return original(*args, **kwargs)
            with self.phase(name):
                return original(*args, **kwargs)

        setattr(owner, attribute, timed)


def _phases_child(argv: list[str]) -> int:
    started = time.time()
    spawned = float(argv[0].split("=", 1)[1])
    timers = _Timers()
    timers.totals["interpreter start"] = started - spawned
    with timers.phase("import engine.cli"):
        import engine.__main__
        import engine.cli
    # As the CLI does it where it does (older versions: plainly).
    no_gc = getattr(engine.cli, "_no_garbage_collection", contextlib.nullcontext)
    with timers.phase("import the engine (torch...)"), no_gc():
        import engine.api
        import engine.vgg
    api, vgg = engine.api, engine.vgg
    timers.wrap(engine.cli, "EngineSettings", "settings (pydantic)")
    timers.wrap(api.devices, "resolve_device", "device: resolve, prepare")
    timers.wrap(api.devices, "prepare", "device: resolve, prepare")
    timers.wrap(api, "load_catalog", "catalog")
    timers.wrap(engine.cli, "_request_from_args", "read files, build request")
    timers.wrap(api, "decode_image", "decode images")
    timers.wrap(api, "image_digest", "decode images")
    timers.wrap(vgg, "cached_conv_weights", "VGG weights (load, dequantize)")
    timers.wrap(api, "feature_extractor", "build the network")
    timers.wrap(api.StyleStatsCache, "get", "style statistics")
    timers.wrap(api.Engine, "_style_grams", "style statistics")
    timers.wrap(
        vgg.VGGFeatures, "forward", "content targets", unless=("optimize (the steps)", "style statistics")
    )
    timers.wrap(api, "optimize", "optimize (the steps)")
    timers.wrap(api, "to_pil", "encode the output")
    timers.wrap(api, "encode_image", "encode the output")
    timers.wrap(Path, "write_bytes", "write the output")
    with timers.phase("the rest of the CLI"):
        code = engine.cli.main(argv[1:])
    if code != 0:
        return code
    timers.totals = {k: round(v, 4) for k, v in timers.totals.items()}
    print(json.dumps({"phases": timers.totals, "returned": time.time()}))
    sys.stdout.flush()
    getattr(engine.__main__, "before_exit", lambda: None)()
    return 0


if __name__ == "__main__":
    sys.exit(main())

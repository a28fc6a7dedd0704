"""Load benchmark: many users sending photos at once through the real bot, against the local Bot API stand-in.

    python -m bench.load                      # 20 users, one draft job each, the real engine
    python -m bench.load --users 20 --jobs-per-user 2 --quality draft --workers 1
    python -m bench.load --users 8 --batch-size 1 4   # batching off, then on: the two side by side

Everything is real but Telegram: long polling, the handlers, the database, the embedded queue and its
worker processes running the real engine. For each job it records when the user sent the photo, when the
status message answered, when the job started and when the painting arrived; it prints throughput and
latency percentiles, and writes bench/results/load-<device>.json.

``--batch-size`` (``ENGINE_BATCH_SIZE``) takes one or more sizes: each gets a run of its own (a fresh bot,
database and workers, the same photos), and with several the tables are printed side by side and the JSON
holds ``{"runs": [report, ...]}``. Without it one run uses the environment's setting (default auto).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from PIL import Image

from bot.config import Settings
from bot.context import Services
from bot.telegram.app import build_application, running
from bot.telegram.context import services
from tests.fakes.telegram_api import Call, FakeTelegram

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "images"
STYLES = ("starry_night", "great_wave", "shipwreck", "udnie")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--jobs-per-user", type=int, default=1)
    parser.add_argument("--quality", default="draft", choices=("draft", "normal", "high"))
    parser.add_argument("--workers", type=int, help="worker processes (default: auto)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    parser.add_argument(
        "--batch-size",
        type=int,
        nargs="+",
        metavar="N",
        help="ENGINE_BATCH_SIZE for each run (default: one run with the environment's, else auto)",
    )
    args = parser.parse_args()
    if not (SHARED / "styles").is_dir():
        sys.exit(f"the load benchmark needs {SHARED} (../shared beside the repository)")
    if args.batch_size and min(args.batch_size) < 1:
        sys.exit("--batch-size: sizes start at 1")
    runs = [asyncio.run(run(args, batch)) for batch in (args.batch_size or [None])]
    report: dict[str, object] = runs[0] if len(runs) == 1 else {"runs": runs}
    device = str(runs[0]["device"])
    out = REPO / "bench" / "results" / f"load-{device.split()[0].split(':')[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(markdown(report))
    print(f"\n(raw numbers: {out.relative_to(REPO)})")
    return 0


def photos() -> list[bytes]:
    """The shared photos as a phone would send them: JPEG, longest side 1280."""
    result = []
    for path in sorted((SHARED / "content").glob("*.jpg")):
        image = Image.open(path).convert("RGB")
        image.thumbnail((1280, 1280))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=90)
        result.append(buffer.getvalue())
    return result


def bench_settings(tg: FakeTelegram, tmp: str, **overrides: Any) -> Settings:
    """The real bot against the stand-in, its data in ``tmp``, the shared paintings (no downloads)."""
    return Settings(
        telegram_bot_token=tg.token,
        telegram_api_url=tg.root_url,
        database_url=f"sqlite+aiosqlite:///{tmp}/bench.db",
        data_dir=Path(tmp) / "data",
        styles_dir=SHARED / "styles",
        styles_prefetch=False,  # measure the jobs, not downloads into the shared folder
        style_cache_dir=Path(tmp) / "stats",
        max_queue_length=10_000,
        health_port=0,
        log_level="WARNING",
        **overrides,
    )


async def workers_ready(s: Services) -> None:
    """The workers load the model first: time that is not the benchmark's."""
    while not s.queue.status().healthy:  # noqa: ASYNC110 - the queue offers a status, no event
        await asyncio.sleep(0.2)


async def run(args: argparse.Namespace, batch_size: int | None = None) -> dict[str, object]:
    """One run of the load through a fresh bot; ``batch_size`` None: the environment's setting."""
    batching = {} if batch_size is None else {"engine_batch_size": batch_size}
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeTelegram(max_poll_timeout=1.0, wait_timeout=args.timeout) as tg:
            settings = bench_settings(
                tg,
                tmp,
                default_quality=args.quality,
                engine_device=args.device,
                engine_workers=args.workers,
                max_active_jobs=max(3, args.jobs_per_user),
                sketch_preview=False,  # the paintings' throughput; bench.first_picture measures the sketch
                **batching,
            )
            application = build_application(settings)
            async with running(application):
                s = services(application)
                await workers_ready(s)
                return await _load(tg, s, args)


async def _load(tg: FakeTelegram, s: Services, args: argparse.Namespace) -> dict[str, object]:
    users = [tg.user(f"User{i}") for i in range(args.users)]
    chats = [tg.private_chat(u) for u in users]
    images = photos()
    sent: dict[tuple[int, int], float] = {}  # (chat, photo message) -> when the user sent it
    started = time.monotonic()
    for round_ in range(args.jobs_per_user):
        for i, (user, chat) in enumerate(zip(users, chats, strict=True)):
            caption = STYLES[(i + round_) % len(STYLES)]
            message = await tg.send_photo(user, chat, images[i % len(images)], caption=caption)
            sent[chat.id, message.message_id] = time.monotonic()
    total = len(sent)
    answered: dict[tuple[int, int], float] = {}
    delivered: dict[tuple[int, int], float] = {}
    while len(delivered) < total:
        call = await tg.wait_for("sendMessage", timeout=args.timeout) if len(answered) < total else None
        if call is not None:
            answered[_replied_to(call)] = call.time
            continue
        call = await tg.wait_for("sendPhoto", lambda c: c.ok, timeout=args.timeout)
        delivered[_replied_to(call)] = call.time
    elapsed = time.monotonic() - started
    jobs = [j for u in users for j in await s.db.recent_jobs(u.id, args.jobs_per_user, platform="telegram")]
    waits = [(j.started_at - j.created_at).total_seconds() for j in jobs if j.started_at]
    engine = [j.engine_seconds for j in jobs if j.engine_seconds]
    latency = [delivered[m] - sent[m] for m in sent]
    ack = [answered[m] - sent[m] for m in sent if m in answered]
    status = s.queue.status()
    worker_info: list[Any] = getattr(s.queue, "worker_info", lambda: [])()
    return {
        "device": worker_info[0].description if worker_info else "unknown",
        "workers": status.workers,
        "batch_size": status.batch_size(args.quality),
        "users": args.users,
        "jobs": total,
        "quality": args.quality,
        "seconds": round(elapsed, 1),
        "throughput_jobs_per_minute": round(total / elapsed * 60, 2),
        "latency_s": _percentiles(latency),
        "status_reply_s": _percentiles(ack),
        "queue_wait_s": _percentiles(waits),
        "engine_s": _percentiles(engine),
    }


def _replied_to(call: Call) -> tuple[int, int]:
    return int(call.params["chat_id"]), int(call.params["reply_parameters"]["message_id"])


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(fraction: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(fraction * len(ordered)))], 2)

    return {
        "p50": at(0.5),
        "p90": at(0.9),
        "max": round(ordered[-1], 2),
        "mean": round(statistics.mean(ordered), 2),
    }


def markdown(report: dict[str, Any]) -> str:
    """The table of one run, or of several side by side (``{"runs": [...]}``)."""
    if "runs" in report:
        return side_by_side(report["runs"])
    lines = [
        f"{report['users']} users, {report['jobs']} {report['quality']} jobs, {report['workers']} worker(s) "
        f"on {report['device']}, batch size {report.get('batch_size', 1)}: {report['seconds']} s, "
        f"{report['throughput_jobs_per_minute']} jobs/min",
        "",
        "| seconds | p50 | p90 | max | mean |",
        "|---|---|---|---|---|",
    ]
    for name in ("status_reply_s", "queue_wait_s", "engine_s", "latency_s"):
        row = report[name]
        lines.append(
            f"| {name} | {row.get('p50')} | {row.get('p90')} | {row.get('max')} | {row.get('mean')} |"
        )
    return "\n".join(lines)


def side_by_side(runs: list[dict[str, Any]]) -> str:
    """Runs that differ in batch size, one column each."""
    first = runs[0]
    lines = [
        f"{first['users']} users, {first['jobs']} {first['quality']} jobs, {first['workers']} worker(s) "
        f"on {first['device']}",
        "",
        "| | " + " | ".join(f"batch size {r.get('batch_size', 1)}" for r in runs) + " |",
        "|---|" + "---|" * len(runs),
        "| seconds | " + " | ".join(str(r["seconds"]) for r in runs) + " |",
        "| jobs/min | " + " | ".join(str(r["throughput_jobs_per_minute"]) for r in runs) + " |",
    ]
    for name in ("status_reply_s", "queue_wait_s", "engine_s", "latency_s"):
        for stat in ("p50", "p90", "max"):
            cells = " | ".join(str(r[name].get(stat)) for r in runs)
            lines.append(f"| {name} {stat} | {cells} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

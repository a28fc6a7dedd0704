"""First picture in chat: how soon after the photo the sketch shows, while the engine paints another job.

    python -m bench.first_picture                  # 6 photos, private chats and groups, the real engine
    python -m bench.first_picture --photos 10 --quality draft

Everything is real but Telegram (the local Bot API stand-in): long polling, the handlers, the database, the
embedded queue with one worker process running the real engine, and the sketch process. One user's job is
painting (its worker busy on both cores) before the measured photos arrive; each measured photo comes from a
new user, half in private chats, half in groups, and waits in the queue behind it. For each it records when
the status text answered and when the first picture (the sketch on the status) reached the chat. Writes
bench/results/first-picture-<device>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.load import SHARED, STYLES, _percentiles, bench_settings, photos, workers_ready
from bot.context import Services
from bot.db import JobState
from bot.telegram.app import build_application, running
from bot.telegram.context import services
from tests.fakes.telegram_api import FakeTelegram

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=6, help="measured photos (half in groups)")
    parser.add_argument("--quality", default="normal", choices=("draft", "normal", "high"), help="all jobs'")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if not (SHARED / "styles").is_dir():
        sys.exit(f"this benchmark needs {SHARED} (../shared beside the repository)")
    report = asyncio.run(run(args))
    out = REPO / "bench" / "results" / f"first-picture-{args.device}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(markdown(report))
    print(f"\n(raw numbers: {out.relative_to(REPO)})")
    return 0


async def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeTelegram(max_poll_timeout=1.0, wait_timeout=600) as tg:
            settings = bench_settings(
                tg,
                tmp,
                default_quality=args.quality,
                engine_device=args.device,
                engine_workers=1,
                sketch_preview=True,
            )
            application = build_application(settings)
            async with running(application):
                s = services(application)
                await workers_ready(s)
                await s.sketches.pool.ready()  # a running bot warmed it at start-up
                return await _measure(tg, s, args)


async def _measure(tg: FakeTelegram, s: Services, args: argparse.Namespace) -> dict[str, object]:
    images = photos()
    busy_user = tg.user("Busy")
    busy_chat = tg.private_chat(busy_user)
    await tg.send_photo(busy_user, busy_chat, images[0], caption=STYLES[0])
    while True:  # its worker is painting (started, and a progress report in) before the clock starts
        jobs = await s.db.recent_jobs(busy_user.id, 1, platform="telegram")
        if jobs and jobs[0].state is JobState.RUNNING and (jobs[0].progress or 0) > 0:
            break
        await asyncio.sleep(0.2)
    rows: list[dict[str, Any]] = []
    for i in range(args.photos):
        user = tg.user(f"User{i}")
        group = i % 2 == 1
        chat = tg.group(f"Group{i}", [user]) if group else tg.private_chat(user)
        style = STYLES[i % len(STYLES)]
        caption = f"/style@{tg.bot.username} {style}" if group else style
        sent = time.monotonic()
        message = await tg.send_photo(user, chat, images[i % len(images)], caption=caption)
        text = await tg.wait_for("sendMessage", _to(chat.id), timeout=60)
        picture = await tg.wait_for("sendPhoto", _to(chat.id, ok=True), timeout=60)
        busy = (await s.db.recent_jobs(busy_user.id, 1, platform="telegram"))[0]
        rows.append(
            {
                "chat": "group" if group else "private",
                "status_text_s": round(text.time - sent, 3),
                "first_picture_s": round(picture.time - sent, 3),
                "painter_busy": busy.state is JobState.RUNNING,
                "message": message.message_id,
            }
        )
        print(rows[-1], flush=True)
    return {
        "device": args.device,
        "photos": len(rows),
        "quality": args.quality,
        "all_while_painting": all(r["painter_busy"] for r in rows),
        "status_text_s": _percentiles([r["status_text_s"] for r in rows]),
        "first_picture_s": _percentiles([r["first_picture_s"] for r in rows]),
        "rows": rows,
    }


def _to(chat_id: int, *, ok: bool = False) -> Callable[[Any], bool]:
    """A ``wait_for`` test: a call to ``chat_id`` (answered successfully, with ``ok``)."""
    return lambda call: int(call.params.get("chat_id", 0)) == chat_id and (call.ok or not ok)


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"{report['photos']} photos ({report['quality']}), each while another job was painting: "
        f"{report['all_while_painting']}",
        "",
        "| seconds after the photo | p50 | p90 | max | mean |",
        "|---|---|---|---|---|",
    ]
    for name in ("status_text_s", "first_picture_s"):
        row = report[name]
        lines.append(
            f"| {name} | {row.get('p50')} | {row.get('p90')} | {row.get('max')} | {row.get('mean')} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

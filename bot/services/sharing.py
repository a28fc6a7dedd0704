"""Sharing paintings: a person's recent results to send anywhere, and links that carry a style.

- ``recent``: the results a person may send again (Telegram's inline mode): those the platform confirmed
  (their file id kept), newest first, filtered by the words typed against the style's label, a page at a
  time. Only what the bot still keeps is offered: a result deleted with the Delete button, or past
  ``RESULT_RETENTION_DAYS``, is gone from the list too, though the platform would still send its file id
  (whoever deleted it meant it to be gone). A blocked person is offered nothing.
- ``style_payload`` / ``parse_payload``: a link's payload names catalog paintings only (``starry_night``,
  a blend as ``udnie-starry_night``, a painting named as often as its weight). A person's own style image
  never gets a link: the payload would have to point at their picture (a job, a file id), and everyone who
  saw the link could paint with it and so see it. The famous paintings are public; people's photos are not.
- ``choose`` / ``take_chosen``: a style picked by a link waits for that person's next photo (for
  ``CHOICE_TTL``, in this process's memory: a restart forgets it, and the photo then gets the gallery).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.db import Database, JobRecord
from bot.services import styles
from bot.services.results import result_path
from bot.services.styles import StyleChoice
from engine.catalog import Catalog
from engine.errors import StylebotError

START_PAYLOAD = re.compile(r"[A-Za-z0-9_-]{1,64}")  # what Telegram takes as a start parameter
SEPARATOR = "-"  # between a blend's paintings: catalog ids are [a-z0-9_]
PAGE_SIZE = 20  # results per inline page (Telegram takes at most 50)
MAX_OFFERED = 100  # the newest results looked at: an inline list is for recent ones
CHOICE_TTL = timedelta(hours=1)  # how long a style picked by a link waits for a photo


@dataclass(frozen=True)
class Page:
    """One page of a person's results and the offset of the next ("" when this was the last)."""

    jobs: tuple[JobRecord, ...]
    next_offset: str


def matches(job: JobRecord, query: str) -> bool:
    """Every word typed appears in the style's label, whatever the case ("starry nig", "NIGHT")."""
    label = job.style_label.casefold()
    return all(word in label for word in query.casefold().split())


def style_payload(job: JobRecord) -> str | None:
    """The link payload for the job's style, or None when it has none: an own image in it, a weight that
    is not a whole number, or more than Telegram's 64 characters."""
    ids: list[str] = []
    for ref in job.styles:
        weight = float(ref.get("weight", 1.0))
        if "preset" not in ref or "image" in ref or weight != int(weight) or weight < 1:
            return None
        ids += [str(ref["preset"])] * int(weight)
    payload = SEPARATOR.join(ids)
    return payload if START_PAYLOAD.fullmatch(payload) else None


def parse_payload(payload: str, catalog: Catalog) -> StyleChoice | None:
    """The style a link names, or None for anything else (a painting this catalog lacks, a blend of
    too many, a payload that is not one of ours)."""
    if not START_PAYLOAD.fullmatch(payload):
        return None
    ids = payload.split(SEPARATOR)
    known = set(catalog.ids)
    if any(style_id not in known for style_id in ids):  # exact ids only: a link is not typed by hand
        return None
    try:
        choice = styles.paintings(ids, catalog)
        styles.check_blend(choice)
    except StylebotError:
        return None
    return choice


class SharingService:
    def __init__(
        self,
        db: Database,
        catalog: Catalog,
        *,
        results_dir: Path,
        retention: timedelta,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.db = db
        self.catalog = catalog
        self.results_dir = results_dir
        self.retention = retention
        self.clock = clock
        self._chosen: dict[tuple[str, int], tuple[StyleChoice, datetime]] = {}

    async def recent(self, user_id: int, query: str, offset: str, *, platform: str) -> Page:
        """A page of the person's results matching ``query`` from ``offset`` (the previous page's
        ``next_offset``; "" for the first). An offset we never gave is an empty last page."""
        # isascii: "²".isdigit() is true, and int() refuses it
        start = int(offset) if offset.isascii() and offset.isdigit() and len(offset) < 6 else None
        start = 0 if offset == "" else start
        if start is None or await self.db.is_blocked(platform, user_id):
            return Page((), "")
        since = self.clock() - self.retention
        jobs = await self.db.delivered_jobs(user_id, platform=platform, since=since, limit=MAX_OFFERED)
        wanted = [job for job in jobs if matches(job, query)]
        kept = await asyncio.to_thread(
            lambda: [job for job in wanted if result_path(self.results_dir, job) is not None]
        )
        shown = tuple(kept[start : start + PAGE_SIZE])
        more = start + PAGE_SIZE < len(kept)
        return Page(shown, str(start + PAGE_SIZE) if more else "")

    def choose(self, user_id: int, choice: StyleChoice, *, platform: str) -> None:
        """Remember the style a link picked until the person's next photo (or ``CHOICE_TTL``)."""
        now = self.clock()
        self._chosen = {key: kept for key, kept in self._chosen.items() if now - kept[1] < CHOICE_TTL}
        self._chosen[(platform, user_id)] = (choice, now)

    def take_chosen(self, user_id: int, *, platform: str) -> StyleChoice | None:
        """The style a link picked, once: the photo it was waiting for takes it."""
        kept = self._chosen.pop((platform, user_id), None)
        if kept is None or self.clock() - kept[1] >= CHOICE_TTL:
            return None
        return kept[0]

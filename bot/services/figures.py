"""Painting a finished job's photo again: with another style, as a figure (strips, the painting as it
forms), or with a painting the user has not tried yet ("Surprise me").

A finished job keeps its photo for RESULT_RETENTION_DAYS (``JobService.discard_inputs``), so none of this
asks the user to send it again. Only the job's owner may have it painted again, and every new job goes
through ``JobService.submit``: the same limits, queue and fairness as any other, with the figure's weight.
This module knows no chat platform.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.db import Database, JobRecord, JobState
from bot.services.access import ownership
from bot.services.jobs import JobService, NewJob, Placement
from bot.services.paintings import Paintings
from bot.services.refusals import NoPaintingReadyError, Refused
from bot.services.styles import StyleChoice
from bot.texts import language_for, text
from engine import figures
from engine.catalog import Catalog, Preset
from engine.protocol import StyleSettings, settings_from_dict

log = logging.getLogger(__name__)

RECENT_JOBS = 20  # how far back "my latest photo" looks


def as_figure(settings: StyleSettings, figure: str | None) -> tuple[StyleSettings, float]:
    """A job's settings as ``figure`` (None: one painting) and the weight its limits and ETA count; one
    rule for every front end and for painting a kept photo again. A figure is painted, so at ``instant``
    (the sketch, no painting) it is made at ``draft``, the fastest tier that paints."""
    if figure is not None and settings.quality == "instant":
        settings = settings.replace(quality="draft")
    settings = settings.replace(figure=figure)
    return settings, figures.weight(settings)


def figure_label(language: str, figure: str | None, style: str) -> str:
    """The job's label (status and caption) in the user's language: the style, and what figure it is."""
    return style if figure is None else text(language, f"{figure}_label", style=style)


REPAINT_KEYS = {
    "unknown": "button_expired",
    "not_yours": "not_your_job",
    "not_done": "repaint_not_done",
    "failed": "repaint_failed",
    "expired": "repaint_expired",
    "clip": "repaint_clip",
}


class RepaintRefusedError(Refused):
    """Why a job's photo cannot be painted again. ``kind``: "unknown" (no such job), "not_yours",
    "not_done" (still queued or running), "failed" (it never made a picture), "expired" (the photo is
    no longer kept) or "clip" (a GIF or video: another style and the figures paint photos)."""

    def __init__(self, kind: str) -> None:
        super().__init__(REPAINT_KEYS[kind])
        self.kind = kind


@dataclass(frozen=True)
class Surprise:
    painting: Preset
    untried_left: int  # paintings the user has still not tried, this one not counted
    all_tried: bool  # every painting was tried already: this one is a repeat


class FigureService:
    def __init__(
        self,
        db: Database,
        jobs: JobService,
        catalog: Catalog,
        *,
        retention: timedelta,
        paintings: Paintings,
    ) -> None:
        self.db = db
        self.jobs = jobs
        self.catalog = catalog
        self.retention = retention
        self.paintings = paintings  # which paintings are on disk: "Surprise me" offers only those

    async def source(self, job_id: int, user_id: int, *, platform: str) -> JobRecord:
        """The finished job whose photo ``user_id`` of ``platform`` wants painted again; raises
        RepaintRefusedError."""
        job = await self.db.get_job(job_id)
        whose = ownership(job, user_id, platform=platform)
        if whose != "owner":
            raise RepaintRefusedError(whose)
        assert job is not None
        if job.clip is not None:
            raise RepaintRefusedError("clip")
        if job.is_active:
            raise RepaintRefusedError("not_done")
        if job.state != JobState.DONE:
            raise RepaintRefusedError("failed")
        if not self._kept(job):
            raise RepaintRefusedError("expired")
        return job

    async def latest_source(self, user_id: int, chat_id: int, *, platform: str) -> JobRecord | None:
        """The user's latest finished job in this chat whose photo is still kept (a clip is no photo)."""
        for job in await self.db.recent_jobs(user_id, RECENT_JOBS, platform=platform):
            if job.chat_id == chat_id and job.state == JobState.DONE and job.clip is None and self._kept(job):
                return job
        return None

    def _kept(self, job: JobRecord) -> bool:
        finished = job.finished_at or job.created_at
        return datetime.now(UTC) - finished < self.retention

    async def repaint(
        self,
        source: JobRecord,
        *,
        figure: str | None = None,
        style: StyleChoice | None = None,
        label: str | None = None,
        request_key: str | None = None,
    ) -> tuple[JobRecord, Placement | None]:
        """Queue a new job on ``source``'s photo, in its chat, replying to the same photo: with ``style``
        (else the source's own), as ``figure`` (else one painting), under ``label`` (else the style's
        with the figure's name, in the job's language). ``request_key``: what asked for it on the platform
        (``NewJob.request_key``). Raises RepaintRefusedError("expired") when the photo is gone, and what
        ``JobService.submit`` raises (limits with the admins' exemption, bad images, RepeatedRequest)."""
        inputs = await self.jobs.kept_inputs(source)
        if inputs is None:
            raise RepaintRefusedError("expired")
        content, own_images = inputs
        if style is None:
            style = StyleChoice(tuple(source.styles), source.style_label)
        else:
            own_images = ()  # a catalog painting: the source's own style images are not needed
        settings, weight = as_figure(settings_from_dict(source.settings), figure)
        if label is None:
            label = figure_label(language_for(source.language_code), figure, style.label)
        new = NewJob(
            user_id=source.user_id,
            chat_id=source.chat_id,
            chat_type=source.chat_type,
            language=source.language_code,
            source_message_id=source.source_message_id,
            content=content,
            style=StyleChoice(style.refs, label, style.settings),
            style_images=own_images,
            settings=settings,
            weight=weight,
            platform=source.platform,
            guild_id=source.guild_id,
            request_key=request_key,
        )
        log.info("job %d: painted again for user %d as %s", source.id, source.user_id, figure or "painting")
        return await self.jobs.submit(new)

    async def surprise(self, user_id: int, *, platform: str, rng: random.Random | None = None) -> Surprise:
        """A painting the user has not asked for yet (in any job, whatever became of it); once every
        painting was tried, any but the latest one used. Only paintings on this disk now, as the gallery
        offers: offline, or while the paintings are still being fetched, another would fail its job.
        Raises NoPaintingReadyError when none is."""
        rng = rng or random.Random()
        ready = set(self.paintings.ready())
        here = [p for p in self.catalog if p.id in ready]
        if not here:
            raise NoPaintingReadyError()
        history = await self.db.styles_used(user_id, platform=platform)
        used = [ref["preset"] for styles in history for ref in styles if ref.get("preset")]
        untried = [p for p in here if p.id not in set(used)]
        if untried:
            return Surprise(rng.choice(untried), len(untried) - 1, all_tried=False)
        others = [p for p in here if not used or p.id != used[-1]] or here
        return Surprise(rng.choice(others), 0, all_tried=True)

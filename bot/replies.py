"""Domain states rendered as texts and buttons in the user's language.

Handlers and the notifier build every reply through these functions, so one state always reads the same
on every platform. The texts are the small HTML subset of ``bot/texts`` (Discord turns it into Markdown).
"""

from __future__ import annotations

import html

from bot.db import JobState
from bot.queue.base import RESTART_REASON
from bot.services.figures import Surprise
from bot.services.jobs import LimitReachedError, Placement, QueueOverview
from bot.services.preferences import Preferences
from bot.services.refusals import Refused
from bot.services.sketches import Kept
from bot.services.stats import Period, Statistics
from bot.services.styles import MAX_STYLES, TooManyStylesError
from bot.texts import duration, text
from engine.errors import StylebotError, UnknownStyleError
from engine.protocol import Progress

ERROR_KEYS = {
    # A clip the worker could not take although its header passed (engine.clips.errors).
    "bad_clip": "error_clip_unreadable",
    "unsupported_clip": "error_clip_unreadable",
    "clip_too_long": "error_clip_unreadable",
    "clip_too_large": "error_clip_unreadable",
    "clip_too_small": "error_clip_unreadable",
    "clip_too_many_frames": "error_clip_unreadable",  # frames packed denser than a real clip's
    "clip_limit": "error_clip_unreadable",  # the limits' base class, should one come as it is
    "clip_too_big_to_send": "error_clip_too_big_to_send",
    "unsupported_image": "error_unsupported_image",
    "corrupt_image": "error_corrupt_image",
    "image_too_large": "error_image_too_large",
    "image_too_small": "error_image_too_small",
    "bad_image": "error_unsupported_image",
    "style_unavailable": "error_style_unavailable",
    "out_of_memory": "error_out_of_memory",
    "worker_lost": "error_worker_lost",
    "input_lost": "error_input_lost",
    "result_unsaved": "error_result_unsaved",
    "sketch_unavailable": "error_sketch_unavailable",
}
BAR_CELLS = 10


def refusal(language: str, err: Refused | StylebotError) -> str:
    """The one answer to anything the core refused (``bot.services.refusals.REFUSALS``), on every
    platform: a limit with its wait, an image or style the engine cannot use (with suggestions), or the
    text a ``Refused`` names, its values escaped."""
    if isinstance(err, LimitReachedError):
        return _limit(language, err)
    if isinstance(err, Refused):
        values = {k: html.escape(v) if isinstance(v, str) else v for k, v in err.values.items()}
        return text(language, err.key, **values)
    return _engine_error(language, err)


def error(language: str, code: str) -> str:
    """The friendly text for an ``engine.errors`` or queue error code; a generic apology for the rest."""
    return text(language, ERROR_KEYS.get(code, "error_internal"))


def _engine_error(language: str, err: StylebotError) -> str:
    if isinstance(err, UnknownStyleError):
        if err.suggestions:
            suggestions = ", ".join(f"<code>{html.escape(s)}</code>" for s in err.suggestions)
            return text(
                language,
                "error_unknown_style_suggest",
                style=html.escape(err.style_id),
                suggestions=suggestions,
            )
        return text(language, "error_unknown_style", style=html.escape(err.style_id))
    if isinstance(err, TooManyStylesError):
        return text(language, "error_too_many_styles", count=err.count, most=MAX_STYLES)
    return error(language, err.code)


def _limit(language: str, err: LimitReachedError) -> str:
    """Part of ``refusal``: the hourly limit says when the next picture may come."""
    if err.kind == "active":
        return text(language, "limit_active", count=err.count)
    if err.kind == "hourly":
        return text(language, "limit_hourly", count=err.count, eta=duration(language, err.retry_after))
    return text(language, "limit_queue_full")


def queued(language: str, placement: Placement | None) -> str:
    if placement is None:
        return text(language, "starting")
    if placement.eta_seconds is None:
        return text(language, "queued_unknown", position=placement.position)
    return text(
        language, "queued", position=placement.position, eta=duration(language, placement.eta_seconds)
    )


def queue_overview(language: str, overview: QueueOverview) -> str:
    """``/queue``'s answer: the queue's size, then each of the user's jobs with its place or progress."""
    if not overview.waiting and not overview.running:
        return text(language, "queue_empty")
    lines = [text(language, "queue_summary", waiting=overview.waiting, running=overview.running)]
    mine = []
    for job, placement in overview.mine:
        style = html.escape(job.style_label)
        if placement is not None:
            mine.append(text(language, "queue_line_queued", style=style, position=placement.position))
        else:
            percent = round((job.progress or 0) * 100)
            mine.append(text(language, "queue_line_running", style=style, percent=percent))
    if mine:
        lines.append(text(language, "queue_yours", lines="\n".join(mine)))
    return "\n\n".join(lines)


def color_choice(language: str, choice: str) -> str:
    """A colour mode's name ("none" keeps the painting's colours)."""
    return text(language, "colors_painting" if choice == "none" else f"colors_{choice}")


KEPT_KEYS = {
    Kept.KEPT: "sketch_kept",
    Kept.RUNNING: "already_painting",
    Kept.ENDED: "button_expired",
    Kept.NO_SKETCH: "button_expired",
    Kept.NOT_YOURS: "not_your_job",
}


def kept(language: str, outcome: Kept) -> str:
    """The answer to "Keep the sketch", the same on every platform."""
    return text(language, KEPT_KEYS[outcome])


def settings_summary(language: str, prefs: Preferences, *, sketches: bool = True) -> str:
    """What ``/settings`` says above its buttons or menus, on every platform; ``sketches``: whether the
    operator offers the sketch at all (``SKETCH_PREVIEW``), else it reads as off for everyone."""
    sketch = "preview_on" if prefs.sketch else "preview_off"
    return text(
        language,
        "settings_title",
        quality=text(language, f"quality_{prefs.quality or 'normal'}"),
        strength=text(language, f"strength_{prefs.strength_name()}"),
        colors=color_choice(language, prefs.preserve_colors or "none"),
        result=text(language, f"result_{prefs.result_as}"),
        preview=text(language, "preview_on" if prefs.live_preview else "preview_off"),
        sketch=text(language, sketch if sketches else "preview_off_for_all"),
    )


def running(language: str, style: str, progress: Progress, *, frames: bool = False) -> str:
    """A running job's status; ``frames``: a clip, whose steps are its frames (frame 3 of 24)."""
    filled = round(progress.fraction * BAR_CELLS)
    eta = ""
    if progress.eta is not None and progress.fraction < 1:
        eta = text(language, "running_eta", eta=duration(language, progress.eta))
    if frames:
        return text(
            language,
            "running_frames",
            style=html.escape(style),
            bar="▰" * filled + "▱" * (BAR_CELLS - filled),
            done=progress.step,
            total=progress.total_steps,
            eta=eta,
        )
    return text(
        language,
        "running",
        style=html.escape(style),
        bar="▰" * filled + "▱" * (BAR_CELLS - filled),
        percent=round(progress.fraction * 100),
        eta=eta,
    )


def retrying(language: str, reason: str) -> str:
    return text(language, "retrying_restart" if reason == RESTART_REASON else "retrying_worker")


def result_caption(language: str, style: str, seconds: float | None, notes: tuple[str, ...] = ()) -> str:
    took = duration(language, seconds) if seconds is not None else "—"
    if notes:
        return text(
            language,
            "result_caption_notes",
            style=html.escape(style),
            seconds=took,
            notes=html.escape("; ".join(notes)),
        )
    return text(language, "result_caption", style=html.escape(style), seconds=took)


def surprise(language: str, pick: Surprise) -> str:
    title = html.escape(pick.painting.label)
    if pick.all_tried:
        return text(language, "surprise_all_tried", title=title)
    return text(language, "surprise_picked", title=title, left=pick.untried_left)


def statistics(language: str, stats: Statistics) -> str:
    """The admins' statistics (``/stats``, ``/admin stats``), the same on every platform."""

    def jobs(period: Period) -> str:
        return text(
            language,
            "stats_jobs",
            done=period.count(JobState.DONE),
            failed=period.count(JobState.FAILED),
            cancelled=period.count(JobState.CANCELLED),
            active=period.count(*JobState.ACTIVE),
        )

    def wait(period: Period) -> str:
        if period.median_wait is None:
            return text(language, "stats_no_wait")
        return duration(language, period.median_wait)

    return text(
        language,
        "stats",
        today=jobs(stats.today),
        week=jobs(stats.week),
        queued=stats.queued,
        running=stats.running,
        busy=stats.busy,
        workers=stats.workers,
        health="" if stats.healthy else text(language, "stats_unhealthy"),
        wait_today=wait(stats.today),
        wait_week=wait(stats.week),
        given_up_today=stats.today.given_up,
        given_up_week=stats.week.given_up,
        blocked=stats.blocked,
    )

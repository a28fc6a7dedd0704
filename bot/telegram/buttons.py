"""The inline buttons under a job's status and under its result."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.db import JobRecord
from bot.services.sharing import style_payload
from bot.texts import text
from engine.protocol import FIGURES


def cancel(language: str, job_id: int, *, keep: bool = False) -> InlineKeyboardMarkup:
    """Under an active job's status: Cancel, and "Keep the sketch" while the sketch is offered."""
    row = [InlineKeyboardButton(text(language, "cancel_button"), callback_data=f"cancel:{job_id}")]
    if keep:
        row.insert(0, InlineKeyboardButton(text(language, "keep_button"), callback_data=f"keep:{job_id}"))
    return InlineKeyboardMarkup([row])


def share_url(bot_username: str, payload: str) -> str:
    """A deep link: opens a private chat with the bot, which gets ``/start <payload>``."""
    return f"https://t.me/{bot_username}?start={payload}"


def share(language: str, job: JobRecord, bot_username: str | None) -> InlineKeyboardButton | None:
    """ "Share this style": a link anyone may open, for a job painted with catalog paintings only."""
    payload = style_payload(job)
    if payload is None or not bot_username:
        return None
    return InlineKeyboardButton(text(language, "share_button"), url=share_url(bot_username, payload))


def result(
    language: str, job: JobRecord, *, full_resolution: bool, bot_username: str | None = None
) -> InlineKeyboardMarkup:
    """Under a result: the lossless file (for photos), another style, Delete, under a painting its figures,
    and (given the bot's username) "Share this style" when the style is catalog paintings only.

    Every callback button names the job; the handlers check who presses it (its owner; for Delete, the
    chat's moderators too). Under a clip only Delete and the link: another style and the figures paint
    photos.
    """
    if job.kind == "clip":
        delete = InlineKeyboardButton(text(language, "delete_button"), callback_data=f"del:{job.id}")
        link = share(language, job, bot_username)
        return InlineKeyboardMarkup([[delete]] + ([[link]] if link is not None else []))
    first = [InlineKeyboardButton(text(language, "again_button"), callback_data=f"again:{job.id}")]
    if full_resolution:
        full = InlineKeyboardButton(text(language, "full_resolution"), callback_data=f"full:{job.id}")
        first.insert(0, full)
    # Delete: the owner, or the group's administrators who may delete messages (handlers/admin.py)
    first.append(InlineKeyboardButton(text(language, "delete_button"), callback_data=f"del:{job.id}"))
    rows = [first]
    if not job.settings.get("figure"):
        rows.append(
            [
                InlineKeyboardButton(text(language, f"{kind}_button"), callback_data=f"fig:{kind}:{job.id}")
                for kind in FIGURES
            ]
        )
    link = share(language, job, bot_username)
    if link is not None:
        rows.append([link])
    return InlineKeyboardMarkup(rows)

"""Pictures users attach: checked from the payload before anything is deferred (type, size, pixels, the
core's rule in ``bot.services.uploads``), then downloaded from the URL Discord gives; and the bot's own
pictures, fitted to what Discord lets it upload."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import discord
from PIL import Image

from bot.discord.common import core_of
from bot.services.clips import CLIP_MIME_TYPES
from bot.services.refusals import Refused
from bot.services.results import RESULT_SUFFIXES
from bot.services.uploads import DOWNLOAD_FAILED, check_size, check_upload, looks_like_image

log = logging.getLogger(__name__)


def is_clip(attachment: discord.Attachment) -> bool:
    """A GIF, MP4 or WebM by its content type (or its name, when Discord gives none)."""
    content_type = (attachment.content_type or "").split(";")[0].strip().lower()
    if content_type:
        return content_type in CLIP_MIME_TYPES
    return attachment.filename.lower().endswith(tuple(CLIP_MIME_TYPES.values()))


async def download_clip(attachment: discord.Attachment) -> bytes:
    """A clip's bytes, within the size the bot downloads (its header is the core's to read)."""
    check_size(attachment.size)
    return await _read(attachment)


def is_animated(data: bytes) -> bool:
    """A GIF of more than one frame (a still GIF is a picture; an unreadable one is the core's to refuse)."""
    try:
        with Image.open(io.BytesIO(data)) as opened:
            return getattr(opened, "n_frames", 1) > 1
    except Exception:  # PIL raises many kinds on a broken file
        return False


def is_image(attachment: discord.Attachment) -> bool:
    return looks_like_image(attachment.content_type, attachment.filename)


def image_of(message: discord.Message) -> discord.Attachment | None:
    """The first picture attached to ``message``, if any."""
    return next((a for a in message.attachments if is_image(a)), None)


def precheck(interaction: discord.Interaction, *attachments: discord.Attachment | None) -> None:
    """Refuse what the payload already tells (type, size, pixels), so the answer needs no deferral."""
    limit = core_of(interaction).settings.max_image_pixels
    for attachment in attachments:
        if attachment is not None:
            check_upload(
                mime_type=attachment.content_type,
                file_name=attachment.filename,
                size=attachment.size,
                width=attachment.width,
                height=attachment.height,
                max_pixels=limit,
            )


async def download(interaction: discord.Interaction, attachment: discord.Attachment) -> bytes:
    """The attachment's bytes (checked as ``precheck`` does first; the header is the core's to probe)."""
    precheck(interaction, attachment)
    return await _read(attachment)


async def _read(attachment: discord.Attachment) -> bytes:
    """The attachment from Discord's CDN; a failure is the core's "could not download" refusal."""
    try:
        return await attachment.read()
    except discord.HTTPException as err:
        log.warning("download of attachment %d failed: %s", attachment.id, err)
        raise Refused(DOWNLOAD_FAILED) from err


def fit_upload(path: Path, limit: int) -> tuple[bytes, str]:
    """The result as it is when it fits the upload limit, else re-encoded as JPEG (then smaller) until it
    does. A clip (MP4 or GIF) goes as it is: its worker encoded it under Discord's limit already."""
    data = path.read_bytes()
    if len(data) <= limit or path.suffix.lstrip(".") in RESULT_SUFFIXES["clip"]:
        return data, f"stylebot{path.suffix}"
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    scale = 1.0
    while True:
        for quality in (90, 80, 70):
            sized = (
                image
                if scale == 1.0
                else image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))
            )
            out = io.BytesIO()
            sized.save(out, "JPEG", quality=quality)
            if out.tell() <= limit:
                return out.getvalue(), "stylebot.jpg"
        scale *= 0.8

"""Starting a job from a request, the same on every platform: the front end hands over the picture and
what was asked; everything else is decided here.

The style (or the group's default), the stored personal styles it names, the settings layer over layer
(``preferences.job_settings``), a figure's settings and weight, the label in the user's language, then
``JobService.submit`` (limits with the admins' exemption, image checks, the queue). Every refusal is one
of ``bot.services.refusals.REFUSALS``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bot.db import JobRecord
from bot.services.figures import as_figure, figure_label
from bot.services.jobs import JobService, NewJob, Placement
from bot.services.presets import PresetService
from bot.services.refusals import NeedsStyleError, Refused
from bot.services.style_images import StyleImageService
from bot.services.styles import StyleChoice
from bot.services.uploads import DOWNLOAD_FAILED
from bot.texts import language_for, text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipPlan:
    """A clip's job (``bot.services.clips``): the worker's order and the weight its header gave."""

    order: dict[str, Any]  # engine.workers.clips.ClipOrder.to_dict()
    weight: float


@dataclass(frozen=True)
class PaintRequest:
    """What a user asked for, in the platform's own ids."""

    platform: str
    user_id: int
    chat_id: int
    chat_type: str  # "private", or the platform's kind of group ("group", "supergroup", "guild")
    group_id: int | None  # whose default style and settings apply: a group's chat id, a Discord server
    # (a chat inside a group, as a Discord channel in its server, is stored with the group's id too)
    language: str | None  # the user's language code as the platform gives it
    source_message_id: int  # what the result replies to
    content: bytes
    style: StyleChoice | None  # None: the group's default style
    style_images: tuple[bytes, ...] = ()  # the request's own style pictures (refs without "stored")
    overrides: dict[str, Any] = field(default_factory=dict)  # settings chosen with this request
    figure: str | None = None  # one of engine.figures' figures instead of one painting
    # The platform's download of a file id the style names (Telegram's own images, in a preset or the
    # group's default, are kept as file ids): whichever style is chosen here, its images come in.
    fetch_file: Callable[[str], Awaitable[bytes]] | None = None
    clip: ClipPlan | None = None  # ``content`` is a GIF or video (``ClipService.start`` sets it)
    # What asked for the job on the platform (``NewJob.request_key``): the message or the button press
    # itself, not the photo it names ("another style" paints the same photo again). A job made for it
    # already means the platform repeated the request: ``start`` raises ``RepeatedRequest``.
    request_key: str | None = None


class PaintService:
    def __init__(
        self,
        jobs: JobService,
        presets: PresetService,
        style_images: StyleImageService,
        *,
        default_quality: str,
    ) -> None:
        self.jobs = jobs
        self.presets = presets
        self.style_images = style_images
        self.default_quality = default_quality

    async def start(self, request: PaintRequest) -> tuple[JobRecord, Placement | None]:
        """Queue the job the request asks for; its placement (None: it starts at once). Raises
        NeedsStyleError when nothing is named and the group has no default, RepeatedRequest for a request
        that made its job already (``request_key``; asked before any download), and what
        ``JobService.submit`` raises."""
        await self.jobs.check_new(request.platform, request.request_key)
        language = language_for(request.language)
        choice = request.style
        if choice is None and request.group_id is not None:
            own = text(language, "preset_own_image")
            choice, _ = await self.presets.chat_default(request.group_id, own, platform=request.platform)
        if choice is None:
            raise NeedsStyleError()
        style_images = request.style_images
        if choice.image_file_ids and request.fetch_file is not None:
            style_images += tuple([await request.fetch_file(file_id) for file_id in choice.image_file_ids])
        for image_id in choice.stored_image_ids:
            stored = await self.style_images.get(request.user_id, image_id, platform=request.platform)
            assert stored.data is not None  # ``get`` refuses an image without its bytes
            style_images += (stored.data,)
        if len(style_images) != sum("image" in ref for ref in choice.refs):
            # A job whose images are not all here could only fail later as input_lost, after its wait.
            who = f"{request.platform} user {request.user_id}"
            log.error("%s: the style names images that did not all come in", who)
            raise Refused(DOWNLOAD_FAILED)
        settings = await self.presets.settings_for(
            request.user_id,
            platform=request.platform,
            group_id=request.group_id,
            preset={**choice.settings, **request.overrides},
            default_quality=self.default_quality,
        )
        settings, weight = as_figure(settings, request.figure)
        if request.clip is not None:
            weight = request.clip.weight
        label = figure_label(language, request.figure, choice.label)
        return await self.jobs.submit(
            NewJob(
                user_id=request.user_id,
                chat_id=request.chat_id,
                chat_type=request.chat_type,
                language=request.language,
                source_message_id=request.source_message_id,
                content=request.content,
                style=StyleChoice(choice.refs, label, choice.settings),
                style_images=style_images,
                settings=settings,
                weight=weight,
                platform=request.platform,
                guild_id=request.group_id if request.group_id != request.chat_id else None,
                clip=None if request.clip is None else request.clip.order,
                request_key=request.request_key,
            )
        )

"""Starting a job from an interaction, for every command that paints (``/paint``, the figures, presets,
"Paint this", Surprise, the buttons under a result): defer, hand the core the request, and make the
interaction's response the job's status, with its Cancel button.

Discord failing on the way is handled here too (``bot.discord.failures``): an interaction Discord refuses to
defer starts nothing (the user sees Discord's "did not respond" and may ask again), one whose deferral got
no answer goes on (Discord may have it), and a job whose status could not be put up still runs and is still
delivered."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import discord

from bot import replies
from bot.db import JobRecord
from bot.discord.attachments import download, download_clip, is_animated, is_image
from bot.discord.common import (
    client_of,
    core_of,
    expired,
    lang,
    mark_deferred,
    mark_expired,
    refusal,
    refuse,
    remember,
    responded,
    say,
)
from bot.discord.failures import FAILURES, UNKNOWN_INTERACTION, describe, unknown_outcome, worth_retrying
from bot.discord.markdown import markdown
from bot.discord.messages import tell
from bot.discord.queue import cancel_view
from bot.frontend import DISCORD
from bot.retrying import retried
from bot.services.clips import ClipFormat
from bot.services.jobs import Placement
from bot.services.paint import PaintRequest
from bot.services.refusals import REFUSALS, NeedsStyleError
from bot.services.styles import StyleChoice
from bot.texts import text

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AsClip:
    """A moving picture given to a command that paints pictures (``/paint``, "Paint this"): painted as
    ``/clip`` paints it (``ClipService.start``), in ``quality`` (None: the clip's default) and ``output``,
    with the request's style and settings. A GIF of one frame stays a picture."""

    output: ClipFormat
    quality: str | None = None


async def start_job(
    interaction: discord.Interaction,
    content: discord.Attachment,
    choice: StyleChoice | None,
    *,
    style_image: discord.Attachment | None = None,
    overrides: dict | None = None,
    figure: str | None = None,
    as_clip: AsClip | None = None,
) -> JobRecord | None:
    """Download and queue (``PaintService.start``: the style or the server's default, settings, limits);
    the interaction's response becomes the job's status. ``style_image``: a picture whose style to use
    instead of ``choice``; ``as_clip``: a GIF or video in ``content`` is painted as a clip. The job, or
    None after a refusal (told privately)."""
    if not await begin(interaction):
        return None
    video = as_clip is not None and not is_image(content)
    try:
        if video:  # moderation before the download, as /clip does: a blocked person's video costs nothing
            await core_of(interaction).jobs.check_admitted(
                DISCORD, interaction.user.id, group=interaction.guild_id
            )
        content_bytes = await (download_clip(content) if video else download(interaction, content))
        style_bytes: tuple[bytes, ...] = ()
        if style_image is not None:
            style_bytes = (await download(interaction, style_image),)
            choice = StyleChoice(
                refs=({"image": 0, "weight": 1.0},), label=text(lang(interaction), "preset_own_image")
            )
        request = paint_request(
            interaction, content_bytes, choice, style_images=style_bytes, overrides=overrides, figure=figure
        )
        if as_clip is not None and (video or await asyncio.to_thread(is_animated, content_bytes)):
            job, placement = await core_of(interaction).clips.start(request, as_clip.output, as_clip.quality)
        else:
            job, placement = await core_of(interaction).paint.start(request)
    except NeedsStyleError:
        await refuse(interaction, say(interaction, "discord_needs_style"))
        return None
    except REFUSALS as err:
        log.info("discord user %d: refused: %s", interaction.user.id, err)
        await refuse(interaction, refusal(interaction, err))
        return None
    await show_queued(interaction, job, placement)
    return job


def paint_request(
    interaction: discord.Interaction,
    content: bytes,
    choice: StyleChoice | None,
    *,
    style_images: tuple[bytes, ...] = (),
    overrides: dict[str, Any] | None = None,
    figure: str | None = None,
) -> PaintRequest:
    """What an interaction asks the core for, the one place that says where a Discord job belongs: its
    channel (a DM: the user), a server's channel "guild" with the server as its group (whose default
    style, settings and switch apply), a DM "private"."""
    guild_id = interaction.guild_id
    return PaintRequest(
        platform=DISCORD,
        user_id=interaction.user.id,
        chat_id=interaction.channel_id or interaction.user.id,
        chat_type="guild" if guild_id is not None else "private",
        group_id=guild_id,
        language=str(interaction.locale),
        source_message_id=interaction.id,
        content=content,
        style=choice,
        style_images=style_images,
        overrides=overrides or {},
        figure=figure,
    )


async def begin(interaction: discord.Interaction) -> bool:
    """Defer the interaction (Discord's 3 seconds) and keep the user's row current; False when Discord
    refused the deferral, so that nothing starts (the user may ask again). An interaction that expired
    before its deferral arrived (Unknown Interaction) is painted all the same: the photo is here."""
    if not responded(interaction):
        try:
            await interaction.response.defer(thinking=True)
        except FAILURES as err:  # its 3 seconds leave no time to try again
            who = interaction.user.id
            if isinstance(err, discord.HTTPException) and err.code == UNKNOWN_INTERACTION:
                # Discord dropped the interaction: its 3 seconds ran out while the deferral was on its way
                # (a rate limit, a retried 5xx). The user saw "did not respond", but the photo is here: it is
                # painted all the same, and its result comes as a channel message (or a DM).
                log.warning(
                    "discord user %d: the interaction expired before its deferral (%s); painting it all the "
                    "same",
                    who,
                    describe(err),
                )
                mark_expired(interaction)
            elif not unknown_outcome(err):  # Discord said no: nothing starts, the user may ask again
                log.warning("discord user %d: the request could not be answered: %s", who, describe(err))
                return False
            else:
                # No answer: Discord may well have it. The job starts; without it, the painting still comes.
                log.warning("discord user %d: no answer to the deferral (%s); going on", who, describe(err))
                mark_deferred(interaction)  # answers from now on go through the token, not a first response
    await remember(interaction)
    return True


async def show_queued(interaction: discord.Interaction, job: JobRecord, placement: Placement | None) -> None:
    """The interaction's (deferred) response becomes the new job's status, with its Cancel button; from
    now on the front end edits it through the interaction's token."""
    client = client_of(interaction)
    content = markdown(replies.queued(lang(interaction), placement))
    try:
        response = await retried(
            lambda: interaction.edit_original_response(content=content, view=cancel_view(job)),
            passing=worth_retrying,
            describe=describe,
            what=f"job {job.id}: status",
        )
    except FAILURES as err:  # the job runs all the same; its token edits the response when it can
        log.warning("job %d: its status could not be put up: %s", job.id, describe(err))
        if expired(interaction):  # the user saw "did not respond": say in the channel that it paints
            await tell(client, job, say(interaction, "discord_expired_painting"))
        current = await client.core.jobs.job(job.id)
    else:
        current = await client.core.jobs.record_status(job.id, response.id)
    if current is None:
        return
    if current.is_active:
        await client.frontend.opened(current, interaction)
    else:  # it ended before its status was up: the user has heard already; the response says so too
        await client.frontend.remove_status(current)

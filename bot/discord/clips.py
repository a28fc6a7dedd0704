"""``/clip``: a GIF, MP4 or WebM attachment painted frame by frame (issue 21).

What the payload already shows (not a clip, a file over what the bot downloads, an unknown style) is
refused ephemerally before anything is deferred; then the interaction is deferred, the attachment
downloaded and ``ClipService.start`` called (the header read, the limits, one job), and the response
becomes the job's status as for ``/paint`` (``jobs.show_queued``). The result comes back through the
front end's ``deliver`` as an attachment: an MP4 (or a GIF when asked) under Discord's 10 MB.
"""

from __future__ import annotations

import logging

import discord
from discord import app_commands

from bot.discord.attachments import download_clip, is_clip
from bot.discord.common import core_of, refusal, refuse, say
from bot.discord.jobs import begin, paint_request, show_queued
from bot.discord.styles import choose, style_choices
from bot.frontend import DISCORD
from bot.services.clips import GIF, INSTANT, MP4, PAINTED, ClipFormat
from bot.services.refusals import REFUSALS, NeedsStyleError
from bot.services.uploads import check_size

log = logging.getLogger(__name__)

DISCORD_UPLOAD = 10 * 2**20  # what Discord lets a bot upload without a server's boosts
QUALITY = [app_commands.Choice(name=q, value=q) for q in (INSTANT, PAINTED)]
FORMAT = [app_commands.Choice(name=f, value=f) for f in (MP4, GIF)]


@app_commands.command(name="clip", description="Paint a GIF or a short video in the style of a painting")
@app_commands.describe(
    clip="the GIF, MP4 or WebM to paint",
    style="a painting, one of your presets or personal styles",
    quality="instant (seconds) or painted (slower, shorter clips)",
    format="what comes back: mp4 (the default) or gif",
)
@app_commands.autocomplete(style=style_choices)
@app_commands.choices(quality=QUALITY, format=FORMAT)
async def clip_command(
    interaction: discord.Interaction,
    clip: discord.Attachment,
    style: str | None = None,
    quality: app_commands.Choice[str] | None = None,
    format: app_commands.Choice[str] | None = None,  # the option's name on Discord
) -> None:
    try:
        if not is_clip(clip):
            await refuse(interaction, say(interaction, "clip_unsupported"))
            return
        check_size(clip.size)
        choice = await choose(interaction, style) if style else None
    except REFUSALS as err:
        await refuse(interaction, refusal(interaction, err))
        return
    if not await begin(interaction):
        return
    output = ClipFormat(format.value if format is not None else MP4, DISCORD_UPLOAD)
    try:
        # Moderation before the download: a blocked person's clip (a switched-off server's) costs nothing.
        core = core_of(interaction)
        await core.jobs.check_admitted(DISCORD, interaction.user.id, group=interaction.guild_id)
        data = await download_clip(clip)
        asked = quality.value if quality is not None else None
        job, placement = await core.clips.start(paint_request(interaction, data, choice), output, asked)
    except NeedsStyleError:
        await refuse(interaction, say(interaction, "discord_needs_style"))
        return
    except REFUSALS as err:
        log.info("discord user %d: clip refused: %s", interaction.user.id, err)
        await refuse(interaction, refusal(interaction, err))
        return
    await show_queued(interaction, job, placement)

"""Slash and context-menu commands. Thin: parse, call the core's services, answer (ephemeral when wrong).

Every command defers within Discord's 3 seconds before anything slow (a download, the database)."""

from __future__ import annotations

import asyncio
import contextlib
import html
import io
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import discord
from discord import app_commands

from bot import replies
from bot.db import JobRecord
from bot.discord.markdown import markdown
from bot.frontend import DISCORD
from bot.services import styles
from bot.services.figures import RepaintRefusedError, as_figure
from bot.services.jobs import MAX_DOWNLOAD_BYTES, LimitReachedError, NewJob, Placement, looks_like_image
from bot.services.preferences import COLOR_CHOICES, STRENGTHS, Preferences
from bot.services.presets import PresetError
from bot.services.sketches import Kept
from bot.services.styles import StyleChoice
from bot.texts import language_for, text
from engine.errors import StylebotError
from engine.protocol import QUALITIES

if TYPE_CHECKING:
    from bot.discord.app import StylebotClient

log = logging.getLogger(__name__)

MAX_CHOICES = 25  # Discord's limit for autocomplete
MAX_PERSONAL_STYLES = 10  # "Use as my style" keeps a user's newest ten (each stored whole)
MESSAGE_LIMIT = 2000  # characters in one message's content
MINE = "mine:"  # autocomplete value of a personal style: mine:<id>


class Refusal(Exception):
    """A bad input: the text (already in the user's language) goes back ephemerally."""


def client_of(interaction: discord.Interaction) -> StylebotClient:
    return interaction.client  # type: ignore[return-value]


def lang(interaction: discord.Interaction) -> str:
    return language_for(str(interaction.locale))


def say(interaction: discord.Interaction, key: str, **values: object) -> str:
    return markdown(text(lang(interaction), key, **values))


async def track(interaction: discord.Interaction) -> None:
    user = interaction.user
    await client_of(interaction).core.db.upsert_user(
        user.id, user.name, user.display_name, str(interaction.locale), platform=DISCORD
    )


def _fitting(message: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """A long answer as messages within Discord's limit, cut between lines (a line too long for one
    message is cut where the limit falls)."""
    parts: list[str] = []
    current = ""
    for line in message.split("\n"):
        for piece in [line[i : i + limit] for i in range(0, max(len(line), 1), limit)]:
            candidate = f"{current}\n{piece}" if current else piece
            if len(candidate) > limit:
                parts.append(current)
                candidate = piece
            current = candidate
    return [*parts, current] if current else parts


async def answer(interaction: discord.Interaction, message: str) -> None:
    """An ephemeral answer, whether or not the interaction was deferred."""
    if interaction.response.is_done():
        await interaction.followup.send(message, ephemeral=True)
    else:
        await interaction.response.send_message(message, ephemeral=True)


# -- images ---------------------------------------------------------------------------------------


def is_image(attachment: discord.Attachment) -> bool:
    return looks_like_image(attachment.content_type, attachment.filename)


async def download(interaction: discord.Interaction, attachment: discord.Attachment) -> bytes:
    """The attachment's bytes from the URL in the payload; the size is checked before, the pixels by the
    job service's header probe after."""
    if not is_image(attachment):
        raise Refusal(say(interaction, "error_not_an_image_file"))
    if attachment.size > MAX_DOWNLOAD_BYTES:
        raise Refusal(say(interaction, "error_file_too_big", size=round(attachment.size / 2**20)))
    try:
        return await attachment.read()
    except discord.HTTPException as err:
        log.warning("download of attachment %d failed: %s", attachment.id, err)
        raise Refusal(say(interaction, "error_download_failed")) from err


def image_of(message: discord.Message) -> discord.Attachment | None:
    return next((a for a in message.attachments if is_image(a)), None)


# -- styles ---------------------------------------------------------------------------------------


async def choose(interaction: discord.Interaction, value: str) -> StyleChoice:
    """A style from autocomplete (or typed): a personal style ``mine:ID``, a preset, painting ids."""
    core = client_of(interaction).core
    if mine := re.fullmatch(rf"{MINE}([0-9]{{1,18}})", value):
        image = await core.db.get_style_image(DISCORD, interaction.user.id, int(mine[1]))
        if image is None:
            raise Refusal(say(interaction, "button_expired"))
        return styles.stored_image(image.id, image.name)
    presets = await core.presets.list(interaction.user.id, platform=DISCORD)
    try:
        return styles.parse(value, core.catalog, presets)
    except StylebotError as err:
        raise Refusal(markdown(replies.engine_error(lang(interaction), err))) from None


async def style_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
    """The catalog, the user's presets and personal styles; best matches first, at most 25."""
    core = client_of(interaction).core
    typed = current.strip().casefold()
    options: list[tuple[str, str]] = []
    for image in await core.db.list_style_images(DISCORD, interaction.user.id):
        options.append((f"🖼 {image.name}", f"{MINE}{image.id}"))
    for preset in await core.presets.list(interaction.user.id, platform=DISCORD):
        options.append((f"★ {preset.name}", preset.name))
    for painting in core.catalog:
        options.append((f"{painting.title} ({painting.artist})", painting.id))

    def rank(item: tuple[int, tuple[str, str]]) -> tuple[int, int]:
        """A prefix match before a match inside; among equals the user's own styles, then presets, then
        the catalog (the order ``options`` is built in)."""
        position, (name, value) = item
        name, value = name.casefold(), value.casefold()
        if not typed or value.startswith(typed) or name.lstrip("🖼★ ").startswith(typed):
            return 0, position
        if typed in name or typed in value:
            return 1, position
        return 2, position

    ranked = [option for _, option in sorted((i for i in enumerate(options) if rank(i)[0] < 2), key=rank)]
    return [app_commands.Choice(name=name[:100], value=value) for name, value in ranked[:MAX_CHOICES]]


# -- painting -------------------------------------------------------------------------------------


async def start_job(
    interaction: discord.Interaction,
    content: discord.Attachment,
    choice: StyleChoice | None,
    *,
    style_image: discord.Attachment | None = None,
    overrides: dict | None = None,
    figure: str | None = None,
) -> JobRecord | None:
    """Download, validate and queue; the interaction's response becomes the job's status. ``figure``:
    one of ``engine.figures``' figures instead of one painting. The job, or None after a refusal."""
    client = client_of(interaction)
    core = client.core
    owner = interaction.user.id
    guild_id = interaction.guild_id
    if not interaction.response.is_done():
        await interaction.response.defer(thinking=True)
    await track(interaction)
    try:
        content_bytes = await download(interaction, content)
        style_bytes: tuple[bytes, ...] = ()
        if style_image is not None:
            style_bytes = (await download(interaction, style_image),)
            choice = StyleChoice(
                refs=({"image": 0, "weight": 1.0},), label=say(interaction, "preset_own_image")
            )
        if choice is None and guild_id is not None:
            choice, _ = await core.presets.chat_default(
                guild_id, say(interaction, "preset_own_image"), platform=DISCORD
            )
        if choice is None:
            raise Refusal(say(interaction, "discord_needs_style"))
        for image_id in choice.stored_image_ids:
            stored = await core.db.get_style_image(DISCORD, owner, image_id)
            if stored is None or stored.data is None:
                raise Refusal(say(interaction, "button_expired"))
            style_bytes += (stored.data,)
        settings = await core.presets.settings_for(
            owner,
            platform=DISCORD,
            group_id=guild_id,
            preset={**choice.settings, **(overrides or {})},
            default_quality=core.settings.default_quality,
        )
        settings, weight = as_figure(settings, figure)
        label = replies.figure_label(lang(interaction), figure, choice.label)
        new = NewJob(
            user_id=owner,
            chat_id=interaction.channel_id or owner,
            chat_type="guild" if guild_id is not None else "private",
            language=str(interaction.locale),
            source_message_id=interaction.id,
            content=content_bytes,
            style=StyleChoice(choice.refs, label, choice.settings),
            style_images=style_bytes,
            settings=settings,
            weight=weight,
            platform=DISCORD,
            guild_id=guild_id,
        )
        job, placement = await core.jobs.submit(new)
    except Refusal as refusal:
        await refuse(interaction, str(refusal))
        return None
    except LimitReachedError as err:
        await refuse(interaction, markdown(replies.limit(lang(interaction), err)))
        return None
    except StylebotError as err:
        log.info("discord user %d: refused input: %s", owner, err)
        await refuse(interaction, markdown(replies.engine_error(lang(interaction), err)))
        return None
    await show_queued(interaction, job, placement)
    return job


async def show_queued(interaction: discord.Interaction, job: JobRecord, placement: Placement | None) -> None:
    """The interaction's (deferred) response becomes the new job's status, with its Cancel button."""
    from bot.discord.frontend import cancel_view

    client = client_of(interaction)
    core = client.core
    response = await interaction.edit_original_response(
        content=markdown(replies.queued(lang(interaction), placement)), view=cancel_view(job)
    )
    await core.db.set_status_message(job.id, response.id)
    current = await core.db.get_job(job.id)
    if current is None:
        return
    if current.is_active:
        client.frontend.opened(current, interaction)
    else:  # it ended before its status was up: the user has heard already; the response says so too
        await client.frontend.remove_status(current)


async def refuse(interaction: discord.Interaction, message: str) -> None:
    """An ephemeral answer. After a public deferral (what only the download shows: a corrupt picture,
    too many pixels, a limit reached meanwhile), the public "thinking" response is first completed (while
    it loads, a followup would only edit it, public), then the refusal follows ephemerally and the public
    response is deleted: only the user sees why."""
    if not interaction.response.is_done():
        await answer(interaction, message)
        return
    with contextlib.suppress(discord.HTTPException):
        await interaction.edit_original_response(content="…", view=None)
    try:
        await interaction.followup.send(message, ephemeral=True)
    finally:
        with contextlib.suppress(discord.HTTPException):
            await interaction.delete_original_response()


def precheck(interaction: discord.Interaction, *attachments: discord.Attachment | None) -> None:
    """What the payload already tells (type, size, pixels), answered before deferring."""
    limit = client_of(interaction).core.settings.max_image_pixels
    for attachment in attachments:
        if attachment is None:
            continue
        if not is_image(attachment):
            raise Refusal(say(interaction, "error_not_an_image_file"))
        if attachment.size > MAX_DOWNLOAD_BYTES:
            raise Refusal(say(interaction, "error_file_too_big", size=round(attachment.size / 2**20)))
        if attachment.width and attachment.height and attachment.width * attachment.height > limit:
            raise Refusal(say(interaction, "error_image_too_large"))


# -- commands -------------------------------------------------------------------------------------


QUALITY = [app_commands.Choice(name=q, value=q) for q in QUALITIES]
STRENGTH = [app_commands.Choice(name=s, value=s) for s in STRENGTHS]
COLORS = [app_commands.Choice(name=c, value=c) for c in COLOR_CHOICES]


@app_commands.command(name="paint", description="Paint a picture in the style of a painting")
@app_commands.describe(
    image="the picture to paint",
    style="a painting, one of your presets or personal styles",
    style_image="or a second picture whose style to use",
)
@app_commands.autocomplete(style=style_choices)
@app_commands.choices(quality=QUALITY, strength=STRENGTH, preserve_colors=COLORS)
async def paint(
    interaction: discord.Interaction,
    image: discord.Attachment,
    style: str | None = None,
    style_image: discord.Attachment | None = None,
    strength: app_commands.Choice[str] | None = None,
    quality: app_commands.Choice[str] | None = None,
    preserve_colors: app_commands.Choice[str] | None = None,
) -> None:
    overrides: dict = {}
    if strength is not None:
        overrides["strength"] = STRENGTHS[strength.value]
    if quality is not None:
        overrides["quality"] = quality.value
    if preserve_colors is not None:
        overrides["preserve_colors"] = preserve_colors.value
    try:
        precheck(interaction, image, style_image)
        choice = await choose(interaction, style) if style and style_image is None else None
        if choice is None and style_image is None:
            guild_default = None
            if interaction.guild_id is not None:
                core = client_of(interaction).core
                guild_default, _ = await core.presets.chat_default(interaction.guild_id, "", platform=DISCORD)
            if guild_default is None:
                raise Refusal(say(interaction, "discord_needs_style"))
    except Refusal as refusal:
        await refuse(interaction, str(refusal))
        return
    await start_job(interaction, image, choice, style_image=style_image, overrides=overrides)


@app_commands.command(name="styles", description="The paintings I can paint in")
async def styles_command(interaction: discord.Interaction) -> None:
    await interaction.response.defer(ephemeral=True)
    paintings = client_of(interaction).core.paintings
    lines = [f"`{p.id}`: {p.title}, {p.artist} ({p.year})" for p in paintings.store.catalog]
    sheet = await paintings.overview()
    files = [discord.File(io.BytesIO(sheet.picture), "styles.jpg")] if sheet else []
    body = "\n".join(lines)
    await interaction.followup.send(body[:MESSAGE_LIMIT], files=files, ephemeral=True)


preset = app_commands.Group(name="preset", description="Save and use your styles")


@preset.command(name="save", description="Save a style (and your current settings) under a name")
@app_commands.autocomplete(style=style_choices)
async def preset_save(interaction: discord.Interaction, name: str, style: str | None = None) -> None:
    await interaction.response.defer(ephemeral=True)
    await track(interaction)
    core = client_of(interaction).core
    owner = interaction.user.id
    try:
        core.presets.check_name(name)
        if style:
            choice = await choose(interaction, style)
        else:
            latest = await core.jobs.latest_job(owner, platform=DISCORD)
            if latest is None or not all("preset" in r or r.get("stored") for r in latest.styles):
                raise Refusal(say(interaction, "preset_nothing_to_save"))
            choice = StyleChoice(refs=tuple(latest.styles), label=latest.style_label)
        user = await core.db.get_user(owner, platform=DISCORD)
        settings = Preferences.from_dict(user.settings if user else {}).style_settings()
        await core.presets.save(owner, name, choice, settings, platform=DISCORD)
    except Refusal as refusal:
        await answer(interaction, str(refusal))
        return
    except PresetError as err:
        await answer(
            interaction, say(interaction, f"preset_{err.kind}", name=html.escape(name), **err.details)
        )
        return
    except StylebotError as err:
        await answer(interaction, markdown(replies.engine_error(lang(interaction), err)))
        return
    label = styles.describe(styles.for_saving(choice), core.catalog, say(interaction, "preset_own_image"))
    await answer(
        interaction, say(interaction, "preset_saved", name=html.escape(name), style=html.escape(label))
    )


@preset.command(name="use", description="Paint a picture with one of your presets")
async def preset_use(interaction: discord.Interaction, name: str, image: discord.Attachment) -> None:
    try:
        precheck(interaction, image)
        record = await client_of(interaction).core.presets.get(interaction.user.id, name, platform=DISCORD)
    except Refusal as refusal:
        await refuse(interaction, str(refusal))
        return
    except PresetError as err:
        await refuse(
            interaction, say(interaction, f"preset_{err.kind}", name=html.escape(name), **err.details)
        )
        return
    await start_job(interaction, image, styles.from_preset(record))


@preset.command(name="list", description="Your presets")
async def preset_list(interaction: discord.Interaction) -> None:
    core = client_of(interaction).core
    records = await core.presets.list(interaction.user.id, platform=DISCORD)
    if not records:
        await answer(interaction, say(interaction, "preset_list_empty"))
        return
    own = say(interaction, "preset_own_image")
    lines = [f"• `{r.name}`: {styles.describe(r.styles, core.catalog, own)}" for r in records]
    for part in _fitting(say(interaction, "preset_list", lines="\n".join(lines))):
        await answer(interaction, part)


@preset.command(name="delete", description="Delete one of your presets")
async def preset_delete(interaction: discord.Interaction, name: str) -> None:
    try:
        await client_of(interaction).core.presets.delete(interaction.user.id, name, platform=DISCORD)
    except PresetError as err:
        await answer(
            interaction, say(interaction, f"preset_{err.kind}", name=html.escape(name), **err.details)
        )
        return
    await answer(interaction, say(interaction, "preset_deleted", name=html.escape(name)))


@preset.command(name="guild", description="The server's default style (members with Manage Server)")
@app_commands.describe(name="one of your presets, or off")
async def preset_guild(interaction: discord.Interaction, name: str) -> None:
    core = client_of(interaction).core
    if interaction.guild_id is None:
        await answer(interaction, say(interaction, "discord_guild_only"))
        return
    permissions = interaction.permissions
    if not permissions.manage_guild and interaction.user.id not in core.settings.admin_ids:
        await answer(interaction, say(interaction, "discord_guild_admins_only"))
        return
    if name.lower() == "off":
        await core.presets.clear_chat_default(interaction.guild_id, platform=DISCORD)
        await answer(interaction, say(interaction, "preset_chat_cleared"))
        return
    try:
        record = await core.presets.get(interaction.user.id, name, platform=DISCORD)
    except PresetError as err:
        await answer(
            interaction, say(interaction, f"preset_{err.kind}", name=html.escape(name), **err.details)
        )
        return
    if styles.from_preset(record).stored_image_ids:  # a personal image is its owner's alone
        await answer(interaction, say(interaction, "discord_guild_no_personal_styles"))
        return
    await core.presets.set_chat_default(interaction.guild_id, record, interaction.user.id, platform=DISCORD)
    label = styles.describe(record.styles, core.catalog, say(interaction, "preset_own_image"))
    await answer(interaction, say(interaction, "preset_chat_set", style=html.escape(label)))


@app_commands.command(name="queue", description="Where your pictures are")
async def queue_command(interaction: discord.Interaction) -> None:
    overview = await client_of(interaction).core.jobs.overview(interaction.user.id, platform=DISCORD)
    await answer(interaction, markdown(replies.queue_overview(lang(interaction), overview)))


@app_commands.command(name="cancel", description="Stop your latest picture")
@app_commands.describe(everything="stop all of your pictures")
async def cancel_command(interaction: discord.Interaction, everything: bool = False) -> None:
    core = client_of(interaction).core
    await interaction.response.defer(ephemeral=True)  # the statuses it edits may take past 3 seconds
    cancelled = await core.jobs.cancel_latest(interaction.user.id, everything=everything, platform=DISCORD)
    if not cancelled:
        await answer(interaction, say(interaction, "cancel_none"))
        return
    for job in cancelled:
        await core.notifier.cancelled(job)
    await answer(interaction, say(interaction, "cancel_done", count=len(cancelled)))


async def cancel_pressed(interaction: discord.Interaction, job_id: int) -> None:
    """The Cancel button: the job's owner only; anyone else hears so, privately."""
    core = client_of(interaction).core
    job = await core.db.get_job(job_id)
    if job is None or job.platform != DISCORD:
        await answer(interaction, say(interaction, "button_expired"))
        return
    if job.user_id != interaction.user.id:
        await answer(interaction, say(interaction, "not_your_job"))
        return
    cancelled = await core.jobs.cancel(job.id)
    if cancelled is None:
        await answer(interaction, say(interaction, "already_finished"))
        return
    await interaction.response.defer()
    await core.notifier.cancelled(cancelled)


async def keep_pressed(interaction: discord.Interaction, job_id: int) -> None:
    """ "Keep the sketch": the job's owner only, while it waits (``SketchService.may_keep``, the rule of
    every platform); anyone else hears why, privately. Keeping remakes the sketch at full size, which
    may pass Discord's 3 seconds: deferred first, the outcome then told privately."""
    core = client_of(interaction).core
    job = await core.sketches.may_keep(job_id, interaction.user.id, platform=DISCORD)
    if isinstance(job, Kept):
        await answer(interaction, markdown(replies.kept(lang(interaction), job)))
        return
    await interaction.response.defer()
    outcome = await core.sketches.keep(job)
    await answer(interaction, markdown(replies.kept(lang(interaction), outcome)))


# -- figures and painting a photo again (issue 13; the rules are bot.services.figures') ----------


async def _figure(
    interaction: discord.Interaction, image: discord.Attachment, style: str | None, figure: str
) -> None:
    """``/strip``, ``/layers``, ``/forming``: as ``/paint`` (the style, else the server's default), as a
    figure."""
    try:
        precheck(interaction, image)
        choice = await choose(interaction, style) if style else None
    except Refusal as refusal:
        await refuse(interaction, str(refusal))
        return
    await start_job(interaction, image, choice, figure=figure)


@app_commands.command(name="strip", description="Your picture at five strengths, side by side")
@app_commands.describe(image="the picture to paint", style="a painting or one of your presets")
@app_commands.autocomplete(style=style_choices)
async def strip_command(
    interaction: discord.Interaction, image: discord.Attachment, style: str | None = None
) -> None:
    await _figure(interaction, image, style, "strength")


@app_commands.command(name="layers", description="Your picture with shallow, then deeper style layers")
@app_commands.describe(image="the picture to paint", style="a painting or one of your presets")
@app_commands.autocomplete(style=style_choices)
async def layers_command(
    interaction: discord.Interaction, image: discord.Attachment, style: str | None = None
) -> None:
    await _figure(interaction, image, style, "layers")


@app_commands.command(name="forming", description="The painting as it forms: a triptych and an animation")
@app_commands.describe(image="the picture to paint", style="a painting or one of your presets")
@app_commands.autocomplete(style=style_choices)
async def forming_command(
    interaction: discord.Interaction, image: discord.Attachment, style: str | None = None
) -> None:
    await _figure(interaction, image, style, "forming")


@app_commands.command(name="surprise", description="Paint with a painting you haven't tried yet")
@app_commands.describe(image="the picture to paint")
async def surprise_command(interaction: discord.Interaction, image: discord.Attachment) -> None:
    core = client_of(interaction).core
    try:
        precheck(interaction, image)
    except Refusal as refusal:
        await refuse(interaction, str(refusal))
        return
    pick = await core.figures.surprise(interaction.user.id, platform=DISCORD)
    if await start_job(interaction, image, styles.paintings([pick.painting.id], core.catalog)):
        await interaction.followup.send(markdown(replies.surprise(lang(interaction), pick)))


async def _source(interaction: discord.Interaction, job_id: int) -> JobRecord | None:
    """The job a button names, if the presser may paint its photo again; else an ephemeral answer."""
    try:
        return await client_of(interaction).core.figures.source(job_id, interaction.user.id, platform=DISCORD)
    except RepaintRefusedError as err:
        await answer(interaction, markdown(replies.repaint_refused(lang(interaction), err)))
        return None


async def repaint(
    interaction: discord.Interaction, source: JobRecord, figure: str | None, style: StyleChoice | None
) -> None:
    """A kept photo painted again (``FigureService.repaint``); the interaction's response is its status."""
    core = client_of(interaction).core
    language = lang(interaction)
    if not interaction.response.is_done():
        await interaction.response.defer(thinking=True)
    label = replies.figure_label(language, figure, style.label if style is not None else source.style_label)
    try:
        job, placement = await core.figures.repaint(
            source, figure=figure, style=style, label=label, exempt=source.user_id in core.settings.admin_ids
        )
    except RepaintRefusedError as err:
        await refuse(interaction, markdown(replies.repaint_refused(language, err)))
        return
    except LimitReachedError as err:
        await refuse(interaction, markdown(replies.limit(language, err)))
        return
    except StylebotError as err:
        await refuse(interaction, markdown(replies.engine_error(language, err)))
        return
    await show_queued(interaction, job, placement)


async def figure_pressed(interaction: discord.Interaction, job_id: int, figure: str) -> None:
    """Strength strip, Layer strip, How it formed under a result: its owner only."""
    source = await _source(interaction, job_id)
    if source is not None:
        await repaint(interaction, source, figure, None)


async def again_pressed(interaction: discord.Interaction, job_id: int) -> None:
    """Another style under a result: an ephemeral picker of paintings for the kept photo."""
    source = await _source(interaction, job_id)
    if source is None:
        return
    catalog = client_of(interaction).core.catalog
    options = [(f"{p.title} ({p.artist})", p.id) for p in catalog][:MAX_CHOICES]
    await interaction.response.send_message(
        say(interaction, "discord_pick_style"), view=RepaintPicker(source.id, options), ephemeral=True
    )


class RepaintPicker(discord.ui.View):
    """The ephemeral picker of "Another style": a catalog painting for a job's kept photo."""

    def __init__(self, job_id: int, options: list[tuple[str, str]]) -> None:
        super().__init__(timeout=600)
        self.job_id = job_id
        select: discord.ui.Select = discord.ui.Select(
            custom_id="repick",
            options=[discord.SelectOption(label=name[:100], value=value) for name, value in options],
        )
        select.callback = self.picked  # type: ignore[method-assign]
        self.add_item(select)

    async def picked(self, interaction: discord.Interaction) -> None:
        value = str(((interaction.data or {}).get("values") or [""])[0])  # type: ignore[index]
        core = client_of(interaction).core
        if value not in core.catalog:
            await answer(interaction, say(interaction, "button_expired"))
            return
        source = await _source(interaction, self.job_id)  # checked again: it may have expired meanwhile
        if source is not None:
            await repaint(interaction, source, None, styles.paintings([value], core.catalog))


# -- settings -------------------------------------------------------------------------------------


def settings_view(
    language: str, owner: int, prefs: Preferences, *, sketches: bool = True
) -> tuple[str, discord.ui.View]:
    quality = prefs.quality or "normal"
    colors = prefs.preserve_colors or "none"
    body = replies.settings_summary(language, prefs, sketches=sketches)
    view = SettingsView(owner, prefs)

    def select(key: str, values: list[tuple[str, str]], current: str) -> discord.ui.Select:
        options = [
            discord.SelectOption(label=label[:100], value=v, default=v == current) for v, label in values
        ]
        item: discord.ui.Select = discord.ui.Select(custom_id=f"set:{key}", options=options)
        item.callback = view.changed  # type: ignore[method-assign]
        return item

    view.add_item(select("quality", [(q, text(language, f"quality_{q}")) for q in QUALITIES], quality))
    view.add_item(
        select("strength", [(s, text(language, f"strength_{s}")) for s in STRENGTHS], prefs.strength_name())
    )
    view.add_item(
        select("preserve_colors", [(c, replies.color_choice(language, c)) for c in COLOR_CHOICES], colors)
    )

    def toggle(
        key: str, label: str, on: bool, callback: Callable[[discord.Interaction], Awaitable[None]]
    ) -> discord.ui.Button:
        state = text(language, "preview_on" if on else "preview_off")
        item: discord.ui.Button = discord.ui.Button(
            label=f"{text(language, label)}: {state}",
            custom_id=f"set:{key}",
            style=discord.ButtonStyle.success if on else discord.ButtonStyle.secondary,
        )
        item.callback = callback  # type: ignore[method-assign]
        return item

    view.add_item(toggle("live_preview", "settings_preview", prefs.live_preview, view.toggle_preview))
    if sketches:  # SKETCH_PREVIEW off: the toggle would change nothing
        view.add_item(toggle("sketch", "settings_sketch", prefs.sketch, view.toggle_sketch))
    return markdown(body), view


class SettingsView(discord.ui.View):
    """The ephemeral /settings panel (only its owner sees it)."""

    def __init__(self, owner: int, prefs: Preferences) -> None:
        super().__init__(timeout=600)
        self.owner, self.prefs = owner, prefs

    async def _save(self, interaction: discord.Interaction, prefs: Preferences) -> None:
        await client_of(interaction).core.db.update_user_settings(
            self.owner, prefs.to_dict(), platform=DISCORD
        )
        sketches = client_of(interaction).core.settings.sketch_preview
        body, view = settings_view(lang(interaction), self.owner, prefs, sketches=sketches)
        await interaction.response.edit_message(content=body, view=view)

    async def changed(self, interaction: discord.Interaction) -> None:
        data = interaction.data or {}
        key = str(data.get("custom_id", "")).split(":", 1)[-1]
        value = (data.get("values") or [""])[0]  # type: ignore[index]
        if key == "quality" and value in QUALITIES:
            prefs = replace(self.prefs, quality=value)
        elif key == "strength" and value in STRENGTHS:
            prefs = replace(self.prefs, strength=STRENGTHS[value])
        elif key == "preserve_colors" and value in COLOR_CHOICES:
            prefs = replace(self.prefs, preserve_colors=value)
        else:
            await answer(interaction, say(interaction, "button_expired"))
            return
        await self._save(interaction, prefs)

    async def toggle_preview(self, interaction: discord.Interaction) -> None:
        await self._save(interaction, replace(self.prefs, live_preview=not self.prefs.live_preview))

    async def toggle_sketch(self, interaction: discord.Interaction) -> None:
        await self._save(interaction, replace(self.prefs, sketch=not self.prefs.sketch))


@app_commands.command(name="settings", description="Quality, strength, colours, live preview, sketch first")
async def settings_command(interaction: discord.Interaction) -> None:
    await track(interaction)
    user = await client_of(interaction).core.db.get_user(interaction.user.id, platform=DISCORD)
    prefs = Preferences.from_dict(user.settings if user else {})
    sketches = client_of(interaction).core.settings.sketch_preview
    body, view = settings_view(lang(interaction), interaction.user.id, prefs, sketches=sketches)
    await interaction.response.send_message(body, view=view, ephemeral=True)


# -- context menus --------------------------------------------------------------------------------


class StylePicker(discord.ui.View):
    """The ephemeral picker of "Paint this": the user's presets and personal styles, then the catalog."""

    def __init__(self, message: discord.Message, options: list[app_commands.Choice[str]]) -> None:
        super().__init__(timeout=600)
        self.message = message
        select: discord.ui.Select = discord.ui.Select(
            custom_id="pick",
            options=[discord.SelectOption(label=o.name[:100], value=o.value) for o in options[:MAX_CHOICES]],
        )
        select.callback = self.picked  # type: ignore[method-assign]
        self.add_item(select)

    async def picked(self, interaction: discord.Interaction) -> None:
        value = ((interaction.data or {}).get("values") or [""])[0]  # type: ignore[index]
        attachment = image_of(self.message)
        await interaction.response.defer(thinking=True)
        try:
            choice = await choose(interaction, str(value))
        except Refusal as refusal:
            await refuse(interaction, str(refusal))
            return
        if attachment is None:
            await refuse(interaction, say(interaction, "discord_no_image"))
            return
        await start_job(interaction, attachment, choice)


@app_commands.context_menu(name="Paint this")
async def paint_this(interaction: discord.Interaction, message: discord.Message) -> None:
    if image_of(message) is None:
        await answer(interaction, say(interaction, "discord_no_image"))
        return
    options = await style_choices(interaction, "")
    await interaction.response.send_message(
        say(interaction, "discord_pick_style"), view=StylePicker(message, options), ephemeral=True
    )


@app_commands.context_menu(name="Use as my style")
async def use_as_my_style(interaction: discord.Interaction, message: discord.Message) -> None:
    attachment = image_of(message)
    if attachment is None:
        await answer(interaction, say(interaction, "discord_no_image"))
        return
    await interaction.response.defer(ephemeral=True)
    await track(interaction)
    core = client_of(interaction).core
    try:
        data = await download(interaction, attachment)
        from bot.services.jobs import validate_images

        await asyncio.to_thread(validate_images, [data], max_pixels=core.settings.max_image_pixels)
    except Refusal as refusal:
        await answer(interaction, str(refusal))
        return
    except StylebotError as err:
        await answer(interaction, markdown(replies.engine_error(lang(interaction), err)))
        return
    name = attachment.filename.rsplit(".", 1)[0][:24] or "style"
    image = await core.db.add_style_image(
        DISCORD, interaction.user.id, name, data=data, keep=MAX_PERSONAL_STYLES
    )
    await answer(interaction, say(interaction, "discord_style_saved", name=html.escape(image.name)))


COMMANDS = (
    paint,
    strip_command,
    layers_command,
    forming_command,
    surprise_command,
    styles_command,
    preset,
    settings_command,
    queue_command,
    cancel_command,
)
CONTEXT_MENUS = (paint_this, use_as_my_style)

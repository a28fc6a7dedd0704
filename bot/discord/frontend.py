"""How the core's job events look on Discord.

A job's status is the original response of the interaction that asked for it: edited in place (at most one
edit per ``interval``, the latest state winning), with the sketch or the live preview as its attachment
(later text-only edits keep it) and a Cancel button whose custom id carries the job (``CancelButton``, so it
works after a restart), with "Keep the sketch" beside it while the sketch is offered (``KeepButton``). The
sketch is shown at once, past the interval. The result is a new message that mentions (and pings) only its
owner, since edits notify no one: a followup while the interaction token lives (15 minutes), a channel
message after, a DM when the channel cannot be written. The response then says the painting is done and
drops its picture: in a busy channel each request leaves one picture, the painting, as on Telegram.

What Discord refuses or fails is sorted once (``bot.discord.failures``): a status Discord says is gone or out
of reach is forgotten (no more edits), a passing failure of a status update is left to the next one, and the
last word (failed, cancelled, done), which has no next one, is tried again until Discord shows it or refuses
it for good (``bot.retrying.patient``). The messages themselves (result, animation, a word for the owner) are
``bot.discord.messages``'.
"""

from __future__ import annotations

import asyncio
import html
import io
import logging
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import discord

from bot.db import JobRecord
from bot.discord import messages
from bot.discord.attachments import fit_upload
from bot.discord.failures import FAILURES, describe, is_passing, is_refused, token_refused, worth_retrying
from bot.discord.figures import result_view
from bot.discord.markdown import markdown
from bot.discord.queue import cancel_view
from bot.frontend import DISCORD, Undeliverable
from bot.retrying import patient, retried
from bot.services.throttle import Slot, StatusThrottle
from bot.texts import duration, language_for, text

log = logging.getLogger(__name__)

TOKEN_MARGIN = timedelta(seconds=30)  # stop using an interaction's token this long before it expires
DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024  # what Discord lets a bot upload without boosts


@dataclass(frozen=True)
class _View:
    """One state of a job's response: its text, its picture (None: keep the one shown), its buttons."""

    content: str
    preview: bytes | None = None
    final: bool = False
    keep: bool = False


@dataclass(kw_only=True)
class _Live(Slot[_View]):
    """What the bot knows of a job's response while it runs (the throttle's ``Slot``, plus the
    interaction whose token edits it)."""

    interaction: discord.Interaction | None
    upload_limit: int = DEFAULT_UPLOAD_LIMIT
    shown: _View | None = None  # with the picture on screen, whichever edit put it there
    gone: bool = False  # the status was deleted (by a moderator, say) or is out of reach: no more edits


class DiscordFrontend:
    """The ``bot.frontend.Frontend`` of Discord."""

    platform = DISCORD

    def __init__(self, client: discord.Client, *, interval: float) -> None:
        self.client = client
        self.throttle = StatusThrottle({}, default=interval, clock=_now)  # the same interval everywhere
        self._live: dict[int, _Live] = {}
        self._early: dict[int, _View] = {}  # a sketch for a job whose response is not up yet

    async def opened(self, job: JobRecord, interaction: discord.Interaction) -> None:
        """The job's response is up; its interaction's token edits it for the next 15 minutes. A sketch
        that was quicker than the response (``show_status`` kept it) goes onto it now."""
        limit = getattr(interaction, "filesize_limit", None) or DEFAULT_UPLOAD_LIMIT
        live = self._live.get(job.id)
        if live is None:
            live = self._live[job.id] = _Live(
                interaction=interaction,
                upload_limit=limit,
                interval=self.throttle.interval(job.chat_type),
                shown_at=_now(),
            )
        else:  # the notifier edited the response as a message meanwhile: the token takes over
            live.interaction, live.upload_limit = interaction, limit
        if (early := self._early.pop(job.id, None)) is not None:
            pending = live.pending  # newer than the sketch: its text, with the sketch unless it has one
            view = early if pending is None else replace(pending, preview=pending.preview or early.preview)
            await self._offer(job, live, view, now=True)

    @staticmethod
    def _token_alive(live: _Live) -> bool:
        """Discord's own rule: a token lives 15 minutes from the interaction (``expires_at``)."""
        interaction = live.interaction
        return interaction is not None and discord.utils.utcnow() < interaction.expires_at - TOKEN_MARGIN

    def _entry(self, job: JobRecord) -> _Live:
        live = self._live.get(job.id)
        if live is None:  # a job from before a restart: no token, the response is edited as a message
            live = self._live[job.id] = _Live(
                interaction=None, interval=self.throttle.interval(job.chat_type)
            )
        return live

    async def _offer(self, job: JobRecord, live: _Live, view: _View, *, now: bool) -> None:
        await self.throttle.offer(
            live, view, now=now, flush=lambda: self._flush(job, live), name=f"discord-status-{job.id}"
        )

    # -- status ---------------------------------------------------------------------------------

    async def show_status(
        self,
        job: JobRecord,
        text: str,
        *,
        preview: bytes | None = None,
        final: bool = False,
        now: bool = False,
        keep: bool = False,
    ) -> None:
        """The response says ``text``: throttled by ``interval``, except the last word (``final``) and the
        sketch (``now``), which is worth showing the moment it exists. ``keep``: "Keep the sketch"."""
        if job.status_message_id is None and job.id not in self._live:
            if preview and not final:  # the sketch, before ``show_queued`` has the response up
                self._early[job.id] = _View(markdown(text), preview, keep=keep)
            return
        live = self._entry(job)
        if live.gone:
            if final:
                self._live.pop(job.id, None)
            return
        await self._offer(job, live, _View(markdown(text), preview, final, keep), now=now or final)

    async def _flush(self, job: JobRecord, live: _Live) -> None:
        async with live.lock:
            view = self.throttle.take(live)
            if view is None:
                return
            shown = live.shown.preview if live.shown is not None else None
            if view.final:  # the last word drops the picture
                target = replace(view, preview=None)
            else:  # a text-only update keeps the picture shown (an edit without attachments keeps them)
                target = replace(view, preview=view.preview or shown)
            if target != live.shown:
                fields: dict[str, object] = {
                    "content": view.content,
                    "view": None if view.final else cancel_view(job, keep=view.keep),
                }
                if target.preview is not None and target.preview != shown:
                    fields["attachments"] = [discord.File(io.BytesIO(target.preview), "preview.jpg")]
                elif view.final:  # also a picture from before a restart, which this run never saw
                    fields["attachments"] = []
                if view.final:  # the last word: nothing comes after it to put it right
                    if await self._say_last(job, live, fields):
                        live.shown = target
                        self.throttle.shown(live)
                else:
                    try:
                        await self._edit(job, live, **fields)
                    except FAILURES as err:
                        self._failed_edit(job, live, err)
                        if is_passing(err) and live.pending is None and not live.gone:
                            live.pending = view  # the next update shows it (its picture) instead
                        return
                    live.shown = target
                    self.throttle.shown(live)
            if view.final and live.timer is None:  # else ``_keep_trying`` has it
                self._live.pop(job.id, None)

    async def _say_last(self, job: JobRecord, live: _Live, fields: dict[str, object]) -> bool:
        """The status's last word (failed, cancelled, result pending, done): tried a few times at once
        (``bot.retrying.PAUSES``); when Discord still fails for a passing reason, ``_keep_trying`` goes on
        in the background, so a short outage cannot leave a finished job saying "painting" with a live
        Cancel button. True when it is shown now. Called under ``live.lock``."""
        try:
            await retried(
                lambda: self._edit(job, live, **fields),
                passing=worth_retrying,
                describe=describe,
                what=f"job {job.id} (user {job.user_id}): last status",
            )
            return True
        except FAILURES as err:
            self._failed_edit(job, live, err)
            if is_passing(err) and not live.gone:
                log.warning(
                    "job %d (user %d): its last status is kept and tried again later", job.id, job.user_id
                )
                live.timer = asyncio.create_task(
                    self._keep_trying(job, live, fields), name=f"discord-last-status-{job.id}"
                )
            return False

    async def _keep_trying(self, job: JobRecord, live: _Live, fields: dict[str, object]) -> None:
        """The last word, tried with growing pauses (``bot.retrying.patient``) until Discord shows it or
        refuses it for good; a newer last word (``show_status``, ``remove_status``: ``throttle.stop`` or an
        ``offer``), the status being forgotten, or shutdown cancel it (it is ``live.timer``)."""

        async def edit() -> None:
            async with live.lock:  # never beside another edit of the status
                await self._edit(job, live, **fields)

        pauses = patient()
        await asyncio.sleep(next(pauses))  # the quick tries have just failed
        try:
            await retried(
                edit,
                passing=is_passing,  # a 429 too: the pauses here are long enough not to add to a storm
                describe=describe,
                what=f"job {job.id} (user {job.user_id}): last status",
                pauses=pauses,
            )
        except FAILURES as err:
            live.timer = None  # done: forgetting the status must not cancel this task
            self._failed_edit(job, live, err)
        else:
            log.info("job %d (user %d): its last status is shown after all", job.id, job.user_id)
        live.timer = None
        if self._live.get(job.id) is live:
            self._live.pop(job.id)

    def _failed_edit(self, job: JobRecord, live: _Live, err: BaseException) -> None:
        """A status Discord says is deleted or out of reach is forgotten: no more edits to it, however
        many updates the job still has. Any other failure is this update's alone."""
        if is_refused(err):
            log.info("job %d: its status is gone (%s); no more updates to it", job.id, describe(err))
            self._forget_status(live)
        else:
            log.warning("job %d: status update failed: %s", job.id, describe(err))

    def _forget_status(self, live: _Live) -> None:
        live.gone = True
        live.pending = None
        self.throttle.stop(live)

    async def _edit(self, job: JobRecord, live: _Live, **fields: object) -> None:
        """Through the token while it lives (no permission needed), else as the bot's own message."""
        if self._token_alive(live):
            assert live.interaction is not None
            try:
                await live.interaction.edit_original_response(**fields)  # type: ignore[arg-type]
                return
            except discord.HTTPException as err:
                if not token_refused(err):
                    raise  # a deleted status (NotFound) or a failure of the moment: the caller decides
                log.info(
                    "job %d: the token no longer works (%s); editing as a message", job.id, describe(err)
                )
                live.interaction = None
        if job.status_message_id is not None:
            channel = self.client.get_partial_messageable(job.chat_id, guild_id=job.guild_id)
            await channel.get_partial_message(job.status_message_id).edit(**fields)  # type: ignore[arg-type]

    async def remove_status(self, job: JobRecord) -> None:
        """Discord keeps the response (it is the request's answer): it says the painting is done, below,
        and drops its picture (the sketch or preview was the painting's stand-in)."""
        self._early.pop(job.id, None)
        live = self._live.get(job.id)
        if live is not None:
            self.throttle.stop(live)
        if job.status_message_id is None or (live is not None and live.gone):
            self._live.pop(job.id, None)
            return
        live = self._entry(job)
        async with live.lock:  # after any edit under way, so nothing lands after the last word
            self.throttle.take(live)  # dropped: the last word is this one
            done = markdown(text(language_for(job.language_code), "discord_done"))
            await self._say_last(job, live, {"content": done, "view": None, "attachments": []})
        if live.timer is None:  # else ``_keep_trying`` has it
            self._live.pop(job.id, None)

    async def close(self) -> None:
        await self.throttle.close(self._live.values())
        self._live.clear()
        self._early.clear()

    # -- messages (``bot.discord.messages``) -------------------------------------------------------

    async def tell(self, job: JobRecord, text: str) -> None:
        await messages.tell(self.client, job, markdown(text))

    async def deliver_animation(self, job: JobRecord, path: Path) -> None:
        """A figure's GIF, after its result, in the job's channel; best effort."""
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as err:
            log.warning("job %d: the animation could not be read: %s", job.id, err)
            return
        await messages.send_animation(self.client, job, data)

    async def deliver(self, job: JobRecord, path: Path, notes: tuple[str, ...]) -> str | None:
        """The painting, to its owner (``messages.send_result``: follow-up, channel, DM). None: not now,
        the notifier tries again later. When every way is refused the result is ``Undeliverable``, and its
        status hears no more either."""
        language = language_for(job.language_code)
        live = self._entry(job)
        data, name = await asyncio.to_thread(fit_upload, path, live.upload_limit)
        took = duration(language, job.engine_seconds) if job.engine_seconds is not None else "—"
        style = html.escape(job.style_label)
        content = markdown(
            text(language, "discord_result", mention=f"<@{job.user_id}>", style=style, seconds=took)
        )
        if notes:
            content += "\n" + "; ".join(notes)
        token = live.interaction if self._token_alive(live) else None
        try:
            sent = await messages.send_result(self.client, job, token, content, data, name, result_view(job))
        except Undeliverable:
            self._early.pop(job.id, None)
            if (gone := self._live.pop(job.id, None)) is not None:
                self._forget_status(gone)  # nobody can see it either way: no more edits
            raise
        if sent.token_refused:
            live.interaction = None
        if sent.message is None:
            log.info("job %d: the result waits in %s for a later try", job.id, path)
            return None
        return str(sent.message.id)


def _now() -> float:
    """The clock of the status throttle (the event loop's)."""
    return asyncio.get_running_loop().time()

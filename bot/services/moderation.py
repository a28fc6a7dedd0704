"""Moderation, the same on every platform: the bot's admins block and unblock people, a group's (a
server's) own admins switch the bot off and on there, and a result's owner or the chat's moderators
delete it.

The rules are here; a front end only says who asks and, when asked, whether that person manages the chat
(Telegram: an administrator of the group, or one who may delete messages for Delete; Discord: Manage
Server, or Manage Messages for Delete). What a block and a switched-off chat refuse is decided where every
job comes in (``JobService.submit``), so no way of starting a job skips it. Everything is kept in the
database, so it holds across restarts.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from bot.db import Database, JobRecord, JobState
from bot.services.access import Admins, ownership
from bot.services.jobs import JobService
from bot.services.refusals import NotBotAdminError, NotChatAdminError, Refused
from bot.services.results import result_files

log = logging.getLogger(__name__)

Manages = Callable[[], Awaitable[bool]]  # asked of the platform only when the answer matters


@dataclass(frozen=True)
class Blocked:
    """What ``block`` did: ``newly`` False when the person was blocked already; ``cancelled``: how many of
    their queued or running jobs it stopped."""

    newly: bool
    cancelled: int


class Remover(StrEnum):
    """Who deleted a result: its owner, or a moderator of the chat it was sent to."""

    OWNER = "owner"
    MODERATOR = "moderator"


class ModerationService:
    def __init__(
        self, db: Database, jobs: JobService, admins: Admins, *, results_dir: Path, jobs_dir: Path
    ) -> None:
        self.db = db
        self.jobs = jobs
        self.admins = admins
        self.results_dir = results_dir
        self.jobs_dir = jobs_dir

    def require_admin(self, user_id: int, *, platform: str) -> None:
        """Refused ``NotBotAdminError`` unless ``(platform, user_id)`` is one of the bot's admins."""
        if not self.admins.is_admin(user_id, platform=platform):
            log.info("%s user %d asked for an admin command: refused", platform, user_id)
            raise NotBotAdminError()

    async def block(self, admin_id: int, user_id: int, *, platform: str) -> Blocked:
        """An admin blocks a person of the same platform: their new jobs are refused from now on, and
        their queued and running ones are cancelled (each status saying so). An admin cannot be blocked
        (another admin could otherwise lock them out, and a typo would block oneself)."""
        self.require_admin(admin_id, platform=platform)
        if self.admins.is_admin(user_id, platform=platform):
            raise Refused("block_admin")
        newly = await self.db.block_user(platform, user_id, by=admin_id)
        # After the row, so every job submitted from now on is refused; one whose check ran just before
        # may still be added after this cancels (the person's next is refused).
        cancelled = await self.jobs.withdraw_latest(user_id, platform=platform, everything=True)
        log.warning(
            "%s user %d blocked by admin %d%s; %d job(s) cancelled",
            platform,
            user_id,
            admin_id,
            "" if newly else " (already blocked)",
            cancelled,
        )
        return Blocked(newly, cancelled)

    async def unblock(self, admin_id: int, user_id: int, *, platform: str) -> bool:
        """False when the person was not blocked."""
        self.require_admin(admin_id, platform=platform)
        unblocked = await self.db.unblock_user(platform, user_id)
        if unblocked:
            log.warning("%s user %d unblocked by admin %d", platform, user_id, admin_id)
        return unblocked

    async def switch(self, group_id: int, on: bool, user_id: int, *, platform: str, manages: Manages) -> bool:
        """The bot switched on or off in a group (a Telegram group's chat id, a Discord server's id) by
        one of its admins (``manages``) or of the bot's; False when it already was."""
        if not self.admins.is_admin(user_id, platform=platform) and not await manages():
            raise NotChatAdminError()
        changed = await self.db.set_chat_enabled(platform, group_id, on, by=user_id)
        if changed:
            state = "on" if on else "off"
            log.warning("%s group %d switched %s by user %d", platform, group_id, state, user_id)
        return changed

    async def remove_result(
        self, job_id: int, user_id: int, *, platform: str, chat_id: int, moderates: Manages
    ) -> tuple[JobRecord, Remover]:
        """The Delete button under a result, pressed in ``chat_id``: its owner, or someone who moderates
        that chat (``moderates``, asked only of others), removes the painting and the photo it was made
        from; the front end then deletes the message. A moderator's rights reach only a result sent to the
        chat they moderate (job ids are easy to guess). Refused "button_expired" for no such job or one
        not finished, "delete_not_allowed" for anyone else."""
        job = await self.db.get_job(job_id)
        match ownership(job, user_id, platform=platform):
            case "unknown":
                raise Refused("button_expired")
            case "owner":
                remover = Remover.OWNER
            case "not_yours":
                assert job is not None
                if job.chat_id != chat_id or not await moderates():
                    raise Refused("delete_not_allowed")
                remover = Remover.MODERATOR
        assert job is not None
        if job.state != JobState.DONE:
            raise Refused("button_expired")
        await self.db.mark_result_removed(job.id)  # first: nothing offers it again, even if a file stays
        removed = await asyncio.to_thread(self._remove_files, job)
        log.info(
            "job %d: result deleted by its %s (%s user %d): %d file(s) removed",
            job.id,
            remover.value,
            platform,
            user_id,
            removed,
        )
        return job, remover

    def _remove_files(self, job: JobRecord) -> int:
        """The result in every file kept (``bot.services.results``: a photo's painting and animation, a
        clip's MP4 or GIF) and the job's inputs folder, only where the bot keeps them."""
        removed = 0
        for path in result_files(self.results_dir, job):
            path.unlink(missing_ok=True)
            removed += 1
        inputs = Path(job.content_path).parent
        if inputs.parent.resolve() == self.jobs_dir.resolve() and inputs.is_dir():
            shutil.rmtree(inputs, ignore_errors=True)
            removed += 1
        return removed

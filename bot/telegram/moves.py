"""A group that became a supergroup, on Telegram's side: Telegram gives the supergroup a new chat id, and
every call naming the old one fails with ``ChatMigrated`` (carrying ``new_chat_id``).

The bot learns it from the service message (``handlers.chats``) or from such a failure, whichever comes
first; either way the core moves what it keeps under the old id (``ChatService.moved``, idempotent), and
a send that failed is made again, once, to the new id. The old chat's messages cannot be edited there: a
job's status is put up afresh in the new chat (``StatusBoard``), and its result quotes nothing
(``quote``: a moved job's source message is ``NO_MESSAGE``).
"""

from __future__ import annotations

import dataclasses
import logging

from telegram import ReplyParameters
from telegram.error import ChatMigrated

from bot.db import NO_MESSAGE, JobRecord
from bot.frontend import TELEGRAM
from bot.services.chats import ChatService
from bot.services.jobs import JobService

log = logging.getLogger(__name__)


class ChatMoves:
    def __init__(self, chats: ChatService, jobs: JobService) -> None:
        self.chats = chats
        self.jobs = jobs

    async def job_moved(self, job: JobRecord, err: ChatMigrated) -> JobRecord:
        """A call for ``job`` failed with ``ChatMigrated``: its chat is moved to the new id, and the job
        comes back as it is now (in the new chat)."""
        log.info(
            "job %d (user %d): chat %d is supergroup %d now; sending there",
            job.id,
            job.user_id,
            job.chat_id,
            err.new_chat_id,
        )
        await self.chats.moved(TELEGRAM, job.chat_id, err.new_chat_id)
        current = await self.jobs.job(job.id)
        if current is not None and current.chat_id == err.new_chat_id:
            return current
        # Not in the database (a test's record) or moved on meanwhile: the new chat all the same.
        return dataclasses.replace(
            job, chat_id=err.new_chat_id, source_message_id=NO_MESSAGE, status_message_id=None
        )


def quote(job: JobRecord) -> ReplyParameters | None:
    """What the job's messages reply to: the user's photo, unless the job has none in its chat (moved to
    a supergroup, whose message ids are its own)."""
    if job.source_message_id == NO_MESSAGE:
        return None
    return ReplyParameters(job.source_message_id, allow_sending_without_reply=True)

"""The last line: an unexpected error is logged with its update and user, and the user gets a short
apology with a reference to quote, never silence.

Telegram's own failures are not bugs and get no traceback: a passing one (a 5xx, a timeout, flood control
that outlasted the rate limiter) is one WARNING line, and the user still gets the apology; a user who
blocked the bot, or a button press answered too late, is an INFO line; another instance polling with the
same token (409 Conflict) is one ERROR line, repeated only after ``CONFLICT_QUIET`` seconds while it lasts.
A reply to a group that became a supergroup meanwhile (``ChatMigrated``) moves the group's jobs and settings
to the new id (``ChatService.moved``), as the service message would, and says so at INFO; only a basic group
migrates, so the same refusal in any other chat came from a call to another chat and moves nothing.
"""

from __future__ import annotations

import logging
import secrets
import time

from telegram import Update
from telegram.constants import ChatType
from telegram.error import ChatMigrated, Conflict, Forbidden, TelegramError
from telegram.ext import ContextTypes

from bot.frontend import TELEGRAM
from bot.telegram.context import services
from bot.telegram.failures import is_expired_query, is_passing
from bot.telegram.handlers.common import reply, say

log = logging.getLogger(__name__)

CONFLICT_QUIET = 600.0  # seconds after a 409 line during which further 409s say nothing


class _Conflicts:
    """Says once that another poller holds the token, not once per failed poll (PTB polls again at once)."""

    def __init__(self) -> None:
        self.said_at = float("-inf")

    def heard(self, error: Conflict) -> None:
        now = time.monotonic()
        if now - self.said_at < CONFLICT_QUIET:
            log.debug("409 Conflict again: %s", error)
            return
        self.said_at = now
        log.error(
            "409 Conflict: another instance of the bot is polling Telegram with the same token; only one "
            "may poll, so this one keeps retrying until the other stops (Telegram said: %s)",
            error,
        )


_conflicts = _Conflicts()


def polling_failed(error: Exception) -> None:
    """A failed poll for updates (PTB polls again by itself): one line, and a traceback only for a bug.
    PTB's ``error_callback`` of ``start_polling``; ``run_polling`` brings these to ``error_handler``."""
    if isinstance(error, Conflict):
        _conflicts.heard(error)
    elif isinstance(error, TelegramError) and is_passing(error):
        log.warning("polling for updates failed: %s", error)
    else:
        log.error("unexpected error outside any update", exc_info=error)


async def error_handler(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    error = context.error
    if not isinstance(update, Update):  # polling, or a task of the bot's own
        if error is not None:
            polling_failed(error)
        return
    if isinstance(error, Forbidden) or (error is not None and is_expired_query(error)):
        # the user blocked the bot (nobody to tell), or a press answered too late (no way to answer it)
        log.info("update %s: %s", update.update_id, error)
        return
    if isinstance(error, ChatMigrated) and update.effective_chat is not None:
        user = update.effective_user.id if update.effective_user else None
        chat = update.effective_chat
        if chat.type != ChatType.GROUP:  # only a basic group migrates: the refused call named another chat
            log.warning(
                "update %s from user %s: a call to another chat than %s %s was refused: %s; nothing moved",
                update.update_id,
                user,
                chat.type,
                chat.id,
                error,
            )
            return
        log.info("update %s from user %s: %s", update.update_id, user, error)
        await services(context).chats.moved(TELEGRAM, chat.id, error.new_chat_id)
        return
    reference = secrets.token_hex(4).upper()
    user = update.effective_user.id if update.effective_user else None
    if isinstance(error, TelegramError) and is_passing(error):
        log.warning(
            "update %s from user %s: Telegram failed (%s); apology ref %s",
            update.update_id,
            user,
            error,
            reference,
        )
    else:
        log.error(
            "unexpected error (ref %s) in update %s from user %s",
            reference,
            update.update_id,
            user,
            exc_info=error,
        )
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(say(update, "apology", ref=reference)[:200], show_alert=True)
        else:
            await reply(update, say(update, "apology", ref=reference))
    except TelegramError as err:  # Telegram still failing: the log has it all
        log.warning("could not send the apology for ref %s: %s", reference, err)
    except Exception:
        log.exception("could not send the apology for ref %s", reference)

"""The last line: an unexpected error is logged with its update and user, and the user gets a short
apology with a reference to quote, never silence."""

from __future__ import annotations

import logging
import secrets

from telegram import Update
from telegram.error import Forbidden, NetworkError
from telegram.ext import ContextTypes

from bot.telegram.handlers.common import reply, say

log = logging.getLogger(__name__)


async def error_handler(update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
    error = context.error
    if isinstance(error, Forbidden):  # the user blocked the bot: nobody to tell
        log.info("update %s: %s", getattr(update, "update_id", None), error)
        return
    if isinstance(error, NetworkError) and not isinstance(update, Update):  # polling hiccup; PTB retries
        log.warning("network error while polling: %s", error)
        return
    reference = secrets.token_hex(4).upper()
    user = update.effective_user.id if isinstance(update, Update) and update.effective_user else None
    log.error(
        "unexpected error (ref %s) in update %s from user %s",
        reference,
        getattr(update, "update_id", None),
        user,
        exc_info=error,
    )
    if not isinstance(update, Update):
        return
    try:
        if update.callback_query is not None:
            await update.callback_query.answer(say(update, "apology", ref=reference)[:200], show_alert=True)
        else:
            await reply(update, say(update, "apology", ref=reference))
    except Exception:  # the apology itself failed (network down): the log has it all
        log.exception("could not send the apology for ref %s", reference)

"""``/queue``, ``/cancel``, and the Cancel, Keep-the-sketch and Full-resolution buttons."""

from __future__ import annotations

from telegram import Message, Update
from telegram.ext import CallbackQueryHandler, CommandHandler, ContextTypes

from bot import replies
from bot.frontend import TELEGRAM
from bot.services.refusals import Refused
from bot.services.sketches import Kept
from bot.telegram.context import frontend, services
from bot.telegram.handlers.common import answer, language, refusal, reply, say, sender_id


async def queue_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    overview = await services(context).jobs.overview(sender_id(update), platform=TELEGRAM)
    await reply(update, replies.queue_overview(language(update), overview))


async def cancel_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """``/cancel`` stops the user's newest picture; ``/cancel all`` stops every one of theirs."""
    everything = bool(context.args) and (context.args or [""])[0].lower() == "all"
    jobs = services(context).jobs
    count = await jobs.withdraw_latest(sender_id(update), everything=everything, platform=TELEGRAM)
    await reply(update, say(update, "cancel_done", count=count) if count else say(update, "cancel_none"))


async def on_cancel_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    try:
        await services(context).jobs.withdraw(
            int(query.data.split(":")[1]), query.from_user.id, platform=TELEGRAM
        )
    except Refused as err:
        await answer(query, refusal(update, err))
        return
    await answer(query, say(update, "cancelled"))


async def on_keep_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """ "Keep the sketch": the queued job ends with its sketch as the result; only for the job's owner
    (the rule and the answers are ``SketchService.may_keep`` and ``replies.kept``, as on Discord)."""
    query = update.callback_query
    assert query is not None and query.data is not None
    s = services(context)
    job = await s.sketches.may_keep(int(query.data.split(":")[1]), query.from_user.id, platform=TELEGRAM)
    if isinstance(job, Kept):
        await answer(query, replies.kept(language(update), job))
        return
    await answer(query, replies.kept(language(update), await s.sketches.keep(job)))


async def on_full_resolution(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """The lossless file, sent again; only for the job's owner (``JobService.owned``)."""
    query = update.callback_query
    assert query is not None and query.data is not None
    message = query.message
    if not isinstance(message, Message):
        await answer(query, say(update, "button_expired"))
        return
    try:
        job = await services(context).jobs.owned(
            int(query.data.split(":")[1]), query.from_user.id, platform=TELEGRAM
        )
    except Refused as err:
        await answer(query, refusal(update, err))
        return
    await answer(query)
    if not await frontend(context).send_full_resolution(
        job, reply_to=message.message_id, in_chat=message.chat_id
    ):
        await reply(update, say(update, "full_resolution_gone"))


def handlers() -> list:
    return [
        CommandHandler("queue", queue_command),
        CommandHandler("cancel", cancel_command),
        CallbackQueryHandler(on_cancel_button, pattern=r"^cancel:\d+$"),
        CallbackQueryHandler(on_keep_button, pattern=r"^keep:\d+$"),
        CallbackQueryHandler(on_full_resolution, pattern=r"^full:\d+$"),
    ]

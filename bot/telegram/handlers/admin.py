"""Moderation on Telegram (the rules are ``bot.services.moderation``'s and ``stats``'): ``/stats``,
``/block`` and ``/unblock`` (an id, or in reply to the person's message) for the bot's admins, ``/bot_off``
and ``/bot_on`` for a group's administrators, and the Delete button under a result, for its owner and the
group's administrators who may delete messages. None of them is in the public command menu.
"""

from __future__ import annotations

import logging

from telegram import Message, Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.error import BadRequest, Forbidden, TelegramError
from telegram.ext import CallbackQueryHandler, CommandHandler, ContextTypes

from bot import replies
from bot.frontend import TELEGRAM
from bot.services.refusals import REFUSALS
from bot.telegram.context import services
from bot.telegram.handlers.common import answer, language, refusal, reply, say, sender_id, sender_is_the_group
from bot.telegram.handlers.presets import ADMIN_STATUSES

log = logging.getLogger(__name__)


async def stats_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    try:
        stats = await services(context).stats.collect(sender_id(update), platform=TELEGRAM)
    except REFUSALS as err:
        await reply(update, refusal(update, err))
        return
    await reply(update, replies.statistics(language(update), stats))


def target_of(update: Update, args: list[str]) -> int | None:
    """Whom ``/block`` and ``/unblock`` name: an id after the command, else the sender of the message it
    replies to (a chat's id for a message sent as a channel or an anonymous admin, as ``sender_id``); None
    for neither, or a reply to a bot's message."""
    if args:
        try:
            return int(args[0])
        except ValueError:
            return None
    message = update.effective_message
    replied = message.reply_to_message if message is not None else None
    if replied is None:
        return None
    if replied.sender_chat is not None:
        return replied.sender_chat.id
    if replied.from_user is None or replied.from_user.is_bot:  # the bot's own messages name no one
        return None
    return replied.from_user.id


def person(user_id: int) -> str:
    return f"<code>{user_id}</code>"


async def block_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    moderation = services(context).moderation
    admin = sender_id(update)
    try:
        moderation.require_admin(admin, platform=TELEGRAM)  # before saying how the command works
        target = target_of(update, context.args or [])
        if target is None:
            await reply(update, say(update, "block_usage", command="block"))
            return
        blocked = await moderation.block(admin, target, platform=TELEGRAM)
    except REFUSALS as err:
        await reply(update, refusal(update, err))
        return
    who = person(target)
    if not blocked.newly:
        await reply(update, say(update, "block_already", user=who))
        return
    await reply(update, say(update, "block_done", user=who, count=blocked.cancelled))


async def unblock_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    moderation = services(context).moderation
    admin = sender_id(update)
    try:
        moderation.require_admin(admin, platform=TELEGRAM)
        target = target_of(update, context.args or [])
        if target is None:
            await reply(update, say(update, "block_usage", command="unblock"))
            return
        unblocked = await moderation.unblock(admin, target, platform=TELEGRAM)
    except REFUSALS as err:
        await reply(update, refusal(update, err))
        return
    key = "unblock_done" if unblocked else "unblock_not_blocked"
    await reply(update, say(update, key, user=person(target)))


async def bot_off_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _switch(update, context, on=False)


async def bot_on_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await _switch(update, context, on=True)


async def _switch(update: Update, context: ContextTypes.DEFAULT_TYPE, *, on: bool) -> None:
    chat = update.effective_chat
    assert chat is not None
    if chat.type == ChatType.PRIVATE:
        await reply(update, say(update, "chat_switch_groups_only"))
        return
    user = sender_id(update)

    async def manages() -> bool:
        """An anonymous admin of this group, or a member whose status says admin."""
        if sender_is_the_group(update):
            return True
        try:
            member = await context.bot.get_chat_member(chat.id, user)
        except TelegramError as err:  # e.g. someone posting as a channel: no member to ask about
            log.warning("bot switch: getChatMember for user %d in chat %d failed: %s", user, chat.id, err)
            return False
        return member.status in ADMIN_STATUSES

    try:
        changed = await services(context).moderation.switch(
            chat.id, on, user, platform=TELEGRAM, manages=manages
        )
    except REFUSALS as err:
        await reply(update, refusal(update, err))
        return
    state = "on" if on else "off"
    await reply(update, say(update, f"bot_{state}_done" if changed else f"bot_{state}_already"))


async def on_delete_button(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Delete under a result: its owner, or an administrator of the group who may delete messages (the
    service decides, and asks Telegram only about others); the message goes, and the stored painting."""
    query = update.callback_query
    assert query is not None and query.data is not None
    message = query.message
    if not isinstance(message, Message):
        await answer(query, say(update, "button_expired"))
        return
    chat, user = message.chat, query.from_user.id

    async def moderates() -> bool:
        if chat.type == ChatType.PRIVATE:
            return False
        try:
            member = await context.bot.get_chat_member(chat.id, user)
        except TelegramError as err:  # not asked now: refused, the member may press again
            log.warning("delete: getChatMember for user %d in chat %d failed: %s", user, chat.id, err)
            return False
        if member.status == ChatMemberStatus.OWNER:
            return True
        return member.status == ChatMemberStatus.ADMINISTRATOR and bool(
            getattr(member, "can_delete_messages", False)
        )

    try:
        await services(context).moderation.remove_result(
            int(query.data.split(":")[1]), user, platform=TELEGRAM, chat_id=chat.id, moderates=moderates
        )
    except REFUSALS as err:
        await answer(query, refusal(update, err))
        return
    try:
        await message.delete()
    except (BadRequest, Forbidden) as err:  # e.g. older than Telegram lets a bot delete
        if "not found" not in str(err).lower():  # else deleted meanwhile: what was asked
            log.warning("delete: message %d in chat %d stays: %s", message.message_id, chat.id, err)
            await answer(query, say(update, "delete_message_stays"))
            return
    await answer(query, say(update, "deleted"))


def handlers() -> list:
    return [
        CommandHandler("stats", stats_command),
        CommandHandler("block", block_command),
        CommandHandler("unblock", unblock_command),
        CommandHandler("bot_off", bot_off_command),
        CommandHandler("bot_on", bot_on_command),
        CallbackQueryHandler(on_delete_button, pattern=r"^del:\d+$"),
    ]

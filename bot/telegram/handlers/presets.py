"""``/preset save|use|list|delete NAME`` and ``/preset chat NAME|off`` for group admins."""

from __future__ import annotations

from telegram import Update
from telegram.constants import ChatMemberStatus, ChatType
from telegram.ext import CommandHandler, ContextTypes, MessageHandler, filters

from bot.frontend import TELEGRAM
from bot.services import styles
from bot.services.refusals import REFUSALS
from bot.telegram.context import services
from bot.telegram.handlers.common import (
    escape,
    image_in,
    refusal,
    reply,
    say,
    sender_id,
    sender_is_the_group,
    split_command,
)
from bot.telegram.handlers.paint import start_job

ADMIN_STATUSES = (ChatMemberStatus.ADMINISTRATOR, ChatMemberStatus.OWNER)


async def preset_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    await run(update, context, context.args or [])


async def preset_caption(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """A photo captioned ``/preset use NAME`` (paint it) or ``/preset save NAME`` (keep it as a style)."""
    message = update.effective_message
    assert message is not None
    command, args = split_command(message.caption, context.bot.username)
    if command == "preset":
        await run(update, context, args.split())


async def run(update: Update, context: ContextTypes.DEFAULT_TYPE, args: list[str]) -> None:
    action = args[0].lower() if args else ""
    name = args[1] if len(args) > 1 else ""
    handler = {"save": _save, "use": _use, "list": _list, "delete": _delete, "chat": _chat}.get(action)
    if handler is None or (action != "list" and not name):
        await reply(update, say(update, "preset_usage"))
        return
    try:
        await handler(update, context, name, args[2:])
    except REFUSALS as err:  # a bad name, no such preset, a blend of too many styles...
        await reply(update, refusal(update, err))


async def _save(update: Update, context: ContextTypes.DEFAULT_TYPE, name: str, words: list[str]) -> None:
    """The style comes from, in order: an image the command replies to, painting ids after the name,
    or the user's latest picture (``PresetService.save_style``)."""
    s = services(context)
    message = update.effective_message
    assert message is not None
    s.presets.check_name(name)
    own = image_in(message) or image_in(message.reply_to_message)
    choice = None
    if own is not None:
        choice = styles.own_image(own.file_id, say(update, "preset_own_image"))
    elif words:
        choice = styles.parse(" ".join(words), s.catalog)
    record = await s.presets.save_style(sender_id(update), name, choice, platform=TELEGRAM)
    label = s.presets.label(record.styles, say(update, "preset_own_image"))
    await reply(update, say(update, "preset_saved", name=escape(name), style=escape(label)))


async def _use(update: Update, context: ContextTypes.DEFAULT_TYPE, name: str, _: list[str]) -> None:
    """Paint the captioned photo, or the photo the command replies to, with the preset."""
    message = update.effective_message
    assert message is not None
    photo = image_in(message) or image_in(message.reply_to_message)
    if photo is None:
        await reply(update, say(update, "preset_use_needs_photo", name=escape(name)))
        return
    record = await services(context).presets.get(sender_id(update), name, platform=TELEGRAM)
    await start_job(update, context, photo, styles.from_preset(record))


async def _list(update: Update, context: ContextTypes.DEFAULT_TYPE, _name: str, _words: list[str]) -> None:
    s = services(context)
    records = await s.presets.list(sender_id(update), platform=TELEGRAM)
    if not records:
        await reply(update, say(update, "preset_list_empty"))
        return
    own = say(update, "preset_own_image")
    lines = [
        f"• <code>{escape(r.name)}</code>: {escape(styles.describe(r.styles, s.catalog, own))}"
        for r in records
    ]
    await reply(update, say(update, "preset_list", lines="\n".join(lines)))


async def _delete(update: Update, context: ContextTypes.DEFAULT_TYPE, name: str, _: list[str]) -> None:
    await services(context).presets.delete(sender_id(update), name, platform=TELEGRAM)
    await reply(update, say(update, "preset_deleted", name=escape(name)))


async def _chat(update: Update, context: ContextTypes.DEFAULT_TYPE, name: str, _: list[str]) -> None:
    """A group's default style: what ``/style`` in reply to a photo paints with when it names nothing."""
    s = services(context)
    chat, owner = update.effective_chat, sender_id(update)
    assert chat is not None
    if chat.type == ChatType.PRIVATE:
        await reply(update, say(update, "preset_chat_groups_only"))
        return

    async def manages() -> bool:
        """An anonymous admin of this group, or a member whose status says admin."""
        if sender_is_the_group(update):
            return True
        return (await context.bot.get_chat_member(chat.id, owner)).status in ADMIN_STATUSES

    record = await s.presets.set_group_default(chat.id, name, owner, platform=TELEGRAM, manages=manages)
    if record is None:
        await reply(update, say(update, "preset_chat_cleared"))
        return
    label = s.presets.label(record.styles, say(update, "preset_own_image"))
    await reply(update, say(update, "preset_chat_set", style=escape(label)))


def handlers() -> list:
    images = filters.PHOTO | filters.Document.ALL
    return [
        CommandHandler("preset", preset_command),
        MessageHandler(images & filters.CaptionRegex(r"^/preset(@\w+)?(\s|$)"), preset_caption),
    ]

"""``/settings``: quality, strength, colours, result as photo or file, live preview and the sketch first, as
inline buttons."""

from __future__ import annotations

from telegram import InlineKeyboardButton, InlineKeyboardMarkup, Update
from telegram.ext import CallbackQueryHandler, CommandHandler, ContextTypes

from bot import replies
from bot.frontend import TELEGRAM
from bot.services.preferences import COLOR_CHOICES, RESULT_AS, STRENGTHS, Preferences
from bot.services.refusals import Refused
from bot.telegram.context import services
from bot.telegram.handlers.common import answer, language, refusal, reply, say, sender_id
from bot.texts import text
from engine.protocol import QUALITIES

# callback data: "set:<owner id>:<key>:<value>", with one-letter keys to stay far below 64 bytes
KEYS = {
    "q": "quality",
    "s": "strength",
    "c": "preserve_colors",
    "r": "result_as",
    "p": "live_preview",
    "k": "sketch",
}


def render(
    lang: str, owner: int, prefs: Preferences, *, sketches: bool = True
) -> tuple[str, InlineKeyboardMarkup]:
    """The summary and the buttons; no "Sketch first" toggle where ``SKETCH_PREVIEW`` is off (``sketches``),
    since it would change nothing."""
    quality = prefs.quality or "normal"
    colors = prefs.preserve_colors or "none"
    body = replies.settings_summary(lang, prefs, sketches=sketches)

    def button(label: str, key: str, value: str, current: bool) -> InlineKeyboardButton:
        return InlineKeyboardButton(
            ("✓ " if current else "") + label, callback_data=f"set:{owner}:{key}:{value}"
        )

    def on_off(label: str, key: str, on: bool) -> list[InlineKeyboardButton]:
        current = "on" if on else "off"
        return [
            button(f"{text(lang, label)}: {text(lang, 'preview_' + v)}", key, v, v == current)
            for v in ("on", "off")
        ]

    rows = [
        [button(text(lang, f"quality_{q}").split(" (")[0], "q", q, q == quality) for q in QUALITIES],
        [button(text(lang, f"strength_{n}"), "s", n, n == prefs.strength_name()) for n in STRENGTHS],
        [button(replies.color_choice(lang, c), "c", c, c == colors) for c in COLOR_CHOICES],
        [button(text(lang, f"result_{r}"), "r", r, r == prefs.result_as) for r in RESULT_AS]
        + on_off("settings_preview", "p", prefs.live_preview),
    ]
    if sketches:
        rows.append(on_off("settings_sketch", "k", prefs.sketch))
    return body, InlineKeyboardMarkup(rows)


async def settings_command(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    owner = sender_id(update)
    s = services(context)
    prefs = await s.users.preferences(owner, platform=TELEGRAM)
    body, keyboard = render(language(update), owner, prefs, sketches=s.settings.sketch_preview)
    await reply(update, body, reply_markup=keyboard)


async def on_setting(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    query = update.callback_query
    assert query is not None and query.data is not None
    _, owner, key, value = query.data.split(":", 3)
    if int(owner) != query.from_user.id:
        await answer(query, say(update, "not_your_settings"))
        return
    s = services(context)
    try:
        prefs, changed = await s.users.change(query.from_user.id, KEYS.get(key, ""), value, platform=TELEGRAM)
    except Refused as err:
        await answer(query, refusal(update, err))
        return
    await answer(query, say(update, "settings_saved"))
    if not changed:
        return  # the button of the current choice: nothing to save, and Telegram refuses an unchanged edit
    body, keyboard = render(language(update), query.from_user.id, prefs, sketches=s.settings.sketch_preview)
    await query.edit_message_text(body, reply_markup=keyboard)


def handlers() -> list:
    return [
        CommandHandler("settings", settings_command),
        CallbackQueryHandler(on_setting, pattern=r"^set:\d+:[a-z]:[a-z_]+$"),
    ]

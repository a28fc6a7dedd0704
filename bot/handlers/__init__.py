"""Telegram handlers, one module per feature. Each module's ``handlers()`` lists what it registers;
the order here is the order PTB tries them."""

from __future__ import annotations

from telegram.ext import Application

from bot.handlers import fallback, paint, presets, queue, settings, start
from bot.handlers.errors import error_handler


def register(application: Application) -> None:
    for module in (presets, paint, start, settings, queue, fallback):  # /preset captions before photos
        application.add_handlers(module.handlers())
    application.add_error_handler(error_handler)

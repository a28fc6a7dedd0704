"""Where Telegram handlers find the shared core and the Telegram-only pieces: ``application.bot_data``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from telegram.ext import Application, ContextTypes

from bot.context import Services

if TYPE_CHECKING:
    from bot.services.albums import AlbumCollector
    from bot.telegram.frontend import TelegramFrontend
    from bot.telegram.handlers.paint import AlbumItem

KEY = "services"
FRONTEND = "frontend"
ALBUMS = "albums"
RUNTIME = "runtime"  # only when the Application runs the core itself


def _application(source: ContextTypes.DEFAULT_TYPE | Application) -> Application:
    return source if isinstance(source, Application) else source.application


def services(source: ContextTypes.DEFAULT_TYPE | Application) -> Services:
    """From a handler's context, or from the application itself (start-up and shutdown hooks)."""
    return _application(source).bot_data[KEY]


def frontend(source: ContextTypes.DEFAULT_TYPE | Application) -> TelegramFrontend:
    return _application(source).bot_data[FRONTEND]


def albums(source: ContextTypes.DEFAULT_TYPE | Application) -> AlbumCollector[AlbumItem]:
    return _application(source).bot_data[ALBUMS]

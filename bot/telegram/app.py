"""Builds the python-telegram-bot Application: the Telegram front end over the shared core.

Alone (``build_application(settings)``, as the Telegram tests and the load benchmark use it) the
Application owns the core and runs it from its hooks; next to other front ends (``python -m bot``) it is
handed the core that ``bot.runtime`` runs. Start-up (``post_init``): set the command menu and add the
Telegram front end to the notifier; shutdown (``post_shutdown``) stops what is Telegram's. Updates come by
long polling, or by webhook when ``TELEGRAM_WEBHOOK_URL`` is set (``bot.telegram.webhook``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator

from telegram import BotCommand, BotCommandScopeAllChatAdministrators, LinkPreviewOptions, Update
from telegram.constants import ParseMode
from telegram.error import TelegramError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, ContextTypes, Defaults, TypeHandler

from bot import retrying
from bot.config import Settings
from bot.context import Services
from bot.frontend import TELEGRAM
from bot.redaction import protect
from bot.runtime import QueueFactory, Runtime, build_services
from bot.services.albums import AlbumCollector
from bot.telegram import failures
from bot.telegram.context import ALBUMS, FRONTEND, KEY, RUNTIME, services
from bot.telegram.frontend import TelegramFrontend
from bot.telegram.handlers import paint, register
from bot.telegram.moves import ChatMoves
from bot.telegram.polling import Poller
from bot.telegram.request import TelegramRequest, quiet_rate_limiter
from bot.telegram.status import StatusBoard
from bot.telegram.webhook import WEBHOOK, WebhookConfig, WebhookServer, webhook_config
from bot.texts import LANGUAGES, text

log = logging.getLogger(__name__)

COMMANDS = (
    "start", "styles", "style", "surprise", "strip", "layers", "forming", "settings", "preset", "queue",
    "cancel", "help",
)  # fmt: skip
# In the menu of groups' administrators only, after the public ones (bot/telegram/handlers/admin.py); the
# bot's own admin commands (/stats, /block, /unblock) are in no menu.
GROUP_ADMIN_COMMANDS = ("bot_off", "bot_on")
ALLOWED_UPDATES = Update.ALL_TYPES  # what polling asks for and setWebhook registers: one list for both


def build_application(
    settings: Settings, queue_factory: QueueFactory | None = None, *, core: Services | None = None
) -> Application:
    """The Telegram bot, ready for ``running``; without ``core`` it builds and runs its own."""
    token = settings.telegram_bot_token
    if token is None:
        raise ValueError("TELEGRAM_BOT_TOKEN is not set")
    protect(token.get_secret_value())  # whichever program builds the bot
    quiet_rate_limiter()
    api = settings.telegram_api_url
    application = (
        ApplicationBuilder()
        .token(token.get_secret_value())
        .base_url(f"{api}/bot")
        .base_file_url(f"{api}/file/bot")
        .defaults(
            Defaults(parse_mode=ParseMode.HTML, link_preview_options=LinkPreviewOptions(is_disabled=True))
        )
        .rate_limiter(AIORateLimiter(max_retries=3))
        .request(TelegramRequest(connection_pool_size=256))  # PTB's own pool size; 5xx pages quieter
        .get_updates_request(TelegramRequest())
        .updater(None)  # our own polling (bot.telegram.polling) confirms an update once it is handled
        .concurrent_updates(True)  # a slow download for one user must not hold up everyone else
        .post_init(_post_init)
        .post_shutdown(_post_shutdown)
        .build()
    )
    if core is None:
        core = build_services(settings, queue_factory)
        application.bot_data[RUNTIME] = Runtime(core)
    moves = ChatMoves(core.chats, core.jobs)
    board = StatusBoard(
        application.bot,
        core.jobs,
        interval_private=settings.status_interval_private,
        interval_group=settings.status_interval_group,
        moves=moves,
    )
    application.bot_data[KEY] = core
    application.bot_data[FRONTEND] = TelegramFrontend(
        application.bot, core.users, core.notifier, board, moves
    )
    application.bot_data[ALBUMS] = AlbumCollector(settings.album_wait_seconds, paint.on_album)
    webhook = webhook_config(settings)
    if webhook is not None:
        application.bot_data[WEBHOOK] = webhook
    application.add_handler(TypeHandler(Update, track_user), group=-1)
    register(application)
    return application


class PollingEnded(RuntimeError):
    """Polling stopped by itself (Telegram refused the token): the process should end, not stay deaf."""


@contextlib.asynccontextmanager
async def running(application: Application, *, stop: asyncio.Event | None = None) -> AsyncIterator[None]:
    """The bot running inside another program's event loop (``python -m bot``, the end-to-end tests, the
    load benchmark): PTB's hooks in ``run_polling``'s order, with our own polling (``bot.telegram.polling``:
    an update is confirmed only once its handler finished) or, with a webhook configured, the webhook
    server (polling's start deletes the webhook, which is how going back to polling works). Polling that
    ends by itself (a revoked token) sets ``stop`` and raises ``PollingEnded`` on the way out."""
    webhook: WebhookConfig | None = application.bot_data.get(WEBHOOK)
    async with application:
        assert application.post_init is not None
        assert application.post_shutdown is not None
        await application.post_init(application)
        try:
            poller = Poller(application, ALLOWED_UPDATES) if webhook is None else None
            server = None if webhook is None else WebhookServer(application, webhook, ALLOWED_UPDATES)
            await application.start()
            watch = None
            try:
                if server is not None:
                    await server.start()
                if poller is not None:
                    await poller.start()
                    if stop is not None:
                        watch = asyncio.create_task(_stop_when_ended(poller, stop), name="polling-watch")
                yield
            finally:
                if watch is not None:
                    watch.cancel()
                if server is not None:
                    await server.stop()
                if poller is not None:
                    await poller.stop()
                await application.stop()
            if poller is not None and poller.failed is not None:
                raise PollingEnded(str(poller.failed))
        finally:
            await application.post_shutdown(application)


async def _stop_when_ended(poller: Poller, stop: asyncio.Event) -> None:
    await poller.ended.wait()
    stop.set()


async def track_user(update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
    """Keep each sender's row (language, name) current; runs before every other handler of the update.
    A chat that sends (an anonymous admin's group, a channel) gets a row of its own: see ``sender_id``."""
    message, user, users = update.effective_message, update.effective_user, services(context).users
    if update.callback_query is None and message is not None and message.sender_chat is not None:
        chat = message.sender_chat
        await users.remember(
            chat.id,
            platform=TELEGRAM,
            username=chat.username,
            display_name=chat.effective_name,
            language=None,
        )
    elif user is not None and not user.is_bot:
        await users.remember(
            user.id,
            platform=TELEGRAM,
            username=user.username,
            display_name=user.first_name,
            language=user.language_code,
        )


async def _post_init(application: Application) -> None:
    s = services(application)
    runtime: Runtime | None = application.bot_data.get(RUNTIME)
    if runtime is not None and not await runtime.prepare():  # waits while another process has the jobs
        return  # stopped meanwhile: PTB shuts down without polling (post_shutdown stops the runtime)
    await _set_commands(application)
    s.notifier.frontends[TelegramFrontend.platform] = application.bot_data[FRONTEND]
    if runtime is not None:
        await runtime.start()
    log.info("Telegram front end is up as @%s", application.bot.username)


async def _set_commands(application: Application) -> None:
    """The command menu in each language; groups' administrators also see how to switch the bot off.

    Best effort: passing failures are tried again (``bot.retrying``), then one WARNING and the start goes
    on with the menu of the last start (a start that died here would crash-loop through an outage)."""
    try:
        for language in LANGUAGES:
            code = None if language == "en" else language
            commands = [BotCommand(name, text(language, f"command_{name}")) for name in COMMANDS]
            admins = [BotCommand(name, text(language, f"command_{name}")) for name in GROUP_ADMIN_COMMANDS]
            for menu, scope in (
                (commands, None),
                (commands + admins, BotCommandScopeAllChatAdministrators()),
            ):
                await retrying.retried(
                    functools.partial(application.bot.set_my_commands, menu, scope=scope, language_code=code),
                    passing=failures.passing,
                    asked=failures.asked,
                    what="setting the command menu",
                )
    except TelegramError as err:
        if not failures.is_passing(err):
            raise  # a refused menu is a bug in COMMANDS or the texts: say so at once
        log.warning("the command menu was not updated (%s); the last one stays", err)


async def _post_shutdown(application: Application) -> None:
    await application.bot_data[ALBUMS].close()
    runtime: Runtime | None = application.bot_data.get(RUNTIME)
    if runtime is not None:
        await runtime.stop()
    else:
        await application.bot_data[FRONTEND].close()

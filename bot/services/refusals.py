"""Why the core will not do what was asked: one exception family, rendered by one function
(``bot.replies.refusal``) on every platform.

A refusal is the user's to fix (a limit, a bad picture, someone else's button), never a bug: a front end
catches ``REFUSALS`` and shows the text, and anything else goes to its error handler.
"""

from __future__ import annotations

from engine.errors import StylebotError


class Refused(Exception):
    """``key`` names the text in ``bot/texts``; ``values`` fill it (raw: the renderer escapes them)."""

    def __init__(self, key: str, **values: object) -> None:
        super().__init__(key)
        self.key, self.values = key, values


class NeedsStyleError(Refused):
    """Nothing named, and the group has no default style."""

    def __init__(self) -> None:
        super().__init__("figure_needs_style")


class NoPaintingReadyError(Refused):
    """No painting is on this disk yet (offline, or the background fetch has not brought any)."""

    def __init__(self) -> None:
        super().__init__("surprise_none_ready")


class NotManagerError(Refused):
    """Only the group's admins (or the bot's) may set its default style."""

    def __init__(self) -> None:
        super().__init__("preset_chat_admins_only")


class NotBotAdminError(Refused):
    """Only the bot's admins (``ADMIN_IDS``) may see the statistics and block people."""

    def __init__(self) -> None:
        super().__init__("admin_only")


class NotChatAdminError(Refused):
    """Only a group's (a server's) own admins, or the bot's, may switch the bot off and on there."""

    def __init__(self) -> None:
        super().__init__("chat_switch_admins_only")


class BlockedError(Refused):
    """The bot's admins blocked this person: no new jobs (``bot.services.moderation``)."""

    def __init__(self) -> None:
        super().__init__("blocked")


class ChatOffError(Refused):
    """The group's (the server's) admins switched the bot off there."""

    def __init__(self) -> None:
        super().__init__("chat_off")


REFUSALS = (Refused, StylebotError)  # what a handler catches and shows (err: Refused | StylebotError)

"""Secrets never reach a log: every record is scrubbed of the bot's token when it is created.

httpx and python-telegram-bot log request URLs (``/bot<token>/getUpdates``) at INFO or DEBUG, and
tracebacks repeat them. A filter on one handler or logger misses records of handlers configured later
(bench, tests, a library's own setup), so the scrubbing sits in the log record factory instead, which
every logger of the process uses, and runs only for records a logger actually emits.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

# Anything shaped like a bot token (``123456789:AA...``), known to this process or not.
TOKEN_SHAPE = re.compile(r"\d{5,}:[A-Za-z0-9_-]{30,}")
REDACTED = "<token>"

_secrets: set[str] = set()
_lock = threading.Lock()
_installed = False
_formatter = logging.Formatter()


def protect(*secrets: str) -> None:
    """From now on, redact ``secrets`` (and any token-shaped text) in every log record of this process."""
    global _installed
    with _lock:
        _secrets.update(secret for secret in secrets if secret)
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            _scrub(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


def redact(text: str) -> str:
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
        if ":" in secret:  # the part after the bot id is the secret one; it may appear on its own
            text = text.replace(secret.split(":", 1)[1], REDACTED)
    return TOKEN_SHAPE.sub(REDACTED, text)


def _scrub(record: logging.LogRecord) -> None:
    """Format the message now (args may hold the token) and keep only the redacted text."""
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging reports it itself, with the raw args
        return
    record.msg, record.args = redact(message), None
    if record.exc_info and not record.exc_text:
        record.exc_text = redact(_formatter.formatException(record.exc_info))
    if record.stack_info:
        record.stack_info = redact(record.stack_info)

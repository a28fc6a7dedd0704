"""PTB's HTTP client, quieter about Telegram's outages.

When the Bot API server behind Telegram's front is down, the front answers 502 (or 503, 504) with an HTML
page. PTB tries to read every error answer as JSON and, failing, logs the page with a traceback at ERROR
before raising ``NetworkError`` (``BaseRequest.parse_json_payload``): under a bad minute, a storm of
tracebacks that hide real bugs. Here such an answer becomes one WARNING line naming the method, and the
caller gets the ``NetworkError`` PTB raises for any 5xx, which the front end treats as passing
(``bot.telegram.failures``). A malformed answer that is not a 5xx still gets PTB's traceback.

Likewise PTB's ``AIORateLimiter`` logs flood control that outlasts its own retries with a traceback at
ERROR before raising ``RetryAfter``; every caller here waits that out as a passing failure, so
``quiet_rate_limiter`` makes it one WARNING line.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus

from telegram.request import BaseRequest, HTTPXRequest, RequestData

log = logging.getLogger(__name__)


class TelegramRequest(HTTPXRequest):
    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: float | object | None = BaseRequest.DEFAULT_NONE,
        write_timeout: float | object | None = BaseRequest.DEFAULT_NONE,
        connect_timeout: float | object | None = BaseRequest.DEFAULT_NONE,
        pool_timeout: float | object | None = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        code, payload = await super().do_request(
            url,
            method,
            request_data,
            read_timeout,  # type: ignore[arg-type]
            write_timeout,  # type: ignore[arg-type]
            connect_timeout,  # type: ignore[arg-type]
            pool_timeout,  # type: ignore[arg-type]
        )
        if code < HTTPStatus.INTERNAL_SERVER_ERROR or _is_json(payload):
            return code, payload
        try:
            reason = f"{HTTPStatus(code).phrase} ({code})"
        except ValueError:
            reason = f"HTTP {code}"
        endpoint = url.rsplit("/", 1)[-1]  # the method's name; the token is in the part before it
        log.warning(
            "Telegram answered %s with %s and a page instead of the Bot API's answer", endpoint, reason
        )
        return code, json.dumps({"ok": False, "error_code": code, "description": reason}).encode()


def _is_json(payload: bytes) -> bool:
    try:
        json.loads(payload)
    except ValueError:
        return False
    return True


class _OutlastedFloodControl(logging.Filter):
    """PTB's "Rate limit hit after maximum of N retries", as a WARNING without the traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith("Rate limit hit after maximum"):
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info, record.exc_text = None, None
        return True


def quiet_rate_limiter() -> None:
    """Install ``_OutlastedFloodControl`` on PTB's rate limiter's logger (once, however many bots)."""
    logger = logging.getLogger("telegram.ext.AIORateLimiter")
    if not any(isinstance(f, _OutlastedFloodControl) for f in logger.filters):
        logger.addFilter(_OutlastedFloodControl())

"""The scrubbing itself: known secrets, token-shaped text, arguments and tracebacks."""

from __future__ import annotations

import logging

import pytest

from bot.redaction import protect, redact


def test_known_and_token_shaped_secrets_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    protect("42:short-test-secret")
    caplog.set_level(logging.DEBUG)
    log = logging.getLogger("tests.redaction")
    log.debug("url %s", "http://h/bot42:short-test-secret/getMe")
    log.info("someone else's token 987654321:AAFakeFakeFakeFakeFakeFakeFakeFake0 in a message")
    try:
        raise ValueError("http://h/file/bot42:short-test-secret/x.jpg")
    except ValueError:
        log.exception("download failed")
    assert "short-test-secret" not in caplog.text
    assert "AAFakeFake" not in caplog.text
    assert "bot<token>/getMe" in caplog.text
    assert "file/bot<token>/x.jpg" in caplog.text
    assert redact("nothing secret: 12:34, 100%") == "nothing secret: 12:34, 100%"

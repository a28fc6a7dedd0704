"""The texts of ``bot/texts`` are a small HTML subset (Telegram's parse mode); Discord speaks Markdown."""

from __future__ import annotations

import html
import re

_TAGS = {"b": "**", "strong": "**", "i": "*", "em": "*", "code": "`"}


def markdown(text: str) -> str:
    """``<b>x</b>`` → ``**x**``, ``<code>`` → backticks; other tags dropped, entities decoded."""

    def tag(match: re.Match[str]) -> str:
        return _TAGS.get(match["name"].lower(), "")

    return html.unescape(re.sub(r"</?(?P<name>[a-zA-Z]+)[^>]*>", tag, text))

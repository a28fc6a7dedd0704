"""The texts of ``bot/texts`` are a small HTML subset (Telegram's parse mode); Discord speaks Markdown.

In the HTML every character outside a tag is literal: the core HTML-escapes what people typed (preset names,
style images' file names) before formatting it in. So ``markdown`` escapes all literal text for Discord, and
a name such as ``**@everyone** _x_`` is shown as typed, neither bold nor a mention, wherever a text carries
it (statuses, captions, lists, answers). ``shown`` is the same escaping for a name put into Markdown directly.
"""

from __future__ import annotations

import html
import re

import discord

_TAGS = {"b": "**", "strong": "**", "i": "*", "em": "*", "code": "`"}
_MARKUP = re.compile(
    r"<(?P<close>/?)(?P<name>[a-zA-Z]+)[^>]*>"  # an HTML tag
    r"|<(?:@[!&]?|#)[0-9]+>"  # a Discord mention the bot's code put in (people's text arrives escaped)
)
_CODE_TICK = "ˋ"  # stands for a backtick inside a code span, which no escape can hold
_INNER_UNDERSCORE = re.compile(r"(?<=[0-9A-Za-z])\\_(?=[0-9A-Za-z])")  # a_b: Discord formats no single one


def shown(name: str) -> str:
    """A name as typed, for Discord Markdown: no formatting, no mention (``@everyone`` pings no one).
    A lone underscore inside a word stays as it is (``starry_night``): Discord italicizes only from a
    word's edge, and the text reads as typed when copied."""
    escaped = _INNER_UNDERSCORE.sub("_", discord.utils.escape_markdown(name))
    return discord.utils.escape_mentions(escaped)


def markdown(text: str) -> str:
    """``<b>x</b>`` → ``**x**``, ``<code>`` → backticks, other tags dropped; the literal text escaped."""
    parts: list[str] = []
    in_code = False
    position = 0
    for match in _MARKUP.finditer(text):
        parts.append(_literal(text[position : match.start()], in_code))
        position = match.end()
        name = (match["name"] or "").lower()
        if not name:
            parts.append(match[0])
            continue
        if name == "code":
            in_code = not match["close"]
        parts.append(_TAGS.get(name, ""))
    parts.append(_literal(text[position:], in_code))
    return "".join(parts)


def _literal(text: str, in_code: bool) -> str:
    """Inside a code span Discord shows everything as it is, a backtick excepted (mentions are escaped there
    too, invisibly). Line by line, since ``escape_markdown``'s line-start patterns would otherwise match
    across a newline."""
    plain = html.unescape(text)
    if in_code:
        return discord.utils.escape_mentions(plain.replace("`", _CODE_TICK))
    return "\n".join(shown(line) for line in plain.split("\n"))

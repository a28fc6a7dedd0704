"""Inline results without a server: what a result's file id was sent as decides the result's kind, and an
id whose kind cannot be told is left out rather than risking Telegram refusing the whole answer."""

from __future__ import annotations

import dataclasses

from telegram import (
    InlineQueryResultCachedDocument,
    InlineQueryResultCachedMpeg4Gif,
    InlineQueryResultCachedPhoto,
)

from bot.db import JobRecord
from bot.services import styles
from bot.telegram.handlers.inline import file_kind, result
from engine.catalog import load_catalog

PHOTO_ID = "AgACAgIAAxkBAAIBZ2V0cGhvdG8"  # the shapes of real Bot API ids
DOCUMENT_ID = "BQACAgIAAxkBAAIBaGV0ZG9jdW1lbnQ"


def job(file_id: str, refs: list[dict]) -> JobRecord:
    fields: dict[str, object] = {f.name: None for f in dataclasses.fields(JobRecord)}
    fields.update(id=5, styles=refs, style_label="Udnie <&>", settings={}, result_file_id=file_id)
    return JobRecord(**fields)  # type: ignore[arg-type]


def test_the_kind_is_read_from_the_file_id() -> None:
    assert file_kind(PHOTO_ID) == "photo"
    assert file_kind(DOCUMENT_ID) == "document"
    assert file_kind("CgACAgIAAxkBAAIBaWFuaW1hdGlvbg") == "animation"  # a clip
    for other in ("CAACAgIAAxkBAA", "BAACAgIAAxkBAA", "", "!!!!", "Ag"):  # a sticker, a video, nonsense
        assert file_kind(other) is None, other


def test_a_result_is_a_cached_photo_or_document_with_its_style_link() -> None:
    udnie = list(styles.paintings(["udnie"], load_catalog()).refs)
    photo = result("en", job(PHOTO_ID, udnie), "stylebot")
    assert isinstance(photo, InlineQueryResultCachedPhoto)
    assert (photo.id, photo.photo_file_id) == ("5", PHOTO_ID)
    assert photo.caption == "Udnie &lt;&amp;&gt;, painted by @stylebot"  # the label escaped for HTML
    assert photo.reply_markup is not None
    assert photo.reply_markup.inline_keyboard[0][0].url == "https://t.me/stylebot?start=udnie"
    document = result("en", job(DOCUMENT_ID, udnie), "stylebot")
    assert isinstance(document, InlineQueryResultCachedDocument)
    assert (document.title, document.document_file_id) == ("Udnie <&>", DOCUMENT_ID)

    clip = result("en", job("CgACAgIAAxkBAAIBaWFuaW1hdGlvbg", udnie), "stylebot")
    assert isinstance(clip, InlineQueryResultCachedMpeg4Gif)
    own = list(styles.own_image(PHOTO_ID, "own").refs)
    assert result("en", job(PHOTO_ID, own), "stylebot").reply_markup is None  # type: ignore[union-attr]
    assert result("en", job("CAACAgIAAxkBAA", udnie), "stylebot") is None

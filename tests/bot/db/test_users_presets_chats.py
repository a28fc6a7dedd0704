"""Users, presets and chat defaults on both back ends."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError, StatementError

from bot.db import ChatDefaultsRecord, Database, PresetRecord, UserRecord
from bot.db.models import Job, Preset, User
from engine.protocol import StyleSettings, settings_from_dict, settings_to_dict

STARRY = [{"preset": "starry_night", "weight": 1.0}]
OWN = [
    {"preset": "the_scream", "weight": 0.25},
    {"file_id": "AgACAgIAAxkBAAIB", "file_unique_id": "AQADx7Ex", "weight": 0.75},
]


def assert_aware_utc(*values: datetime | None) -> None:
    for value in values:
        assert value is not None
        assert value.tzinfo is not None
        assert value.utcoffset() == timedelta(0)


def assert_recent(value: datetime) -> None:
    assert abs(datetime.now(UTC) - value) < timedelta(minutes=1)


# Users


async def test_upsert_user_creates_then_refreshes(database: Database) -> None:
    created = await database.upsert_user(42, "ada", "Ada", "en", platform="telegram")
    assert isinstance(created, UserRecord)
    assert (created.id, created.username, created.first_name, created.language_code) == (
        42,
        "ada",
        "Ada",
        "en",
    )
    assert created.settings == {}
    assert created.created_at == created.last_seen_at
    assert_aware_utc(created.created_at, created.last_seen_at)
    assert_recent(created.created_at)

    await database.update_user_settings(42, {"quality": "high"}, platform="telegram")
    await asyncio.sleep(0.01)
    again = await database.upsert_user(42, None, "Ada L.", "ru", platform="telegram")
    assert (again.username, again.first_name, again.language_code) == (None, "Ada L.", "ru")
    assert again.created_at == created.created_at
    assert again.last_seen_at > created.last_seen_at
    assert again.settings == {"quality": "high"}  # upsert never touches settings
    assert await database.get_user(42, platform="telegram") == again


async def test_concurrent_upserts_of_one_user(database: Database) -> None:
    results = await asyncio.gather(
        *(database.upsert_user(7, f"u{i}", "U", "en", platform="telegram") for i in range(8))
    )
    assert {r.id for r in results} == {7}
    assert (await database.get_user(7, platform="telegram")) is not None


async def test_get_unknown_user(database: Database) -> None:
    assert await database.get_user(404, platform="telegram") is None
    assert await database.update_user_settings(404, {"quality": "draft"}, platform="telegram") is None


async def test_user_settings_round_trip(database: Database) -> None:
    await database.upsert_user(5, "bo", "Bo", None, platform="telegram")
    settings = StyleSettings(
        quality="high", strength=0.8, preserve_colors="luminance", style_layers=("conv1_1",)
    )
    stored = {**settings_to_dict(settings, only_changed=True), "result_as": "document", "live_preview": False}
    record = await database.update_user_settings(5, stored, platform="telegram")
    assert record is not None
    assert record.settings == stored
    loaded = await database.get_user(5, platform="telegram")
    assert loaded is not None
    assert loaded.settings == stored
    assert settings_from_dict(loaded.settings) == settings

    emptied = await database.update_user_settings(5, {}, platform="telegram")
    assert emptied is not None
    assert emptied.settings == {}


async def test_records_are_frozen(database: Database) -> None:
    record = await database.upsert_user(8, "x", "X", "en", platform="telegram")
    with pytest.raises(AttributeError):
        record.username = "y"  # type: ignore[misc]


async def test_naive_datetimes_are_refused(database: Database, user: int) -> None:
    with pytest.raises(ValueError, match="aware"):
        await database.count_created_since(user, datetime(2024, 1, 1), platform="telegram")
    with pytest.raises(StatementError, match="naive datetime"):
        async with database.session() as session:
            await session.execute(update(Job).values(started_at=datetime(2024, 1, 1)))


# Presets


async def test_save_get_list_count_delete(database: Database, user: int) -> None:
    saved = await database.save_preset(user, "Night", STARRY, {"strength": 0.7}, platform="telegram")
    assert isinstance(saved, PresetRecord)
    assert (saved.user_id, saved.name, saved.styles, saved.settings) == (
        user,
        "Night",
        STARRY,
        {"strength": 0.7},
    )
    assert_aware_utc(saved.created_at, saved.updated_at)

    await database.save_preset(user, "autumn", OWN, {}, platform="telegram")
    assert [p.name for p in await database.list_presets(user, platform="telegram")] == ["autumn", "Night"]
    assert await database.count_presets(user, platform="telegram") == 2
    assert await database.get_preset(user, "night", platform="telegram") == saved
    assert await database.get_preset(user, "  NIGHT ", platform="telegram") == saved

    assert await database.delete_preset(user, "NiGhT", platform="telegram") is True
    assert await database.delete_preset(user, "night", platform="telegram") is False
    assert await database.get_preset(user, "Night", platform="telegram") is None
    assert await database.count_presets(user, platform="telegram") == 1


async def test_save_overwrites_by_case_insensitive_name(database: Database, user: int) -> None:
    first = await database.save_preset(user, "Мой стиль", STARRY, {"quality": "draft"}, platform="telegram")
    await asyncio.sleep(0.01)
    second = await database.save_preset(user, "МОЙ СТИЛЬ", OWN, {"quality": "high"}, platform="telegram")
    assert second.id == first.id
    assert second.name == "МОЙ СТИЛЬ"  # the latest spelling
    assert (second.styles, second.settings) == (OWN, {"quality": "high"})
    assert second.created_at == first.created_at
    assert second.updated_at > first.updated_at
    assert await database.count_presets(user, platform="telegram") == 1
    assert await database.get_preset(user, "мой стиль", platform="telegram") == second


async def test_preset_names_are_per_user(database: Database, user: int) -> None:
    await database.upsert_user(2002, "bob", "Bob", "en", platform="telegram")
    a = await database.save_preset(user, "Mine", STARRY, {}, platform="telegram")
    b = await database.save_preset(2002, "MINE", OWN, {}, platform="telegram")
    assert a.id != b.id
    assert await database.list_presets(2002, platform="telegram") == [b]
    assert await database.list_presets(404, platform="telegram") == []
    assert await database.count_presets(404, platform="telegram") == 0


async def test_database_enforces_preset_name_uniqueness(database: Database, user: int) -> None:
    now = datetime.now(UTC)
    row = {"styles": [], "settings": {}, "created_at": now, "updated_at": now, "user_id": user}
    async with database.session() as session:
        session.add(Preset(name="Sea", name_key="sea", **row))
    with pytest.raises(IntegrityError):
        async with database.session() as session:
            session.add(Preset(name="SEA", name_key="sea", **row))


@pytest.mark.parametrize("name", ["", "   ", "x" * 33])
async def test_preset_name_length(database: Database, user: int, name: str) -> None:
    with pytest.raises(ValueError, match="preset name"):
        await database.save_preset(user, name, STARRY, {}, platform="telegram")


async def test_preset_needs_its_user(database: Database) -> None:
    with pytest.raises(IntegrityError):
        await database.save_preset(999, "orphan", STARRY, {}, platform="telegram")


async def test_deleting_a_user_deletes_their_presets(database: Database, user: int) -> None:
    await database.save_preset(user, "one", STARRY, {}, platform="telegram")
    async with database.session() as session:
        await session.delete(await session.get(User, ("telegram", user)))
    assert await database.count_presets(user, platform="telegram") == 0


# Chat defaults


async def test_chat_defaults(database: Database) -> None:
    chat = -1001234567890  # supergroup ids do not fit in 32 bits
    assert await database.get_chat_defaults(chat, platform="telegram") is None

    first = await database.set_chat_defaults(
        chat, STARRY, {"quality": "draft"}, updated_by=42, platform="telegram"
    )
    assert isinstance(first, ChatDefaultsRecord)
    assert (first.chat_id, first.styles, first.settings, first.updated_by) == (
        chat,
        STARRY,
        {"quality": "draft"},
        42,
    )
    assert_aware_utc(first.updated_at)

    second = await database.set_chat_defaults(
        chat, None, {"strength": 0.2}, updated_by=43, platform="telegram"
    )
    assert (second.styles, second.settings, second.updated_by) == (None, {"strength": 0.2}, 43)
    assert await database.get_chat_defaults(chat, platform="telegram") == second
    async with database.session() as session:
        # None is SQL NULL, not the JSON value null
        is_null = await session.scalar(
            text("SELECT styles IS NULL FROM chat_defaults WHERE chat_id = :c"), {"c": chat}
        )
        assert is_null in (True, 1)

    assert await database.clear_chat_defaults(chat, platform="telegram") is True
    assert await database.clear_chat_defaults(chat, platform="telegram") is False
    assert await database.get_chat_defaults(chat, platform="telegram") is None


NESTED: dict[str, Any] = {
    "quality": "high",
    "strength": 0.125,
    "size": None,
    "multiscale": False,
    "style_layer_weights": [1.0, 0.5, 0.25, 0.125, 0.0625],
    "note": 'Ночь, 星空 — "quoted" \\ back',
    "nested": {"deep": [1, {"x": [True, None]}]},
    "big": 2**53,
}


async def test_json_round_trips(database: Database, user: int) -> None:
    preset = await database.save_preset(user, "json", OWN, NESTED, platform="telegram")
    assert (await database.get_preset(user, "json", platform="telegram")) == preset
    assert preset.settings == NESTED
    user_record = await database.update_user_settings(user, NESTED, platform="telegram")
    assert user_record is not None
    assert user_record.settings == NESTED
    chat = await database.set_chat_defaults(1, OWN, NESTED, None, platform="telegram")
    assert (await database.get_chat_defaults(1, platform="telegram")) == chat
    assert chat.styles == OWN
    assert chat.settings == NESTED
    async with database.session() as session:
        raw = await session.scalar(select(Preset.settings).where(Preset.user_id == user))
    assert raw == NESTED


async def test_personal_style_images_keep_the_newest_and_list_without_bytes(database: Database) -> None:
    await database.upsert_user(5, None, "Kim", None, platform="discord")
    ids = [
        (await database.add_style_image("discord", 5, f"s{n}", data=bytes([n]) * 10, keep=3)).id
        for n in range(5)
    ]
    listed = await database.list_style_images("discord", 5)
    assert [image.id for image in listed] == ids[:1:-1]  # the three newest, newest first
    assert all(image.data is None for image in listed)
    assert await database.get_style_image("discord", 5, ids[0]) is None  # the oldest went
    kept = await database.get_style_image("discord", 5, ids[-1])
    assert kept is not None
    assert kept.data == bytes([4]) * 10

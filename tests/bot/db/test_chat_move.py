"""A chat's new id (a Telegram group become a supergroup): everything kept under the old one moves in one
step, what the new id has already stays, and a second move finds nothing left; on both back ends."""

from __future__ import annotations

import asyncio

from bot.db import NO_MESSAGE, ChatMove, Database

from .test_jobs import new_job
from .test_users_presets_chats import STARRY

OLD, NEW = -4518810793, -1002471352452
NOTHING = ChatMove((), False, False, False)


async def test_jobs_defaults_and_the_switch_move_to_the_new_id(database: Database, user: int) -> None:
    waiting = await new_job(database, user, chat_id=OLD, chat_type="group", status_message_id=12)
    done = await new_job(database, user, chat_id=OLD, chat_type="group")
    await database.claim_job(done.id, "w")
    await database.finish_job(done.id, width=8, height=8)
    elsewhere = await new_job(database, user, chat_id=-555, chat_type="group")
    discord = await new_job(database, user, chat_id=OLD, chat_type="guild", platform="discord")
    await database.set_chat_defaults(OLD, STARRY, {"quality": "high"}, user, platform="telegram")
    await database.set_chat_enabled("telegram", OLD, False, by=user)

    moved = await database.move_chat("telegram", OLD, NEW)

    assert moved == ChatMove((waiting.id, done.id), True, True, False, active=(waiting.id,))
    assert moved.anything
    for job_id in (waiting.id, done.id):
        job = await database.get_job(job_id)
        assert job is not None
        assert job.chat_id == NEW
        assert (job.source_message_id, job.status_message_id) == (NO_MESSAGE, None)  # old ids name nothing
    assert (await database.get_job(elsewhere.id)).chat_id == -555  # type: ignore[union-attr]
    assert (await database.get_job(discord.id)).chat_id == OLD  # type: ignore[union-attr]  # another platform
    assert await database.get_chat_defaults(OLD, platform="telegram") is None
    defaults = await database.get_chat_defaults(NEW, platform="telegram")
    assert defaults is not None
    assert (defaults.styles, defaults.settings) == (STARRY, {"quality": "high"})
    assert await database.is_chat_enabled("telegram", OLD)
    assert not await database.is_chat_enabled("telegram", NEW)

    assert await database.move_chat("telegram", OLD, NEW) == NOTHING  # idempotent
    assert (await database.get_job(waiting.id)).chat_id == NEW  # type: ignore[union-attr]


async def test_what_the_new_id_has_already_stays(database: Database, user: int) -> None:
    await database.set_chat_defaults(OLD, STARRY, {"quality": "high"}, user, platform="telegram")
    await database.set_chat_defaults(NEW, None, {"quality": "draft"}, user, platform="telegram")
    await database.set_chat_enabled("telegram", OLD, False, by=user)
    await database.set_chat_enabled("telegram", NEW, False, by=user)

    assert await database.move_chat("telegram", OLD, NEW) == ChatMove((), True, True, False)

    defaults = await database.get_chat_defaults(NEW, platform="telegram")
    assert defaults is not None
    assert defaults.settings == {"quality": "draft"}
    assert await database.get_chat_defaults(OLD, platform="telegram") is None
    assert await database.is_chat_enabled("telegram", OLD)
    assert not await database.is_chat_enabled("telegram", NEW)


async def test_the_group_as_a_sender_moves_too(database: Database) -> None:
    """A group's anonymous admins write as the group: its id is a user's too (settings, presets, images,
    jobs, a block). A preset name the new id has already keeps the new one."""
    for chat in (OLD, NEW):
        await database.upsert_user(chat, None, "Club", None, platform="telegram")
    await database.update_user_settings(OLD, {"quality": "high"}, platform="telegram")
    await database.save_preset(OLD, "Mine", STARRY, {"quality": "high"}, platform="telegram")
    await database.save_preset(OLD, "Both", STARRY, {"quality": "high"}, platform="telegram")
    await database.save_preset(NEW, "both", STARRY, {"quality": "draft"}, platform="telegram")
    await database.add_style_image("telegram", OLD, "cat", file_id="AgAC")
    job = await new_job(database, OLD, chat_id=OLD, chat_type="group")
    await database.block_user("telegram", OLD, by=1)

    moved = await database.move_chat("telegram", OLD, NEW)

    assert moved == ChatMove((job.id,), False, False, True, active=(job.id,))
    assert await database.get_user(OLD, platform="telegram") is None
    heir = await database.get_user(NEW, platform="telegram")
    assert heir is not None
    assert heir.settings == {"quality": "high"}
    presets = {p.name: p.settings for p in await database.list_presets(NEW, platform="telegram")}
    assert presets == {"both": {"quality": "draft"}, "Mine": {"quality": "high"}}
    assert await database.list_presets(OLD, platform="telegram") == []
    assert [i.name for i in await database.list_style_images("telegram", NEW)] == ["cat"]
    moved_job = await database.get_job(job.id)
    assert moved_job is not None
    assert (moved_job.user_id, moved_job.chat_id) == (NEW, NEW)
    assert await database.is_blocked("telegram", NEW)
    assert not await database.is_blocked("telegram", OLD)
    assert await database.move_chat("telegram", OLD, NEW) == NOTHING


async def test_a_sender_the_new_id_has_not_seen_is_created_there(database: Database) -> None:
    await database.upsert_user(OLD, None, "Club", None, platform="telegram")
    await database.save_preset(OLD, "Mine", STARRY, {}, platform="telegram")
    assert (await database.move_chat("telegram", OLD, NEW)).sender
    assert [p.name for p in await database.list_presets(NEW, platform="telegram")] == ["Mine"]
    assert await database.get_user(NEW, platform="telegram") is not None


async def test_two_moves_at_once_make_one_move(database: Database) -> None:
    """Telegram's two service messages of one upgrade are handled at once: both moves end well, one
    moves the chat as a sender and the other finds nothing left (on PostgreSQL both once read the old
    sender and inserted the new one twice: pk_users). Many rounds, as the race is a matter of timing."""
    for round_ in range(25):
        old, new = OLD - round_, NEW - round_
        await database.upsert_user(old, None, "Club", None, platform="telegram")
        await database.update_user_settings(old, {"quality": "high"}, platform="telegram")

        moves = await asyncio.gather(
            database.move_chat("telegram", old, new), database.move_chat("telegram", old, new)
        )

        assert sorted(move.sender for move in moves) == [False, True]
        heir = await database.get_user(new, platform="telegram")
        assert heir is not None
        assert heir.settings == {"quality": "high"}
        assert await database.get_user(old, platform="telegram") is None


async def test_a_sender_the_new_id_became_meanwhile_keeps_its_settings(database: Database) -> None:
    await database.upsert_user(OLD, None, "Club", None, platform="telegram")
    await database.update_user_settings(OLD, {"quality": "high"}, platform="telegram")
    await database.upsert_user(NEW, None, "Club", None, platform="telegram")
    await database.update_user_settings(NEW, {"quality": "draft"}, platform="telegram")

    assert (await database.move_chat("telegram", OLD, NEW)).sender

    heir = await database.get_user(NEW, platform="telegram")
    assert heir is not None
    assert heir.settings == {"quality": "draft"}


async def test_a_status_sent_to_the_old_chat_is_not_recorded_on_the_moved_job(
    database: Database, user: int
) -> None:
    """The status went to the old group just before the move, its id is recorded just after: that id
    names nothing (or another message) in the new chat, and a restart would edit and delete it there."""
    job = await new_job(database, user, chat_id=OLD, chat_type="group")
    await database.move_chat("telegram", OLD, NEW)

    assert not await database.set_status_message(job.id, 12, chat_id=OLD)
    assert (await database.get_job(job.id)).status_message_id is None  # type: ignore[union-attr]
    assert await database.set_status_message(job.id, 13, chat_id=NEW)
    assert (await database.get_job(job.id)).status_message_id == 13  # type: ignore[union-attr]

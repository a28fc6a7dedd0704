"""Clips end to end on Telegram (issue 21), through the stand-in and real worker processes running the
fast fake engine (each frame inverted): a GIF file, an MP4 animation, a video and a round video note in,
an animation out with the bot's result buttons that decodes with the right frame count; a clip over the
limits refused from its header with one clear answer; progress in frames; Cancel mid-clip."""

from __future__ import annotations

import asyncio

import pytest

from tests.bot.telegram.e2e.conftest import StartBot
from tests.bot.telegram.e2e.test_jobs import keyboard_data, status_of
from tests.fakes import clips
from tests.fakes.telegram_api import Call, Chat, FakeTelegram, User

SLOW = "tests.fakes.engine:slow_engine"  # a second a frame


async def send(tg: FakeTelegram, user: User, chat: Chat, kind: str, caption: str | None) -> None:
    if kind == "gif-file":
        await tg.send_document(user, chat, clips.gif(6), "dance.gif", "image/gif", caption=caption)
    elif kind == "animation":
        await tg.send_animation(user, chat, clips.mp4(6), width=64, height=48, duration=1, caption=caption)
    elif kind == "video":
        await tg.send_video(user, chat, clips.mp4(6), width=64, height=48, duration=1, caption=caption)
    else:
        note = await tg.send_video_note(user, chat, clips.video_note(6), side=64, duration=1)
        await tg.send_text(user, chat, f"/style {caption}", reply_to=note)


def sent_clip(call: Call) -> bytes:
    return call.files["animation"].data


@pytest.mark.parametrize("kind", ["gif-file", "animation", "video", "video-note"])
async def test_a_clip_comes_back_as_an_animation_with_every_frame(
    tg: FakeTelegram, start_bot: StartBot, kind: str
) -> None:
    async with start_bot() as services:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await send(tg, alice, chat, kind, "udnie")
        await status_of(tg)
        result = await tg.wait_for("sendAnimation")
        assert result.ok
        assert clips.frame_count(sent_clip(result)) == 6
        assert "Udnie" in result.params["caption"]  # the result's caption, as under a painting
        assert (result.files["animation"].filename or "").endswith(".mp4")
        await tg.wait_for("deleteMessage")  # the status goes once the send is confirmed
        job = (await services.db.recent_jobs(alice.id, 1, platform="telegram"))[0]
        assert (job.kind, job.state) == ("clip", "done")
        assert job.result_file_id == result.result["animation"]["file_id"]  # delivered, not sent again
        assert not tg.calls_to("sendPhoto")
        rows = result.params["reply_markup"]["inline_keyboard"]
        callbacks = [b["callback_data"] for row in rows for b in row if "callback_data" in b]
        assert callbacks == [f"del:{job.id}"]  # another style and the figures paint photos


async def test_a_gif_comes_back_when_the_caption_asks(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_video(alice, chat, clips.mp4(5), width=64, height=48, duration=1, caption="udnie gif")
        result = await tg.wait_for("sendAnimation")
        assert (result.files["animation"].filename or "").endswith(".gif")
        assert sent_clip(result).startswith(b"GIF8")
        assert clips.frame_count(sent_clip(result)) == 5


async def test_a_clip_over_the_limit_is_refused_with_one_clear_answer(
    tg: FakeTelegram, start_bot: StartBot, settings_for
) -> None:
    async with start_bot(settings_for(clip_max_seconds=1)) as services:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_video(alice, chat, clips.mp4(24), width=64, height=48, duration=2, caption="udnie")
        answer = await tg.wait_for("sendMessage")
        assert answer.params["text"] == (
            "That clip is 2 s long; I paint clips of at most 1 s. Please send a shorter one."
        )
        assert await services.db.recent_jobs(alice.id, 1, platform="telegram") == []


async def test_a_painted_clip_too_long_for_this_cpu_says_so(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_video(
            alice, chat, clips.mp4(48), width=64, height=48, duration=4, caption="udnie painted"
        )
        answer = await tg.wait_for("sendMessage")
        assert "at most 3 s here" in answer.params["text"]


async def test_a_clip_without_a_painting_named_is_told_how(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_video_note(alice, chat, clips.video_note(4), side=64, duration=1)
        answer = await tg.wait_for("sendMessage")
        assert "/style starry_night" in answer.params["text"]


async def test_a_clip_in_a_group_without_a_word_for_the_bot_is_left_alone(
    tg: FakeTelegram, start_bot: StartBot
) -> None:
    tg.privacy_mode = False  # the bot sees every message of the group
    async with start_bot():
        alice = tg.user("Alice")
        group = tg.group("Friends", [alice, tg.user("Bob")])
        await tg.send_animation(alice, group, clips.mp4(4), width=64, height=48, duration=1)
        await tg.send_text(alice, group, "/queue")
        await tg.wait_for("sendMessage")  # /queue answered, the GIF was not
        assert len(tg.calls_to("sendMessage")) == 1


async def test_a_clip_in_a_group_captioned_for_the_bot_is_painted(
    tg: FakeTelegram, start_bot: StartBot
) -> None:
    async with start_bot() as services:
        alice = tg.user("Alice")
        group = tg.group("Friends", [alice, tg.user("Bob")])
        caption = "/style@stylebot_test_bot udnie"
        await tg.send_animation(alice, group, clips.mp4(4), width=64, height=48, duration=1, caption=caption)
        result = await tg.wait_for("sendAnimation")
        assert int(result.params["chat_id"]) == group.id
        assert clips.frame_count(sent_clip(result)) == 4
        job = (await services.db.recent_jobs(alice.id, 1, platform="telegram"))[0]
        assert (job.chat_type, job.kind) == ("supergroup", "clip")


async def test_progress_counts_frames_and_cancel_stops_a_clip_mid_way(
    tg: FakeTelegram, start_bot: StartBot
) -> None:
    async with start_bot(engine=SLOW) as services:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_video(alice, chat, clips.mp4(12), width=64, height=48, duration=1, caption="udnie")
        status = await status_of(tg)
        edit = await tg.wait_for("editMessageText", lambda c: "frame 1 of 12" in c.params["text"])
        assert "Painting the clip in the style of Udnie" in edit.params["text"]
        message = next(m for m in tg.messages_in(chat) if m.message_id == status.result["message_id"])
        await tg.press_button(alice, message, keyboard_data(status)[0])
        await tg.wait_for("editMessageText", lambda c: c.params["text"] == "✖️ Cancelled.")
        job = (await services.db.recent_jobs(alice.id, 1, platform="telegram"))[0]
        assert job.state == "cancelled"
        for _ in range(50):  # the worker stops between frames, long before the clip's twelve seconds
            if services.queue.status().busy == 0:
                break
            await asyncio.sleep(0.1)
        assert services.queue.status().busy == 0
        assert not tg.calls_to("sendAnimation")


async def test_a_blocked_person_s_clip_is_refused_before_it_is_downloaded(
    tg: FakeTelegram, start_bot: StartBot, settings_for
) -> None:
    """Moderation comes first (reviewer2 #6): "blocked", not "too long", and the clip is never fetched."""
    async with start_bot(settings_for(clip_max_seconds=1)) as services:
        alice = tg.user("Alice")
        await services.db.block_user("telegram", alice.id, by=1)
        chat = tg.private_chat(alice)
        await tg.send_video(alice, chat, clips.mp4(24), width=64, height=48, duration=2, caption="udnie")
        answer = await tg.wait_for("sendMessage")
        assert answer.params["text"] == "Sorry, you can't use this bot: its admins have blocked you."
        assert not tg.calls_to("getFile")
        assert await services.db.recent_jobs(alice.id, 1, platform="telegram") == []


async def test_a_style_picked_by_a_link_paints_the_next_clip(tg: FakeTelegram, start_bot: StartBot) -> None:
    """t.me/<bot>?start=udnie, then a video note (no caption): painted in Udnie; the link's style is
    taken once, so the next clip is told how to name one."""
    async with start_bot():
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_text(alice, chat, "/start udnie")
        await tg.wait_for("sendMessage")
        await tg.send_video_note(alice, chat, clips.video_note(4), side=64, duration=1)
        result = await tg.wait_for("sendAnimation")
        assert "Udnie" in result.params["caption"]
        await tg.send_video_note(alice, chat, clips.video_note(4), side=64, duration=1)
        told = await tg.wait_for(
            "sendMessage", lambda c: c.params.get("text", "").startswith("Which painting?")
        )
        assert len(tg.calls_to("sendAnimation")) == 1
        assert told.ok

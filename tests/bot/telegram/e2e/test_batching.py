"""Batches through the whole bot: several users' photos painted together, each user getting their own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from bot.config import Settings
from tests.bot.telegram.e2e.conftest import StartBot
from tests.bot.telegram.e2e.test_paint import negative_of, painted
from tests.fakes import images
from tests.fakes.engine import BATCH_LOG, read_batch_log
from tests.fakes.telegram_api import FakeTelegram


async def test_several_users_are_painted_in_one_batch_and_each_gets_their_own(
    tg: FakeTelegram,
    start_bot: StartBot,
    settings_for: Callable[..., Settings],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = tmp_path / "batches.jsonl"
    monkeypatch.setenv(BATCH_LOG, str(log))  # the worker process inherits it
    settings = settings_for(engine_batch_size=3)
    async with start_bot(settings, engine="tests.fakes.engine:steady_engine") as services:
        users = [tg.user(name) for name in ("Alice", "Bob", "Chen", "Dara")]
        sources = {}
        for i, user in enumerate(users):  # a job or a batch takes 1 s: the photos queue up behind it
            chat = tg.private_chat(user)
            sources[chat.id] = await tg.send_photo(user, chat, images.pattern(60 + i, 40), caption="udnie")

        sent = [await tg.wait_for("sendPhoto", lambda c: c.ok, timeout=30.0) for _ in users]
        assert {int(c.params["chat_id"]) for c in sent} == set(sources)  # one painting per user
        for call in sent:
            source = sources[int(call.params["chat_id"])]
            assert call.params["reply_parameters"]["message_id"] == source.message_id
            assert np.array_equal(painted(tg, call), negative_of(tg, source))  # their own photo's
        assert 3 in [len(batch) for batch in read_batch_log(log)]  # three users' jobs shared a batch
        assert services.queue.status().batch_size("normal") == 3

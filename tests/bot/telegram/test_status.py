"""``StatusBoard`` against a stand-in for Telegram: a status removed while its switch to a photo is under
way leaves nothing behind. The rest of the board is tested end to end (``e2e``)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from bot.telegram.status import StatusBoard


class SlowTelegram:
    """Numbers the messages it sends; ``send_photo`` waits for ``gate``."""

    def __init__(self) -> None:
        self.sent: list[int] = []
        self.deleted: list[int] = []
        self.gate = asyncio.Event()

    def _message(self) -> SimpleNamespace:
        self.sent.append(len(self.sent) + 1)
        return SimpleNamespace(message_id=self.sent[-1])

    async def send_message(self, chat_id: int, text: str, **kwargs: object) -> SimpleNamespace:
        return self._message()

    async def send_photo(self, chat_id: int, photo: bytes, **kwargs: object) -> SimpleNamespace:
        await self.gate.wait()
        return self._message()

    async def delete_message(self, chat_id: int, message_id: int) -> bool:
        self.deleted.append(message_id)
        return True


class Jobs:
    async def record_status(self, job_id: int, message_id: int, *, chat_id: int | None = None) -> None:
        return None


async def test_a_status_removed_during_its_switch_to_a_photo_leaves_no_photo_behind() -> None:
    telegram = SlowTelegram()
    board = StatusBoard(telegram, Jobs(), interval_private=3.0, interval_group=10.0)  # type: ignore[arg-type]
    job = SimpleNamespace(
        id=1, user_id=7, chat_id=7, chat_type="private", source_message_id=5, status_message_id=None
    )
    await board.open(job, "queued", None)  # type: ignore[arg-type]
    showing = asyncio.create_task(board.show(job, "queued", preview=b"sketch", now=True))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # the photo is on its way
    removing = asyncio.create_task(board.remove(job))  # type: ignore[arg-type]  # the result came
    await asyncio.sleep(0)
    telegram.gate.set()
    await asyncio.gather(showing, removing)
    assert telegram.sent == [1, 2]  # the text status, then the photo one
    assert set(telegram.deleted) == {1, 2}  # both gone
    await board.close()

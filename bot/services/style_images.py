"""Personal styles: pictures a user keeps to paint with later (Discord's "Use as my style"), each one
its owner's alone."""

from __future__ import annotations

import asyncio

from bot.db import Database, StyleImageRecord
from bot.services.refusals import Refused
from bot.services.uploads import validate_images

MAX_PERSONAL_STYLES = 10  # a user keeps the newest ten (each stored whole: bounded, whoever sends them)
NAME_LENGTH = 24


class StyleImageService:
    def __init__(self, db: Database, *, max_image_pixels: int) -> None:
        self.db = db
        self.max_image_pixels = max_image_pixels

    async def add(self, user_id: int, name: str, data: bytes, *, platform: str) -> StyleImageRecord:
        """Keep ``data`` as a personal style named ``name`` (cut to fit; "style" when empty), after
        checking it is a picture a job can use (an ``engine.errors.ImageError`` when not)."""
        await asyncio.to_thread(validate_images, [data], max_pixels=self.max_image_pixels)
        return await self.db.add_style_image(
            platform, user_id, name[:NAME_LENGTH] or "style", data=data, keep=MAX_PERSONAL_STYLES
        )

    async def list(self, user_id: int, *, platform: str) -> list[StyleImageRecord]:
        """Newest first, without their bytes (for autocomplete and pickers)."""
        return await self.db.list_style_images(platform, user_id)

    async def get(self, user_id: int, image_id: int, *, platform: str) -> StyleImageRecord:
        """One of the user's own, with its bytes; Refused "button_expired" when gone or someone else's."""
        image = await self.db.get_style_image(platform, user_id, image_id)
        if image is None or image.data is None:
            raise Refused("button_expired")
        return image

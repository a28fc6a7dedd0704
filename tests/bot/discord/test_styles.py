"""``/styles``: the list of paintings with the contact sheet of those on disk, whatever another platform
did with the same sheet before (issue 18: Telegram's cached upload id must never reach Discord)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from tests.bot.discord.conftest import discord_bot

IDS = ("udnie", "the_scream", "starry_night")


def paintings_on_disk(styles_dir: Path) -> None:
    for number, style_id in enumerate(IDS):
        Image.new("RGB", (60, 40), (40 * number, 90, 160)).save(styles_dir / f"{style_id}.png")


async def test_styles_after_telegram_styles_sends_discord_its_own_sheet(discord_settings) -> None:
    settings = discord_settings()
    paintings_on_disk(settings.styles_dir)
    async with discord_bot(settings) as (env, core):
        guild = env.create_guild()
        channel = guild.create_text_channel("art")
        alice = guild.add_member(env.create_user("alice"))
        # Telegram's /styles in the same process: it sends the sheet and keeps Telegram's file id for next
        # time (what bot/telegram/handlers/start.py does after reply_photo).
        sheet = await core.paintings.overview(platform="telegram")
        assert sheet is not None
        core.paintings.uploaded(sheet, "AgACAgIAAxkDAAIBtelegram-file-id", "AQADtelegram-unique")

        result = await alice.slash(channel, "styles")
        answers = ([result.response] if result.response else []) + result.followups
        assert answers
        assert all(a.ephemeral for a in answers)
        assert "udnie" in answers[-1].content
        sheets = [a for answer in answers for a in answer.attachments]
        assert [a.filename for a in sheets] == ["styles.png"]
        assert sheets[0].size > 0

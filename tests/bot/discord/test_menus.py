"""The message context menus ("Paint this", "Use as my style"), the guild's default style, /settings."""

from __future__ import annotations

import discord

from tests.bot.discord.conftest import art_channel, discord_bot, downloaded, results_for, until
from tests.fakes import images
from tests.fakes.engine import invert

PHOTO = images.pattern(64, 48)


async def test_paint_this_offers_an_ephemeral_picker_then_paints(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, core):
        guild, channel, alice = art_channel(env)
        bob = guild.add_member(env.create_user("bob"))
        posted = await bob.send(channel, "look", attachments=[("holiday.jpg", PHOTO)])
        picker = await alice.context_menu(channel, "Paint this", posted)
        assert picker.ephemeral
        assert "Pick a style" in picker.response.content
        painting = await alice.select(picker.response, ["the_scream"])
        assert painting.response is not None
        assert not painting.ephemeral
        delivered = await until(env, lambda: results_for(channel, alice))
        assert "The Scream" in delivered[0].content
        assert downloaded(env, delivered[0].attachments[0]) == invert(PHOTO)
        job = (await core.db.recent_jobs(alice.id, platform="discord"))[0]
        assert job.state == "done"

        plain = await bob.send(channel, "no picture here")
        refused = await alice.context_menu(channel, "Paint this", plain)
        assert refused.ephemeral
        assert "no picture" in refused.response.content


async def test_use_as_my_style_keeps_the_image_for_later(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, core):
        guild, channel, alice = art_channel(env)
        bob = guild.add_member(env.create_user("bob"))
        art = images.pattern(40, 40, fmt="PNG")
        posted = await bob.send(channel, "my painting", attachments=[("sunset.png", art)])
        kept = await alice.context_menu(channel, "Use as my style", posted)
        assert kept.ephemeral
        assert "sunset" in (kept.response.content + "".join(f.content for f in kept.followups))
        saved = await core.db.list_style_images("discord", alice.id)
        assert [s.name for s in saved] == ["sunset"]
        assert saved[0].data is None  # listed without its bytes (autocomplete lists on every keystroke)
        whole = await core.db.get_style_image("discord", alice.id, saved[0].id)
        assert whole is not None
        assert whole.data == art  # the image itself: Discord's attachment URLs expire
        assert await core.db.list_style_images("discord", bob.id) == []  # only hers

        choices = await alice.autocomplete(channel, "paint", "style", "sun")
        assert choices[0]["value"] == f"mine:{saved[0].id}"
        await alice.slash(channel, "paint", image=("photo.png", PHOTO), style=choices[0]["value"])
        delivered = await until(env, lambda: results_for(channel, alice))
        assert downloaded(env, delivered[0].attachments[0]) == invert(PHOTO)
        job = (await core.db.recent_jobs(alice.id, platform="discord"))[0]
        assert job.state == "done"
        # Bob cannot paint with Alice's style by typing its value.
        stolen = await bob.slash(channel, "paint", image=("photo.png", PHOTO), style=choices[0]["value"])
        assert stolen.ephemeral
        assert await core.db.recent_jobs(bob.id, platform="discord") == []

        broken = await bob.send(channel, "", attachments=[("broken.png", b"\x89PNG\r\n\x1a\n nope")])
        refused = await alice.context_menu(channel, "Use as my style", broken)
        assert refused.ephemeral
        assert len(await core.db.list_style_images("discord", alice.id)) == 1


async def test_a_guild_default_is_set_by_a_manager_and_refused_for_a_member(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, core):
        guild, channel, alice = art_channel(env)
        managers = guild.create_role("Managers", permissions=discord.Permissions(manage_guild=True))
        boss = guild.add_member(env.create_user("boss"), roles=[managers])
        for member in (alice, boss):
            await member.slash(channel, "preset save", name="Moody", style="the_scream")

        refused = await alice.slash(channel, "preset guild", name="Moody")
        assert refused.ephemeral
        assert "manage this server" in refused.response.content
        assert (await core.presets.chat_default(guild.id, "", platform="discord"))[0] is None

        accepted = await boss.slash(channel, "preset guild", name="Moody")
        assert accepted.ephemeral
        assert "The Scream" in accepted.response.content
        # Any member's /paint without a style now uses it.
        await alice.slash(channel, "paint", image=("photo.png", PHOTO))
        delivered = await until(env, lambda: results_for(channel, alice))
        assert "The Scream" in delivered[0].content

        refused_off = await alice.slash(channel, "preset guild", name="off")
        assert "manage this server" in refused_off.response.content
        await boss.slash(channel, "preset guild", name="off")
        assert (await core.presets.chat_default(guild.id, "", platform="discord"))[0] is None


async def test_settings_are_changed_with_ephemeral_menus_and_buttons(discord_settings) -> None:
    async with discord_bot(discord_settings()) as (env, core):
        _, channel, alice = art_channel(env)
        panel = await alice.slash(channel, "settings")
        assert panel.ephemeral
        changed = await alice.select(panel.response, ["high"], custom_id="set:quality")
        assert changed.acknowledged
        await alice.select(panel.response, ["luminance"], custom_id="set:preserve_colors")
        await alice.click(panel.response, custom_id="set:live_preview")
        user = await core.db.get_user(alice.id, platform="discord")
        assert user.settings["quality"] == "high"
        assert user.settings["preserve_colors"] == "luminance"
        assert user.settings["live_preview"] is True
        assert "high (slow)" in panel.response.content

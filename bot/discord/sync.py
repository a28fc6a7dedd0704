"""The application commands are uploaded to Discord only when their definition changed.

Every upload (``CommandTree.sync``) counts against Discord's daily limit of command creations and makes
clients reload the commands; a bot that restarts often would spend both for nothing. So the definition as
it would be sent (every command's payload, localizations included, since ``bot/texts`` translates names)
is hashed, and the hash of the last upload is kept per application and scope in
``DATA_DIR/discord_commands.json``. With ``DISCORD_DEV_GUILD`` the commands go to that one server instead
(guild commands show at once; global ones take up to an hour): the scope is then that server.
``python -m bot sync-commands`` uploads whatever the hash says.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import discord
from discord import app_commands

log = logging.getLogger(__name__)

STATE_FILE = "discord_commands.json"


class CommandSync:
    """The one way the bot uploads its commands; ``sync()`` skips an unchanged definition."""

    def __init__(self, tree: app_commands.CommandTree, data_dir: Path, dev_guild: int | None = None) -> None:
        self.tree = tree
        self.state_path = data_dir / STATE_FILE
        self.guild = discord.Object(dev_guild) if dev_guild is not None else None

    @property
    def scope(self) -> str:
        return "global" if self.guild is None else f"guild {self.guild.id}"

    async def payload(self) -> list[dict[str, Any]]:
        """What ``CommandTree.sync`` sends for this scope, translated as it translates it."""
        commands = self.tree.get_commands(guild=self.guild)
        translator = self.tree.translator
        if translator is None:
            return [command.to_dict(self.tree) for command in commands]
        return [await command.get_translated_payload(self.tree, translator) for command in commands]

    async def fingerprint(self) -> str:
        encoded = json.dumps(await self.payload(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(encoded.encode()).hexdigest()

    async def sync(self, *, force: bool = False) -> bool:
        """Upload the commands unless the last upload had the same definition (``force``: regardless).
        True when they were uploaded. Raises ``discord.HTTPException`` when Discord refuses them; the
        hash is then left as it was, so the next start tries again."""
        if self.guild is not None:
            self.tree.copy_global_to(guild=self.guild)  # idempotent: the same commands, in one server
        key = f"{self.tree.client.application_id} {self.scope}"
        digest = await self.fingerprint()
        count = len(self.tree.get_commands(guild=self.guild))
        kept = self._load()
        if not force and kept.get(key) == digest:
            log.info("Discord commands unchanged (%s, %d commands): not synced", self.scope, count)
            return False
        await self.tree.sync(guild=self.guild)
        log.info("Discord commands synced (%s, %d commands, definition %s)", self.scope, count, digest[:12])
        kept[key] = digest
        self._save(kept)
        return True

    def _load(self) -> dict[str, str]:
        """The hashes of the last uploads; an unreadable file is as none (the commands are uploaded)."""
        try:
            data = json.loads(self.state_path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            log.warning("%s cannot be read (%s): the commands are synced again", self.state_path, err)
            return {}
        if not isinstance(data, dict):
            return {}
        return {str(k): v for k, v in data.items() if isinstance(v, str)}

    def _save(self, kept: dict[str, str]) -> None:
        """Written whole, then renamed: a crash leaves the old file, never half of one."""
        try:
            self.state_path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.state_path.with_suffix(".tmp")
            partial.write_text(json.dumps(kept, indent=1, sort_keys=True))
            os.replace(partial, self.state_path)
        except OSError as err:
            log.warning("%s cannot be written (%s): the next start syncs again", self.state_path, err)

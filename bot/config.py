"""The bot's settings: environment variables and a ``.env`` file, read once at start-up.

Every variable is listed with its default in README.md ("Configuration"). The engine's settings
(``ENGINE_DEVICE``, ``STYLES_DIR``, ``OUTPUT_MAX_SIDE``...) and the Celery back end's (``QUEUE_URL``,
``QUEUE_NAME``...) are part of the same object, because the bot hands them to the workers it uses.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import NoDecode

from bot.frontend import PLATFORMS, TELEGRAM
from engine.settings import EngineSettings
from engine.workers.settings import QueueSettings

TELEGRAM_API_URL = "https://api.telegram.org"
DISCORD_API_URL = "https://discord.com/api/v10"
DISCORD_GATEWAY_URL = "wss://gateway.discord.gg"
WEBHOOK_SECRET_SHAPE = re.compile(r"[A-Za-z0-9_-]{1,256}")  # setWebhook's secret_token
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class Settings(EngineSettings, QueueSettings):
    telegram_bot_token: SecretStr | None = Field(None, description="from @BotFather")
    telegram_api_url: str = TELEGRAM_API_URL
    telegram_webhook_url: str | None = None  # the public https address; unset: long polling
    telegram_webhook_secret: SecretStr | None = None  # unset: generated once, kept in DATA_DIR
    telegram_webhook_listen: str = "127.0.0.1"  # behind a reverse proxy on the same machine
    telegram_webhook_port: int = Field(8443, ge=1, le=65535)
    telegram_webhook_max_connections: int = Field(40, ge=1, le=100)
    discord_bot_token: SecretStr | None = Field(None, description="from the Developer Portal's Bot page")
    discord_api_url: str = DISCORD_API_URL
    discord_gateway_url: str = DISCORD_GATEWAY_URL
    discord_status_interval: float = Field(2.0, ge=0)  # seconds between edits of a job's response
    discord_shard_count: int | None = Field(None, ge=1)  # unset: as many shards as Discord recommends
    discord_dev_guild: int | None = Field(None, ge=1)  # commands synced to this server only (development)
    database_url: str = "sqlite+aiosqlite:///data/stylebot.db"
    data_dir: Path = Path("data")
    engine_workers: int | None = Field(None, ge=1, le=64)
    worker_stall_seconds: float = Field(180.0, gt=0)
    # ADMIN_IDS=telegram:123,discord:456 (a plain number is a Telegram id): (platform, user id) pairs
    admin_ids: Annotated[frozenset[tuple[str, int]], NoDecode] = frozenset()
    default_quality: Literal["instant", "draft", "normal", "high"] = "normal"
    sketch_preview: bool = True  # the sketch on the status first (SKETCH_PREVIEW=off: for nobody)
    sketch_offer_minutes: float = Field(3.0, ge=0)  # offer "Keep the sketch" from this wait on; 0: never
    sketch_threads: int = Field(2, ge=1, le=64)  # the sketch process's onnxruntime threads
    sketch_side: int = Field(512, ge=64, le=2048)  # the preview sketch's longest side
    clip_max_seconds: float = Field(10.0, gt=0, le=60)  # longer GIFs and videos are refused from the header
    clip_max_fps: float = Field(12.0, gt=0, le=60)  # a clip's frame rate is reduced to this
    max_active_jobs: int = Field(3, ge=1)
    max_jobs_per_hour: int = Field(30, ge=1)
    max_queue_length: int = Field(100, ge=1)
    max_presets: int = Field(30, ge=1)
    status_interval_private: float = Field(3.0, ge=0)
    status_interval_group: float = Field(10.0, ge=0)
    album_wait_seconds: float = Field(1.5, ge=0)
    result_retention_days: float = Field(7.0, ge=0)
    orphan_input_hours: float = Field(1.0, gt=0)
    retention_sweep_minutes: float = Field(60.0, gt=0)
    health_host: str = "127.0.0.1"  # /metrics has no auth: the machine itself only, unless told
    health_port: int = Field(8080, ge=0, le=65535)
    log_level: str = "INFO"

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        """``ADMIN_IDS=telegram:123, discord:456`` the way people write it in a .env file. Each id names
        its platform, since a Telegram id and a Discord id are different people; a bare number keeps its
        old meaning, a Telegram id."""
        if not isinstance(value, str):
            return value
        pairs = set()
        for part in value.replace(" ", "").split(","):
            if not part:
                continue
            platform, _, number = part.rpartition(":")
            platform = platform.lower() or TELEGRAM
            if platform not in PLATFORMS:
                raise ValueError(f"ADMIN_IDS: {part!r} names no platform of {', '.join(PLATFORMS)}")
            pairs.add((platform, int(number)))
        return frozenset(pairs)

    @field_validator(
        "telegram_bot_token",
        "discord_bot_token",
        "telegram_webhook_url",
        "telegram_webhook_secret",
        "discord_shard_count",
        "discord_dev_guild",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        """``TELEGRAM_BOT_TOKEN=`` in a .env file means no Telegram, not an empty token."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("telegram_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        """Telegram posts only to HTTPS on ports 443, 80, 88 or 8443: say so at start-up rather than
        through setWebhook's refusal. Plain http is accepted for the machine itself only (tests)."""
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.fragment:
            raise ValueError("must have no #fragment")
        if parts.scheme == "http" and parts.hostname in LOOPBACK:
            return value
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError("must be an https:// address (Telegram posts only to HTTPS)")
        if parts.port not in (None, 443, 80, 88, 8443):
            raise ValueError("Telegram posts only to the ports 443, 80, 88 and 8443")
        return value

    @field_validator("telegram_webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        """The characters setWebhook accepts in a secret_token."""
        if value is not None and not WEBHOOK_SECRET_SHAPE.fullmatch(value.get_secret_value()):
            raise ValueError("must be 1 to 256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @field_validator("telegram_api_url", "discord_api_url", "discord_gateway_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _ports_apart(self) -> Settings:
        """The webhook's server and the health endpoint cannot share a port: say so at start-up rather
        than as "address in use" after the webhook bound it (port 0 is any free port, never a clash)."""
        webhook = self.telegram_webhook_url is not None and self.telegram_bot_token is not None
        if webhook and self.health_port and self.telegram_webhook_port == self.health_port:
            raise ValueError(
                f"TELEGRAM_WEBHOOK_PORT and HEALTH_PORT are both {self.health_port}: give each its own port"
            )
        return self

    @property
    def frontends(self) -> tuple[str, ...]:
        """The platforms whose token is set: the front ends ``python -m bot`` runs."""
        return tuple(
            name
            for name, token in (("telegram", self.telegram_bot_token), ("discord", self.discord_bot_token))
            if token is not None
        )

    def secrets(self) -> list[str]:
        """The tokens and the webhook's secret, for the log filter (``bot.redaction.protect``)."""
        secrets = (self.telegram_bot_token, self.discord_bot_token, self.telegram_webhook_secret)
        return [t.get_secret_value() for t in secrets if t]

    @property
    def jobs_dir(self) -> Path:
        """Inputs of queued jobs, kept until the job ends so a restart loses nothing."""
        return self.data_dir / "jobs"

    @property
    def results_dir(self) -> Path:
        """Finished paintings, kept ``RESULT_RETENTION_DAYS`` for the full-resolution button."""
        return self.data_dir / "results"


def load_settings() -> Settings:
    """Settings from the environment, with a readable message instead of a validation dump."""
    try:
        return Settings()
    except ValidationError as err:
        problems = []
        for error in err.errors():
            name = str(error["loc"][0]).upper() if error["loc"] else "settings"
            problems.append(f"{name}: {error['msg']}")
        raise SystemExit("Stylebot cannot start:\n  " + "\n  ".join(problems)) from None


NO_TOKEN = (
    "Stylebot cannot start: neither TELEGRAM_BOT_TOKEN nor DISCORD_BOT_TOKEN is set.\n"
    "  Telegram: get a token from @BotFather; Discord: create an application in the Developer Portal and\n"
    "  copy its bot token. Put either or both in .env (see README.md, Quick start)."
)


def require_a_front_end(settings: Settings) -> tuple[str, ...]:
    """The platforms to run; a clear refusal when no token is set."""
    if not settings.frontends:
        raise SystemExit(NO_TOKEN)
    return settings.frontends

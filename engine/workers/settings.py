"""The Celery back end's settings, read from the environment (and ``.env``) by the bot and the workers.

Plain pydantic, no Celery: the bot's configuration inherits it whichever back end runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


@dataclass(frozen=True)
class Names:
    """The names on the broker, all starting with ``QUEUE_NAME`` (see ``engine.workers.broker``)."""

    jobs: str
    events: str
    control: str

    @classmethod
    def of(cls, prefix: str) -> Names:
        return cls(jobs=f"{prefix}.jobs", events=f"{prefix}.events", control=f"{prefix}.control")


class QueueSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    queue_url: str = Field("", description="redis://... or amqp://...; empty: the embedded queue")
    queue_name: str = Field("stylebot", pattern=r"^[A-Za-z0-9_.-]+$", description="prefix of every name")
    queue_visibility_timeout: float = Field(
        3600.0, gt=0, description="Redis: seconds before an unacknowledged task is handed out again"
    )
    queue_heartbeat_seconds: float = Field(2.0, gt=0, description="how often every worker says it is alive")

    @property
    def names(self) -> Names:
        return Names.of(self.queue_name)

    @property
    def is_redis(self) -> bool:
        return self.queue_url.split(":", 1)[0] in ("redis", "rediss")

    @property
    def keeps_tasks(self) -> bool:
        """Whether the broker keeps queued tasks across its own restart: RabbitMQ's queues are durable
        and its messages persistent; Redis may keep nothing (this one saves nothing to disk)."""
        return not self.is_redis

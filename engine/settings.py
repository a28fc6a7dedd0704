"""Engine configuration from the environment (and a ``.env`` file).

Read once at the edge (the CLI, a worker's start-up, the bot's config) and passed down as an object:
nothing deeper in the engine reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

if TYPE_CHECKING:
    from engine.celery_app import Names


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    engine_device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    engine_weights: Literal["caffe", "torchvision"] = "caffe"
    engine_threads: int | None = Field(None, description="CPU threads per worker; default: every core")
    styles_dir: Path = Path("data/styles")
    styles_prefetch: bool = Field(True, description="fetch the catalog's missing paintings at start-up")
    styles_fetch_seconds: float = Field(
        60.0, gt=0, description="the longest one painting's download may take; below WORKER_STALL_SECONDS"
    )
    style_cache_dir: Path = Path("data/cache/style-stats")
    style_cache_max_mb: float = Field(1024.0, gt=0, description="disk cap of the style statistics")
    output_max_side: int = Field(1024, ge=64, le=4096)
    max_image_pixels: int = Field(50_000_000, ge=1_000_000)


class QueueSettings(BaseSettings):
    """The Celery back end's settings, read from the environment (and ``.env``) by both sides."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    queue_url: str = Field("", description="redis://... or amqp://...; empty: the embedded queue")
    queue_name: str = Field("stylebot", pattern=r"^[A-Za-z0-9_.-]+$", description="prefix of every name")
    queue_visibility_timeout: float = Field(
        3600.0, gt=0, description="Redis: seconds before an unacknowledged task is handed out again"
    )
    queue_heartbeat_seconds: float = Field(2.0, gt=0, description="how often every worker says it is alive")

    @property
    def names(self) -> Names:
        from engine.celery_app import Names  # the broker's names live with the rest of the Celery side

        return Names.of(self.queue_name)

    @property
    def is_redis(self) -> bool:
        return self.queue_url.split(":", 1)[0] in ("redis", "rediss")

    @property
    def keeps_tasks(self) -> bool:
        """Whether the broker keeps queued tasks across its own restart: RabbitMQ's queues are durable
        and its messages persistent; Redis may keep nothing (this one saves nothing to disk)."""
        return not self.is_redis

"""Engine configuration from the environment (and a ``.env`` file).

Read once at the edge (the CLI, a worker's start-up, the bot's config) and passed down as an object:
nothing deeper in the engine reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# The sketch's style vectors (``engine.sketch``) live in this folder of STYLE_CACHE_DIR, beside the Gram
# statistics: one name, so the engine and the bot's sketch process share one cache.
SKETCH_CACHE_FOLDER = "sketch"


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    engine_device: str = Field("auto", description="auto, cpu, cuda, cuda:N or mps")
    engine_weights: Literal["caffe", "torchvision"] = "caffe"
    engine_threads: int | None = Field(None, description="CPU threads per worker; default: every core")
    engine_precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto",
        description="the network's passes; auto: bf16 where the CPU has it natively and it is faster",
    )
    styles_dir: Path = Path("data/styles")
    styles_prefetch: bool = Field(True, description="fetch the catalog's missing paintings at start-up")
    styles_fetch_seconds: float = Field(
        60.0, gt=0, description="the longest one painting's download may take; below WORKER_STALL_SECONDS"
    )
    style_cache_dir: Path = Path("data/cache/style-stats")
    style_cache_max_mb: float = Field(1024.0, gt=0, description="disk cap of the style statistics")
    output_max_side: int = Field(1024, ge=64, le=4096)
    max_image_pixels: int = Field(50_000_000, ge=1_000_000)
    engine_batch_size: int | Literal["auto"] = Field(
        "auto",
        description="jobs a worker paints at once; auto: 1 on the CPU, what the GPU's memory allows on CUDA",
    )

    @field_validator("engine_batch_size", mode="before")
    @classmethod
    def _batch_size(cls, value: object) -> object:
        """``auto`` or a whole number of at least 1 (the environment gives strings)."""
        if isinstance(value, str) and value.strip().lower() != "auto":
            value = int(value)
        if isinstance(value, int) and value < 1:
            raise ValueError("ENGINE_BATCH_SIZE must be auto or at least 1")
        return value.strip().lower() if isinstance(value, str) else value

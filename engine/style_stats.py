"""A painting's style statistics (its Gram matrices), cached in memory and on disk.

A preset job should never pay for the painting's forward pass twice. The key holds everything that changes
the numbers: the image's bytes (by hash, so a replaced file is a new entry), the weights and pooling, the
pixel size the painting is seen at, the layers, and the colour mode.

On disk the cache has a size cap (``STYLE_CACHE_MAX_MB``): each user's own style image adds about 2.4 MB
per scale, so without one it would grow for ever. A read marks its file as used; a write removes the files
used longest ago until the folder fits again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

import torch

log = logging.getLogger(__name__)

FORMAT_VERSION = 1  # bump when the Gram normalization or the layer naming changes
MEMORY_ENTRIES = 32  # about 2.5 MB each with the default five layers
DEFAULT_MAX_BYTES = 1024 * 2**20  # about 400 entries
STALE_TEMP_SECONDS = 3600.0  # a half-written file this old belongs to a process that died


def stats_key(
    digest: str, *, weights: str, pooling: str, width: int, height: int, layers: tuple[str, ...], mode: str
) -> str:
    text = f"v{FORMAT_VERSION}|{digest}|{weights}|{pooling}|{width}x{height}|{','.join(layers)}|{mode}"
    return hashlib.sha256(text.encode()).hexdigest()


class StyleStatsCache:
    """Gram matrices by key: a small in-process LRU in front of one ``.pt`` file per key."""

    def __init__(self, directory: Path | None, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self._memory: OrderedDict[str, dict[str, torch.Tensor]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, key: str, device: torch.device) -> dict[str, torch.Tensor] | None:
        grams = self._memory.get(key)
        if grams is None and self.directory is not None:
            grams = self._read(self.directory / f"{key}.pt")
            if grams is not None:
                self._remember(key, grams)
        if grams is None:
            self.misses += 1
            return None
        self._memory.move_to_end(key)
        self.hits += 1
        if self.directory is not None:
            _touch(self.directory / f"{key}.pt")  # used now: the last to be evicted
        return {layer: g.to(device, non_blocking=True) for layer, g in grams.items()}

    def put(self, key: str, grams: dict[str, torch.Tensor]) -> None:
        cpu = {layer: g.detach().float().cpu() for layer, g in grams.items()}
        self._remember(key, cpu)
        if self.directory is not None:
            self._write(self.directory / f"{key}.pt", cpu)
            self.evict(keep=f"{key}.pt")

    def evict(self, keep: str | None = None) -> None:
        """Remove the files used longest ago until the folder holds at most ``max_bytes``.

        Workers sharing the folder may evict at the same time: a file another one removed is skipped.
        """
        assert self.directory is not None
        now = time.time()
        entries = []
        try:
            with os.scandir(self.directory) as scan:
                for entry in scan:
                    try:
                        info = entry.stat()
                    except FileNotFoundError:
                        continue
                    if entry.name.endswith(".tmp") and now - info.st_mtime > STALE_TEMP_SECONDS:
                        _remove(Path(entry.path))
                    elif entry.name.endswith(".pt"):
                        entries.append((info.st_mtime, info.st_size, entry.name))
        except OSError as err:
            log.warning("could not look through the style statistics in %s: %s", self.directory, err)
            return
        total = sum(size for _, size, _ in entries)
        for _, size, name in sorted(entries):
            if total <= self.max_bytes:
                break
            if name != keep:
                _remove(self.directory / name)
                total -= size

    def _remember(self, key: str, grams: dict[str, torch.Tensor]) -> None:
        self._memory[key] = grams
        self._memory.move_to_end(key)
        while len(self._memory) > MEMORY_ENTRIES:
            self._memory.popitem(last=False)

    @staticmethod
    def _read(path: Path) -> dict[str, torch.Tensor] | None:
        if not path.is_file():
            return None
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            log.warning("ignoring unreadable style statistics %s: %s", path, err)
            return None

    @staticmethod
    def _write(path: Path, grams: dict[str, torch.Tensor]) -> None:
        """Write to a temporary file and rename, so a concurrent reader never sees half a file."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                torch.save(grams, f)
            os.replace(tmp, path)
        except OSError as err:
            log.warning("could not cache style statistics in %s: %s", path.parent, err)


def _touch(path: Path) -> None:
    with contextlib.suppress(OSError):  # evicted by another worker meanwhile, or a read-only cache
        os.utime(path)


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as err:
        log.warning("could not remove style statistics %s: %s", path, err)
